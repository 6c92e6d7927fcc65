// The ACPI tables an operating system needs to find the interrupt controllers and the CPUs:
// an RSDP (revision 2) pointing at an XSDT that lists one MADT. The MADT names the local APIC
// of each vCPU, the I/O APIC with GSI base 0, the override that sends ISA IRQ 0 to GSI 2, and
// LINT1 as NMI on every processor. (No FADT or DSDT: a kernel uses these for its interrupt and
// SMP setup and runs the rest without an ACPI namespace.)
using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace Hyve.Boot;

/// <summary>Builds Hyve's ACPI tables.</summary>
public static class AcpiTables
{
    /// <summary>The tables for <paramref name="cpus"/> vCPUs, laid out from <paramref name="at"/>
    /// (16-byte aligned); the RSDP is first.</summary>
    public static byte[] Build(ulong at, int cpus)
    {
        if ((at & 15) != 0)
            throw new ArgumentException("the RSDP must be 16-byte aligned", nameof(at));
        const int RsdpSize = 36, XsdtSize = 36 + 8;
        ulong xsdtAt = at + 48, madtAt = xsdtAt + 48;

        // MADT: header, local APIC address, flags (PCAT_COMPAT: there are 8259s), then entries.
        var madt = new List<byte>(Header("APIC", 1));
        madt.AddRange(LinuxBoot.Le(0xFEE0_0000, 4));
        madt.AddRange(LinuxBoot.Le(1, 4));
        for (int i = 0; i < cpus; i++)
            madt.AddRange([0, 8, (byte)i, (byte)i, 1, 0, 0, 0]);          // processor local APIC, enabled
        madt.AddRange([1, 12, (byte)cpus, 0, .. LinuxBoot.Le(0xFEC0_0000, 4), .. LinuxBoot.Le(0, 4)]); // I/O APIC, GSI base 0
        madt.AddRange([2, 10, 0, 0, .. LinuxBoot.Le(2, 4), 0, 0]);                   // ISA IRQ 0 -> GSI 2
        madt.AddRange([4, 6, 0xFF, 0, 0, 1]);                              // LINT1 is NMI on all
        byte[] m = Finish(madt);

        var xsdt = new List<byte>(Header("XSDT", 1));
        xsdt.AddRange(LinuxBoot.Le(madtAt, 8));
        byte[] x = Finish(xsdt);
        if (x.Length != XsdtSize)
            throw new InvalidOperationException("XSDT layout");

        byte[] rsdp = new byte[RsdpSize];
        "RSD PTR "u8.CopyTo(rsdp);
        "HYVE  "u8.CopyTo(rsdp.AsSpan(9));
        rsdp[15] = 2;                                                      // ACPI 2.0+
        BinaryPrimitives.WriteUInt32LittleEndian(rsdp.AsSpan(20), RsdpSize);
        BinaryPrimitives.WriteUInt64LittleEndian(rsdp.AsSpan(24), xsdtAt);
        rsdp[8] = LinuxBoot.Checksum(rsdp.AsSpan(0, 20));
        rsdp[32] = LinuxBoot.Checksum(rsdp);

        byte[] all = new byte[(int)(madtAt - at) + m.Length];
        rsdp.CopyTo(all, 0);
        x.CopyTo(all, (int)(xsdtAt - at));
        m.CopyTo(all, (int)(madtAt - at));
        return all;
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
