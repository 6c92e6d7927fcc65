// The Linux loader: a bzImage (or an uncompressed vmlinux ELF) through the 64-bit boot protocol
// (Documentation/x86/boot.rst).
// The protected-mode kernel goes to its preferred address (or 1 MiB), the boot parameters
// ("zero page") get the file's setup header, the command line, the initrd and the e820 map,
// and the processor starts in 64-bit mode at the kernel's 64-bit entry with the low 4 GiB
// identity-mapped and RSI pointing at the boot parameters. An MP table describes the CPUs, the
// I/O APIC and the ISA interrupt routing, for kernels without ACPI tables.
using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;

namespace Hyve.Boot;

/// <summary>Loads Linux bzImages.</summary>
public static class LinuxBoot
{
    /// <summary>Where the boot parameters go.</summary>
    public const ulong BootParams = 0x7000;
    /// <summary>Where the command line goes.</summary>
    public const ulong CommandLine = 0x20000;
    /// <summary>Where the page tables go (PML4, PDPT, four page directories).</summary>
    public const ulong PageTables = 0x10000;
    /// <summary>Where the GDT goes.</summary>
    public const ulong Gdt = 0x1000;
    /// <summary>Where the MP floating pointer and table go (the last KiB of base memory).</summary>
    public const ulong MpTable = 0x9FC00;
    /// <summary>Where the ACPI tables go (the RSDP first); boot_params.acpi_rsdp_addr points here. In
    /// the reserved top of conventional memory (<see cref="MemoryMap.FirmwareData"/>): a kernel
    /// parses the DSDT late in its boot, after it has reused usable memory below 1 MiB.</summary>
    public const ulong Acpi = MemoryMap.FirmwareData;

    private const uint HeaderMagic = 0x5372_6448; // "HdrS"
    private const ushort MinVersion = 0x020C;     // xloadflags and the 64-bit entry
    private const ushort BootCs = 0x10, BootDs = 0x18;

    /// <summary>Whether <paramref name="file"/> is an x86-64 ELF executable (an uncompressed vmlinux).</summary>
    public static bool IsVmlinux(ReadOnlySpan<byte> file) =>
        ElfFile.IsElf64(file) && BinaryPrimitives.ReadUInt16LittleEndian(file[16..]) == 2 && BinaryPrimitives.ReadUInt16LittleEndian(file[18..]) == 62
        && !Multiboot.IsMultiboot(file);

    /// <summary>Loads an uncompressed vmlinux: its PT_LOAD segments at their physical addresses, a
    /// boot-parameter page with the fields a bzImage's setup header would give, and the same
    /// 64-bit entry state (the ELF entry is startup_64's physical address).</summary>
    /// <exception cref="InvalidDataException">Not an x86-64 vmlinux, truncated, or it does not fit.</exception>
    public static BootImage LoadVmlinux(byte[] kernel, MemoryMap map, string commandLine, byte[]? initrd = null, int cpus = 1)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(map);
        if (!IsVmlinux(kernel))
            throw new InvalidDataException("not an x86-64 ELF vmlinux");
        ReadOnlySpan<byte> f = kernel;
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(f[24..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(f[32..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(f[54..]), phnum = BinaryPrimitives.ReadUInt16LittleEndian(f[56..]);
        BootImage image = LongModeImage(entry);
        ulong end = 0;
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = ElfFile.ProgramHeader(f, phoff, i, phentsize, 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(p) != 1)
                continue;
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]), paddr = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]), memsz = BinaryPrimitives.ReadUInt64LittleEndian(p[40..]);
            ElfFile.CheckSegment(i, (ulong)f.Length, offset, filesz, paddr, memsz);
            if (!map.IsRam(paddr, paddr + memsz))
                throw new InvalidDataException($"the kernel's segment at 0x{paddr:X}-0x{paddr + memsz:X} is not in the machine's RAM");
            image.Segments.Add(new LoadSegment(paddr, f.Slice((int)offset, (int)filesz).ToArray(), memsz - filesz));
            end = Math.Max(end, paddr + memsz);
        }
        if (end == 0)
            throw new InvalidDataException("the ELF file has no loadable segments");
        byte[] zero = new byte[4096];
        Span<byte> z = zero;
        BinaryPrimitives.WriteUInt16LittleEndian(z[0x1FE..], 0xAA55);
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x202..], HeaderMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(z[0x206..], 0x020F);
        z[0x211] = 0x01;                                    // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x230..], 0x20_0000); // kernel_alignment
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x238..], 2047);       // cmdline_size
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x22C..], 0x7FFF_FFFF); // initrd_addr_max
        Finish(image, z, map, commandLine, 2047, initrd, end, cpus);
        image.Segments.Add(new LoadSegment(BootParams, zero));
        return image;
    }

    /// <summary>Whether <paramref name="file"/> looks like a bzImage.</summary>
    public static bool IsBzImage(ReadOnlySpan<byte> file) =>
        file.Length > 0x268 && BinaryPrimitives.ReadUInt16LittleEndian(file[0x1FE..]) == 0xAA55
        && BinaryPrimitives.ReadUInt32LittleEndian(file[0x202..]) == HeaderMagic;

    /// <summary>Loads <paramref name="kernel"/> (with <paramref name="initrd"/>, if any) for a
    /// machine with <paramref name="map"/> and <paramref name="cpus"/> vCPUs.</summary>
    /// <exception cref="InvalidDataException">Not a bzImage this loader can start, or it does not fit.</exception>
    public static BootImage Load(byte[] kernel, MemoryMap map, string commandLine, byte[]? initrd = null, int cpus = 1)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(map);
        if (!IsBzImage(kernel))
            throw new InvalidDataException("not a Linux bzImage (no boot-sector signature and HdrS header)");
        ReadOnlySpan<byte> f = kernel;
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(f[0x206..]);
        if (version < MinVersion)
            throw new InvalidDataException($"boot protocol {version >> 8}.{version & 0xFF} is too old (the 64-bit entry needs 2.12)");
        ushort xloadflags = BinaryPrimitives.ReadUInt16LittleEndian(f[0x236..]);
        if ((xloadflags & 1) == 0)
            throw new InvalidDataException("the kernel has no 64-bit entry point (XLF_KERNEL_64 is clear)");
        int setupSects = f[0x1F1] == 0 ? 4 : f[0x1F1];
        int pmOffset = (setupSects + 1) * 512;
        int headerEnd = 0x202 + f[0x201];
        if (pmOffset >= f.Length || headerEnd > pmOffset)
            throw new InvalidDataException("truncated bzImage (the setup code runs past the end of the file)");
        uint cmdlineSize = BinaryPrimitives.ReadUInt32LittleEndian(f[0x238..]);
        bool relocatable = f[0x234] != 0;
        ulong pref = BinaryPrimitives.ReadUInt64LittleEndian(f[0x258..]);
        ulong initSize = BinaryPrimitives.ReadUInt32LittleEndian(f[0x260..]);
        ulong payload = (ulong)(f.Length - pmOffset);
        ulong need = Math.Max(initSize, payload);
        ulong load = relocatable && map.IsRam(pref, pref + need) ? pref : MemoryMap.HighMemory;
        if (!map.IsRam(load, load + need))
            throw new InvalidDataException($"the kernel needs {need >> 20} MiB from 0x{load:X}: more than the machine's RAM");

        BootImage image = LongModeImage(load + 0x200);
        image.Segments.Add(new LoadSegment(load, f[pmOffset..].ToArray(), need - payload));
        byte[] zero = new byte[4096];
        Span<byte> z = zero;
        f[0x1F1..headerEnd].CopyTo(z[0x1F1..]);
        z[0x211] |= 0x80;                                   // CAN_USE_HEAP
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x214..], (uint)load); // code32_start: where it is
        Finish(image, z, map, commandLine, cmdlineSize, initrd, load + need, cpus);
        image.Segments.Add(new LoadSegment(BootParams, zero));
        return image;
    }

    // The 64-bit boot protocol's entry state: Hyve's page tables and GDT, RSI at the boot parameters.
    private static BootImage LongModeImage(ulong entry) => new()
    {
        Mode = EntryMode.Long64,
        Entry = entry,
        Rsi = BootParams,
        Cr3 = PageTables,
        GdtBase = Gdt,
        GdtLimit = 0x1F,
        CodeSelector = BootCs,
        DataSelector = BootDs,
    };

    // What both forms share: the command line, the initrd (as high as the kernel allows, below
    // the device window, page-aligned, above kernelEnd), the loader type, e820, the page tables,
    // the GDT and the MP table.
    private static void Finish(BootImage image, Span<byte> z, MemoryMap map, string commandLine, uint cmdlineSize, byte[]? initrd, ulong kernelEnd, int cpus)
    {
        byte[] cmd = Encoding.ASCII.GetBytes(commandLine);
        // cmdline_size counts the bytes before the terminating zero (boot protocol 2.06 and later).
        if ((uint)cmd.Length > cmdlineSize)
            throw new InvalidDataException($"the command line is {cmd.Length} bytes; the kernel takes at most {cmdlineSize} (its cmdline_size)");
        image.Segments.Add(new LoadSegment(CommandLine, [.. cmd, 0]));
        ulong ramdisk = 0;
        if (initrd != null && initrd.Length > 0)
        {
            ulong max = Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(z[0x22C..]), map.LowEnd - 1);
            ramdisk = (max + 1 - (ulong)initrd.Length) & ~0xFFFUL;
            if (ramdisk < kernelEnd || !map.IsRam(ramdisk, ramdisk + (ulong)initrd.Length))
                throw new InvalidDataException($"the initrd ({initrd.Length >> 10} KiB) does not fit above the kernel");
            image.Segments.Add(new LoadSegment(ramdisk, initrd));
        }
        z[0x210] = 0xFF;                                    // type_of_loader: undefined
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x228..], (uint)CommandLine);
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x218..], (uint)ramdisk);
        BinaryPrimitives.WriteUInt32LittleEndian(z[0x21C..], (uint)(initrd?.Length ?? 0));
        int entries = 0;
        foreach (MemoryRange r in map.Ranges)
        {
            Span<byte> e = z[(0x2D0 + 20 * entries)..];
            BinaryPrimitives.WriteUInt64LittleEndian(e, r.Base);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], r.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)r.Type);
            entries++;
        }
        z[0x1E8] = (byte)entries;
        image.Segments.Add(new LoadSegment(PageTables, IdentityMap4G(PageTables)));
        byte[] gdt = new byte[32];
        BinaryPrimitives.WriteUInt64LittleEndian(gdt.AsSpan(BootCs), 0x00AF_9B00_0000_FFFFUL);
        BinaryPrimitives.WriteUInt64LittleEndian(gdt.AsSpan(BootDs), 0x00CF_9300_0000_FFFFUL);
        image.Segments.Add(new LoadSegment(Gdt, gdt));
        image.Segments.Add(new LoadSegment(MpTable, MultiprocessorTable(MpTable, cpus)));
        image.Segments.Add(new LoadSegment(Acpi, AcpiTables.Build(Acpi, cpus, out _, AcpiTables.PmBase, map.RamBytes)));
        BinaryPrimitives.WriteUInt64LittleEndian(z[0x070..], Acpi); // acpi_rsdp_addr (protocol 2.14)
    }

    // PML4, PDPT and four page directories of 2 MiB pages: linear = physical below 4 GiB.
    private static byte[] IdentityMap4G(ulong at)
    {
        byte[] t = new byte[6 * 4096];
        Span<byte> s = t;
        BinaryPrimitives.WriteUInt64LittleEndian(s, (at + 0x1000) | 3);
        for (int i = 0; i < 4; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(s[(0x1000 + 8 * i)..], (at + 0x2000 + 0x1000UL * (ulong)i) | 3);
        for (int i = 0; i < 2048; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(s[(0x2000 + 8 * i)..], ((ulong)i << 21) | 0x83);
        return t;
    }

    /// <summary>An MP floating pointer at <paramref name="at"/> followed by the configuration table:
    /// one processor entry per vCPU (APIC IDs 0..n-1, the first the BSP), the ISA bus, the I/O APIC
    /// (ID n, at 0xFEC00000), ISA IRQs 0-15 on its pins (IRQ 0 on pin 2), and LINT0 as ExtINT and
    /// LINT1 as NMI.</summary>
    public static byte[] MultiprocessorTable(ulong at, int cpus)
    {
        var t = new System.Collections.Generic.List<byte>();
        // The configuration table, after the 16-byte floating pointer.
        var body = new System.Collections.Generic.List<byte>();
        int count = 0;
        for (int i = 0; i < cpus; i++)
        {
            body.AddRange([0, (byte)i, 0x14, (byte)(i == 0 ? 3 : 1)]);
            body.AddRange(Le(0x0006_0F00, 4));          // signature: family 6
            body.AddRange(Le(0x0000_0201, 4));          // features: FPU, APIC
            body.AddRange(new byte[8]);
            count++;
        }
        body.AddRange([1, 0, .. "ISA   "u8]);
        count++;
        byte ioapicId = (byte)cpus;
        body.AddRange([2, ioapicId, 0x11, 1]);
        body.AddRange(Le(0xFEC0_0000, 4));
        count++;
        for (int irq = 0; irq < 16; irq++)
        {
            if (irq == 2)
                continue; // the cascade: nothing to route
            byte pin = (byte)(irq == 0 ? 2 : irq);
            body.AddRange([3, 0, 0, 0, 0, (byte)irq, ioapicId, pin]);
            count++;
        }
        body.AddRange([4, 3, 0, 0, 0, 0, 0xFF, 0]);    // ExtINT on LINT0 of every APIC
        body.AddRange([4, 1, 0, 0, 0, 0, 0xFF, 1]);    // NMI on LINT1
        count += 2;

        byte[] header = new byte[44];
        "PCMP"u8.CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), (ushort)(44 + body.Count));
        header[6] = 4;                                  // specification 1.4
        "HYVE    "u8.CopyTo(header.AsSpan(8));
        "PC          "u8.CopyTo(header.AsSpan(16));
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(34), (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(36), 0xFEE0_0000);
        byte[] config = [.. header, .. body];
        config[7] = Checksum(config);

        byte[] pointer = new byte[16];
        "_MP_"u8.CopyTo(pointer);
        BinaryPrimitives.WriteUInt32LittleEndian(pointer.AsSpan(4), (uint)(at + 16));
        pointer[8] = 1;                                 // length in 16-byte units
        pointer[9] = 4;
        pointer[10] = Checksum(pointer);
        t.AddRange(pointer);
        t.AddRange(config);
        return [.. t];
    }

    // The byte sum that makes a table's bytes add up to zero (MP and ACPI tables).
    internal static byte Checksum(ReadOnlySpan<byte> data)
    {
        byte sum = 0;
        foreach (byte b in data)
            sum += b;
        return (byte)-sum;
    }

    // The low bytes of v, little-endian.
    internal static byte[] Le(ulong v, int bytes)
    {
        byte[] b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b[..bytes];
    }
}
