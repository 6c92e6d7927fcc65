// The ACPI tables an operating system needs to find the interrupt controllers and the CPUs
// and to turn the machine off: an RSDP (revision 2) pointing at an XSDT that lists a MADT and a
// FADT. The MADT names the local APIC of each vCPU, the I/O APIC with GSI base 0, the override
// that sends ISA IRQ 0 to GSI 2, level-triggered active-high overrides for IRQs 5, 9, 10 and 11
// (the SCI and the virtio-mmio lines), and LINT1 as NMI on every processor. The FADT describes the
// PM1a event and control registers (at 0x600 and 0x604 for a direct boot, Hyve.Devices.PowerControl;
// where the firmware put the PIIX4 PM block otherwise), SCI on
// IRQ 9, the reset register at 0xCF9, a FACS, and a DSDT with \_S5 (sleep type 0) and the PCI
// host bridge with its bus and I/O windows: what a kernel needs for ACPI mode, PCI, power-off
// and reset. There is no PM timer
// and no GPE block.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace Hyve.Boot;

/// <summary>Builds Hyve's ACPI tables.</summary>
public static class AcpiTables
{
    /// <summary>The PM1a event block (status, enable); the control register follows at +4.</summary>
    public const ushort PmBase = 0x600;

    /// <summary>The reset control register and the value the FADT has written to it.</summary>
    public const ushort ResetPort = 0xCF9;

    private const byte ResetValue = 0x06;

    /// <summary>The ISA lines the MADT declares level-triggered and active-high: the SCI (9) and
    /// the lines the machine's virtio-mmio devices use.</summary>
    public static ReadOnlySpan<byte> LevelIrqs => [5, 9, 10, 11];

    /// <summary>The tables for <paramref name="cpus"/> vCPUs, laid out from <paramref name="at"/>
    /// (16-byte aligned); the RSDP is first.</summary>
    public static byte[] Build(ulong at, int cpus) => Build(at, cpus, out _);

    /// <summary>The physical-address width the host bridge's 64-bit window reaches to (CPUID's).</summary>
    public const int PhysicalAddressBits = 46;

    /// <summary>Where each table starts in the blob <see cref="Build(ulong, int)"/> returns (offsets
    /// from its start, the RSDP at 0), and the XSDT's length.</summary>
    public readonly record struct Layout(int Xsdt, int XsdtLength, int Madt, int Fadt, int Facs, int Dsdt);

    /// <summary>As <see cref="Build(ulong, int)"/>, with the tables' places, the PM1a block at
    /// <paramref name="pmBase"/> (where the firmware placed it).</summary>
    /// <paramref name="ramBytes"/> is the machine's RAM (0: as much as fits below the PCI hole),
    /// which places the host bridge's memory windows.
    public static byte[] Build(ulong at, int cpus, out Layout layout, ushort pmBase = PmBase, ulong ramBytes = 0)
    {
        if ((at & 15) != 0)
            throw new ArgumentException("the RSDP must be 16-byte aligned", nameof(at));
        const int RsdpSize = 36;
        // Layout: RSDP, XSDT, MADT, FADT, FACS (64-byte aligned), DSDT.
        ulong xsdtAt = at + 48;
        ulong madtAt = xsdtAt + 64;
        byte[] m = Madt(cpus);
        ulong fadtAt = Align(madtAt + (ulong)m.Length, 16);
        ulong facsAt = Align(fadtAt + 276, 64);
        ulong dsdtAt = facsAt + 64;
        byte[] d = Dsdt(ramBytes == 0 ? MemoryMap.DeviceWindow : ramBytes);
        byte[] f = Fadt(facsAt, dsdtAt, pmBase);

        var xsdt = new List<byte>(Header("XSDT", 1));
        xsdt.AddRange(LinuxBoot.Le(madtAt, 8));
        xsdt.AddRange(LinuxBoot.Le(fadtAt, 8));
        byte[] x = Finish(xsdt);

        byte[] rsdp = new byte[RsdpSize];
        "RSD PTR "u8.CopyTo(rsdp);
        "HYVE  "u8.CopyTo(rsdp.AsSpan(9));
        rsdp[15] = 2;                                                      // ACPI 2.0+
        BinaryPrimitives.WriteUInt32LittleEndian(rsdp.AsSpan(20), RsdpSize);
        BinaryPrimitives.WriteUInt64LittleEndian(rsdp.AsSpan(24), xsdtAt);
        rsdp[8] = LinuxBoot.Checksum(rsdp.AsSpan(0, 20));
        rsdp[32] = LinuxBoot.Checksum(rsdp);

        layout = new Layout((int)(xsdtAt - at), x.Length, (int)(madtAt - at), (int)(fadtAt - at), (int)(facsAt - at), (int)(dsdtAt - at));
        byte[] all = new byte[(int)(dsdtAt - at) + d.Length];
        rsdp.CopyTo(all, 0);
        x.CopyTo(all, (int)(xsdtAt - at));
        m.CopyTo(all, (int)(madtAt - at));
        f.CopyTo(all, (int)(fadtAt - at));
        Facs().CopyTo(all, (int)(facsAt - at));
        d.CopyTo(all, (int)(dsdtAt - at));
        return all;
    }

    private static ulong Align(ulong v, ulong to) => (v + to - 1) & ~(to - 1);

    // MADT: header, local APIC address, flags (PCAT_COMPAT: there are 8259s), then entries.
    private static byte[] Madt(int cpus)
    {
        var madt = new List<byte>(Header("APIC", 1));
        madt.AddRange(LinuxBoot.Le(0xFEE0_0000, 4));
        madt.AddRange(LinuxBoot.Le(1, 4));
        for (int i = 0; i < cpus; i++)
            madt.AddRange([0, 8, (byte)i, (byte)i, 1, 0, 0, 0]);          // processor local APIC, enabled
        madt.AddRange([1, 12, (byte)cpus, 0, .. LinuxBoot.Le(0xFEC0_0000, 4), .. LinuxBoot.Le(0, 4)]); // I/O APIC, GSI base 0
        madt.AddRange([2, 10, 0, 0, .. LinuxBoot.Le(2, 4), 0, 0]);                   // ISA IRQ 0 -> GSI 2
        // The lines the machine's level-triggered sources share (the SCI on 9, the virtio-mmio
        // devices on 5, 9, 10 and 11) are level-triggered and active-high, as on QEMU's pc
        // machine. Without an override a kernel takes the SCI as active-low and reads the idle
        // line as asserted.
        foreach (byte irq in LevelIrqs)
            madt.AddRange([2, 10, 0, irq, .. LinuxBoot.Le(irq, 4), 0x0D, 0]);
        madt.AddRange([4, 6, 0xFF, 0, 0, 1]);                              // LINT1 is NMI on all
        return Finish(madt);
    }

    // FADT revision 6 (276 bytes): only what the PM1a block, SCI, reset and power-off need.
    private static byte[] Fadt(ulong facs, ulong dsdt, ushort pmBase)
    {
        byte[] t = new byte[276];
        Header("FACP", 6).CopyTo(t, 0);
        Span<byte> s = t;
        BinaryPrimitives.WriteUInt32LittleEndian(s[36..], (uint)facs);    // FIRMWARE_CTRL
        BinaryPrimitives.WriteUInt32LittleEndian(s[40..], (uint)dsdt);    // DSDT
        BinaryPrimitives.WriteUInt16LittleEndian(s[46..], 9);             // SCI_INT
        // SMI_CMD 0: the machine is in ACPI mode from the start (PM1_CNT reads SCI_EN).
        BinaryPrimitives.WriteUInt32LittleEndian(s[56..], pmBase);        // PM1a_EVT_BLK
        BinaryPrimitives.WriteUInt32LittleEndian(s[64..], pmBase + 4u);   // PM1a_CNT_BLK
        t[88] = 4;                                                         // PM1_EVT_LEN
        t[89] = 2;                                                         // PM1_CNT_LEN
        BinaryPrimitives.WriteUInt16LittleEndian(s[96..], 101);           // P_LVL2_LAT: no C2
        BinaryPrimitives.WriteUInt16LittleEndian(s[98..], 1001);          // P_LVL3_LAT: no C3
        BinaryPrimitives.WriteUInt16LittleEndian(s[109..], 3);            // IAPC_BOOT_ARCH: legacy devices, 8042
        // Flags: WBINVD, PROC_C1, PWR_BUTTON and SLP_BUTTON (none as fixed features), RESET_REG_SUP.
        BinaryPrimitives.WriteUInt32LittleEndian(s[112..], 1u | 4u | 16u | 32u | 1024u);
        Gas(s[116..], 1, 8, ResetPort);                                    // RESET_REG
        t[128] = ResetValue;
        BinaryPrimitives.WriteUInt64LittleEndian(s[140..], dsdt);         // X_DSDT
        Gas(s[148..], 1, 32, pmBase);                                      // X_PM1a_EVT_BLK
        Gas(s[172..], 1, 16, pmBase + 4u);                                 // X_PM1a_CNT_BLK
        "HYVE    "u8.CopyTo(s[268..]);                                     // hypervisor vendor identity
        BinaryPrimitives.WriteUInt32LittleEndian(s[4..], (uint)t.Length);
        t[9] = LinuxBoot.Checksum(t);
        return t;
    }

    // A generic address structure in system I/O space.
    private static void Gas(Span<byte> at, byte space, byte bits, uint address)
    {
        at[0] = space;
        at[1] = bits;
        at[2] = 0;
        at[3] = (byte)(bits / 8 == 4 ? 3 : bits / 8 == 2 ? 2 : 1); // access size: dword, word, byte
        BinaryPrimitives.WriteUInt64LittleEndian(at[4..], address);
    }

    // FACS (version 2): no waking vector, no global lock holder.
    private static byte[] Facs()
    {
        byte[] t = new byte[64];
        "FACS"u8.CopyTo(t);
        BinaryPrimitives.WriteUInt32LittleEndian(t.AsSpan(4), 64);
        t[32] = 2;
        return t;
    }

    // DSDT, in AML:
    //   Name (\_S5, Package (4) { 0, 0, 0, 0 })       soft-off is sleep type 0 (PowerControl)
    //   Scope (\_SB) { Device (PCI0) { Name (_HID, EisaId ("PNP0A03")) Name (_UID, 0)
    //     Name (_CRS, ResourceTemplate () { ... }) } }
    // The host bridge must be in the namespace: with ACPI on, a kernel finds PCI buses only there,
    // and its _CRS gives the bus numbers and the I/O ports the bridge forwards (all but the
    // configuration ports, which it decodes itself): without them a kernel cannot claim the I/O
    // its PCI devices decode (the IDE controller's legacy ports among them) and leaves them off.
    // The memory windows are the VGA hole, the PCI hole from the end of low RAM to the I/O APIC,
    // and everything from the end of RAM above 4 GiB to the top of the physical address space,
    // where firmware may place 64-bit BARs: a kernel keeps BARs inside them and moves the rest.
    private static byte[] Dsdt(ulong ramBytes)
    {
        var dsdt = new List<byte>(Header("DSDT", 2));
        dsdt.AddRange([0x08, (byte)'\\', (byte)'_', (byte)'S', (byte)'5', (byte)'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00]);
        byte[] crs =
        [
            0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0, 0x00, 0x00, 0xFF, 0x00, 0, 0, 0x00, 0x01, // WordBusNumber 0-0xFF
            0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08,                                     // IO 0xCF8, 8 ports
            0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0x00, 0xF7, 0x0C, 0, 0, 0xF8, 0x0C, // WordIO 0-0xCF7
            0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0x0D, 0xFF, 0xFF, 0, 0, 0x00, 0xF3, // WordIO 0xD00-0xFFFF
            .. DWordMemory(0xA_0000, 0xB_FFFF),
            .. DWordMemory(Math.Min(ramBytes, MemoryMap.DeviceWindow), 0xFEBF_FFFF),
            .. QWordMemory(MemoryMap.FourGiB + (ramBytes > MemoryMap.DeviceWindow ? ramBytes - MemoryMap.DeviceWindow : 0), (1UL << PhysicalAddressBits) - 1),
            0x79, 0x00,                                                                          // end tag
        ];
        var device = new List<byte>
        {
            (byte)'P', (byte)'C', (byte)'I', (byte)'0',
            0x08, (byte)'_', (byte)'H', (byte)'I', (byte)'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03, // PNP0A03
            0x08, (byte)'_', (byte)'U', (byte)'I', (byte)'D', 0x00,
            0x08, (byte)'_', (byte)'C', (byte)'R', (byte)'S',
        };
        device.AddRange(Package(0x11, [0x0A, (byte)crs.Length, .. crs]));   // Buffer
        List<byte> scope = [(byte)'\\', (byte)'_', (byte)'S', (byte)'B', (byte)'_', .. Package(0x5B82, [.. device])]; // Device
        dsdt.AddRange(Package(0x10, [.. scope]));                             // Scope
        return Finish(dsdt);
    }

    // Address space descriptors for a read-write, non-cacheable memory range the bridge forwards
    // (minimum and maximum fixed, no translation).
    private static byte[] DWordMemory(ulong min, ulong max) => MemoryRange(0x87, 4, min, max);

    private static byte[] QWordMemory(ulong min, ulong max) => MemoryRange(0x8A, 8, min, max);

    // The tag, the length, memory space, min and max fixed, read-write; then granularity (0),
    // minimum, maximum, translation (0) and length, each of width bytes.
    private static byte[] MemoryRange(byte tag, int width, ulong min, ulong max)
    {
        byte[] d = new byte[6 + 5 * width];
        d[0] = tag;
        d[1] = (byte)(d.Length - 3);
        d[4] = 0x0C;
        d[5] = 0x01;
        foreach (var (field, value) in new[] { (1, min), (2, max), (4, max - min + 1) })
        {
            for (int b = 0; b < width; b++)
                d[6 + field * width + b] = (byte)(value >> (8 * b));
        }
        return d;
    }

    // An AML term with a package length: the opcode (one byte, or 0x5B and a second), the
    // PkgLength (which counts itself) and the body.
    private static byte[] Package(int opcode, byte[] body)
    {
        var t = new List<byte>();
        if (opcode > 0xFF)
            t.Add((byte)(opcode >> 8));
        t.Add((byte)opcode);
        int length = body.Length + 1;
        if (length < 0x40)
        {
            t.Add((byte)length);
        }
        else
        {
            length = body.Length + 2;
            if (length >= 0x1000)
                throw new ArgumentException("AML package too long for a 2-byte PkgLength", nameof(body));
            t.Add((byte)(0x40 | (length & 0x0F)));
            t.Add((byte)(length >> 4));
        }
        t.AddRange(body);
        return [.. t];
    }

    private static byte[] Header(string signature, byte revision)
    {
        byte[] h = new byte[36];
        System.Text.Encoding.ASCII.GetBytes(signature).CopyTo(h, 0);
        h[8] = revision;
        "HYVE  "u8.CopyTo(h.AsSpan(10));
        "HYVEPC  "u8.CopyTo(h.AsSpan(16));
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), 1);
        "HYVE"u8.CopyTo(h.AsSpan(28));
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(32), 1);
        return h;
    }

    // Sets the length and the checksum of a table built as header + body.
    private static byte[] Finish(List<byte> table)
    {
        byte[] t = [.. table];
        BinaryPrimitives.WriteUInt32LittleEndian(t.AsSpan(4), (uint)t.Length);
        t[9] = 0;
        t[9] = LinuxBoot.Checksum(t);
        return t;
    }
}
