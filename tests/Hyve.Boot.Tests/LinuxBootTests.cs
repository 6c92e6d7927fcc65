// The Linux loader on Debian's own kernel image: the setup header read and copied, the kernel
// placed at its preferred address with room for its whole footprint, the boot parameters
// (loader type, command line, initrd, e820 map), the 64-bit entry state; files that are not a
// bzImage this loader can start rejected with one-line reasons; and the MP table's checksums.
using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Text;
using Hyve.TestSupport;
using Xunit;

namespace Hyve.Boot.Tests;

public sealed class LinuxBootTests
{
    private static readonly MemoryMap Map = MemoryMap.Pc(256UL << 20);

    private static byte[] Kernel()
    {
        Assert.True(DebianKernel.Path != null, DebianKernel.Why);
        return File.ReadAllBytes(DebianKernel.Path!);
    }

    private static LoadSegment At(BootImage image, ulong address) => image.Segments.Single(s => s.Address == address);

    [Fact]
    public void DebianBzImageIsPlacedAsTheBootProtocolSays()
    {
        byte[] k = Kernel();
        Assert.True(LinuxBoot.IsBzImage(k));
        int setupSects = k[0x1F1] == 0 ? 4 : k[0x1F1];
        ulong pref = BinaryPrimitives.ReadUInt64LittleEndian(k.AsSpan(0x258));
        ulong initSize = BinaryPrimitives.ReadUInt32LittleEndian(k.AsSpan(0x260));
        byte[] initrd = Enumerable.Range(0, 10000).Select(i => (byte)i).ToArray();
        BootImage image = LinuxBoot.Load(k, Map, "console=ttyS0 quiet", initrd, cpus: 2);

        Assert.Equal(EntryMode.Long64, image.Mode);
        LoadSegment kernel = At(image, pref); // relocatable, and RAM is there
        Assert.Equal(k.AsSpan((setupSects + 1) * 512).ToArray(), kernel.Data);
        Assert.Equal(initSize, kernel.End - kernel.Address);
        Assert.Equal(pref + 0x200, image.Entry); // the 64-bit entry point
        Assert.Equal(LinuxBoot.BootParams, image.Rsi);

        byte[] zp = At(image, LinuxBoot.BootParams).Data;
        int headerEnd = 0x202 + k[0x201];
        Assert.Equal(k.AsSpan(0x1F1, 0x210 - 0x1F1).ToArray(), zp.AsSpan(0x1F1, 0x210 - 0x1F1).ToArray());
        Assert.Equal("HdrS", Encoding.ASCII.GetString(zp, 0x202, 4));
        Assert.Equal(k.AsSpan(0x230, headerEnd - 0x230).ToArray(), zp.AsSpan(0x230, headerEnd - 0x230).ToArray());
        Assert.Equal(0xFF, zp[0x210]);
        Assert.Equal((uint)LinuxBoot.CommandLine, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x228)));
        Assert.Equal("console=ttyS0 quiet\0", Encoding.ASCII.GetString(At(image, LinuxBoot.CommandLine).Data));

        uint ramdisk = BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x218));
        Assert.Equal(10000u, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x21C)));
        Assert.Equal(0u, ramdisk % 4096);
        Assert.True(ramdisk >= kernel.End && ramdisk + 10000 <= Map.LowEnd);
        Assert.Equal(initrd, At(image, ramdisk).Data);

        Assert.Equal(Map.Ranges.Count, zp[0x1E8]);
        for (int i = 0; i < Map.Ranges.Count; i++)
        {
            Assert.Equal(Map.Ranges[i].Base, BinaryPrimitives.ReadUInt64LittleEndian(zp.AsSpan(0x2D0 + 20 * i)));
            Assert.Equal(Map.Ranges[i].Length, BinaryPrimitives.ReadUInt64LittleEndian(zp.AsSpan(0x2D0 + 20 * i + 8)));
            Assert.Equal((uint)Map.Ranges[i].Type, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x2D0 + 20 * i + 16)));
        }
        // Every segment lies in RAM below 4 GiB (the firmware's tables in the reserved area at the top
        // of conventional memory), and none overlaps another.
        var sorted = image.Segments.OrderBy(s => s.Address).ToList();
        for (int i = 0; i < sorted.Count; i++)
        {
            bool firmware = sorted[i].Address >= MemoryMap.FirmwareData && sorted[i].End <= MemoryMap.ConventionalEnd;
            Assert.True(Map.IsRam(sorted[i].Address, sorted[i].End) || firmware, $"0x{sorted[i].Address:X}");
            if (i > 0)
                Assert.True(sorted[i - 1].End <= sorted[i].Address, $"0x{sorted[i - 1].Address:X} overlaps 0x{sorted[i].Address:X}");
        }
    }

    [Fact]
    public void ASmallMachineLoadsTheKernelAtOneMegabyteOrRefusesIt()
    {
        byte[] k = Kernel();
        BootImage image = LinuxBoot.Load(k, MemoryMap.Pc(64UL << 20), "");
        Assert.Equal(0x10_0200UL, image.Entry);
        InvalidDataException e = Assert.Throws<InvalidDataException>(() => LinuxBoot.Load(k, MemoryMap.Pc(32UL << 20), ""));
        Assert.Contains("RAM", e.Message);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("old-protocol")]
    [InlineData("no-64-bit-entry")]
    [InlineData("no-signature")]
    [InlineData("long-command-line")]
    public void UnusableImagesAreRejectedInOneLine(string kind)
    {
        byte[] k = Kernel();
        string cmdline = "";
        switch (kind)
        {
            case "truncated": k = k[..0x400]; break;
            case "old-protocol": BinaryPrimitives.WriteUInt16LittleEndian(k.AsSpan(0x206), 0x0206); break;
            case "no-64-bit-entry": BinaryPrimitives.WriteUInt16LittleEndian(k.AsSpan(0x236), 0); break;
            case "no-signature": k[0x1FE] = 0; break;
            case "long-command-line": cmdline = new string('x', 4096); break;
        }
        InvalidDataException e = Assert.Throws<InvalidDataException>(() => LinuxBoot.Load(k, Map, cmdline));
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void MpTableChecksumsAndEntriesAreRight()
    {
        byte[] t = LinuxBoot.MultiprocessorTable(0x9FC00, 4);
        Assert.Equal("_MP_", Encoding.ASCII.GetString(t, 0, 4));
        Assert.Equal(0, t.AsSpan(0, 16).ToArray().Aggregate(0, (a, b) => (a + b) & 0xFF));
        Assert.Equal(0x9FC10u, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(4)));
        int length = BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(16 + 4));
        Assert.Equal("PCMP", Encoding.ASCII.GetString(t, 16, 4));
        Assert.Equal(0, t.AsSpan(16, length).ToArray().Aggregate(0, (a, b) => (a + b) & 0xFF));
        Assert.Equal(16 + length, t.Length);
        // Four processors (the first the BSP), the bus, the I/O APIC with ID 4, 15 IRQ routes, 2 LINTs.
        Assert.Equal(4 + 1 + 1 + 15 + 2, BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(16 + 34)));
        Assert.Equal(3, t[16 + 44 + 3]);
        Assert.Equal(1, t[16 + 44 + 20 + 3]);
        Assert.True(t.Length <= 1024, "fits in the last KiB of base memory");
    }

    [Fact]
    public void TheSameKernelAsAnUncompressedVmlinuxLoadsAtItsPhysicalAddresses()
    {
        Assert.True(DebianKernel.Path != null, DebianKernel.Why);
        byte[] vmlinux = DebianKernel.Vmlinux();
        Assert.True(LinuxBoot.IsVmlinux(vmlinux));
        Assert.False(LinuxBoot.IsBzImage(vmlinux));
        BootImage image = LinuxBoot.LoadVmlinux(vmlinux, Map, "console=ttyS0");
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(vmlinux.AsSpan(24));
        Assert.Equal(entry, image.Entry);
        Assert.True(entry is >= 0x100_0000 and < 0x1000_0000, $"startup_64 at 0x{entry:X} is a physical address");
        byte[] zp = At(image, LinuxBoot.BootParams).Data;
        Assert.Equal("HdrS", Encoding.ASCII.GetString(zp, 0x202, 4));
        Assert.Equal(0xFF, zp[0x210]);
        Assert.Equal((uint)LinuxBoot.CommandLine, BinaryPrimitives.ReadUInt32LittleEndian(zp.AsSpan(0x228)));
        // Every PT_LOAD segment at its physical address, with its bytes.
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(vmlinux.AsSpan(32));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(vmlinux.AsSpan(56)), loads = 0;
        for (int i = 0; i < phnum; i++)
        {
            Span<byte> p = vmlinux.AsSpan((int)phoff + 56 * i);
            if (BinaryPrimitives.ReadUInt32LittleEndian(p) != 1)
                continue;
            loads++;
            LoadSegment s = At(image, BinaryPrimitives.ReadUInt64LittleEndian(p[24..]));
            Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(p[32..]), (ulong)s.Data.Length);
            Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(p[40..]), s.End - s.Address);
        }
        Assert.True(loads >= 2);
        Assert.Throws<InvalidDataException>(() => LinuxBoot.LoadVmlinux(vmlinux[..64], Map, ""));
        Assert.Throws<InvalidDataException>(() => LinuxBoot.LoadVmlinux(vmlinux, MemoryMap.Pc(16UL << 20), ""));
    }

    [Fact]
    public void AcpiTablesChecksumAndDescribeTheApics()
    {
        const ulong At = 0x9E000;
        byte[] t = AcpiTables.Build(At, 3);
        static int Sum(ReadOnlySpan<byte> b)
        {
            int s = 0;
            foreach (byte x in b)
                s += x;
            return s & 0xFF;
        }
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(t, 0, 8));
        Assert.Equal(0, Sum(t.AsSpan(0, 20)));
        Assert.Equal(0, Sum(t.AsSpan(0, 36)));
        ulong xsdt = BinaryPrimitives.ReadUInt64LittleEndian(t.AsSpan(24));
        Span<byte> x = t.AsSpan((int)(xsdt - At));
        Assert.Equal("XSDT", Encoding.ASCII.GetString(x[..4]));
        Assert.Equal(0, Sum(x[..(int)BinaryPrimitives.ReadUInt32LittleEndian(x[4..])]));
        ulong madt = BinaryPrimitives.ReadUInt64LittleEndian(x[36..]);
        Span<byte> m = t.AsSpan((int)(madt - At));
        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(m[4..]);
        Assert.Equal("APIC", Encoding.ASCII.GetString(m[..4]));
        Assert.Equal(0, Sum(m[..length]));
        Assert.Equal(0xFEE0_0000u, BinaryPrimitives.ReadUInt32LittleEndian(m[36..]));
        // The entries: three local APICs (enabled, IDs 0-2), the I/O APIC (ID 3), the IRQ 0 override, the NMI.
        var types = new System.Collections.Generic.List<int>();
        for (int at = 44; at < length; at += m[at + 1])
            types.Add(m[at]);
        Assert.Equal([0, 0, 0, 1, 2, 2, 2, 2, 2, 4], types);
        Assert.Equal(2, m[44 + 8 * 2 + 3]);                 // the third processor's APIC ID
        Assert.Equal(3, m[44 + 8 * 3 + 2]);                 // the I/O APIC's ID
        // The overrides (ACPI 6.5, 5.2.12.5): IRQ 0 to GSI 2 with the bus's defaults, then IRQs 5,
        // 9 (the SCI), 10 and 11 to the same GSI, active-high (bits 1:0 = 01) and level (3:2 = 11).
        int iso = 44 + 8 * 3 + 12;
        Assert.Equal((0, 2u, 0), (m[iso + 3], BinaryPrimitives.ReadUInt32LittleEndian(m[(iso + 4)..]), (int)m[iso + 8]));
        for (int i = 1; i <= 4; i++)
        {
            Span<byte> o = m[(iso + 10 * i)..];
            byte irq = (byte)(i switch { 1 => 5, 2 => 9, 3 => 10, _ => 11 });
            Assert.Equal((irq, (uint)irq, 0x0D), (o[3], BinaryPrimitives.ReadUInt32LittleEndian(o[4..]), (int)BinaryPrimitives.ReadUInt16LittleEndian(o[8..])));
        }
        Assert.Throws<ArgumentException>(() => AcpiTables.Build(At + 4, 1));

        // The FADT: its PM1a blocks are PowerControl's, its DSDT holds \_S5 with sleep type 0.
        ulong fadt = BinaryPrimitives.ReadUInt64LittleEndian(x[44..]);
        Span<byte> f = t.AsSpan((int)(fadt - At));
        Assert.Equal("FACP", Encoding.ASCII.GetString(f[..4]));
        Assert.Equal(276u, BinaryPrimitives.ReadUInt32LittleEndian(f[4..]));
        Assert.Equal(0, Sum(f[..276]));
        Assert.Equal(0x600u, BinaryPrimitives.ReadUInt32LittleEndian(f[56..]));
        Assert.Equal(0x604u, BinaryPrimitives.ReadUInt32LittleEndian(f[64..]));
        Assert.Equal(0x604UL, BinaryPrimitives.ReadUInt64LittleEndian(f[176..]));
        Assert.Equal(0xCF9UL, BinaryPrimitives.ReadUInt64LittleEndian(f[120..]));
        ulong facs = BinaryPrimitives.ReadUInt32LittleEndian(f[36..]);
        Assert.Equal(0UL, facs % 64);
        Assert.Equal("FACS", Encoding.ASCII.GetString(t, (int)(facs - At), 4));
        ulong dsdt = BinaryPrimitives.ReadUInt64LittleEndian(f[140..]);
        Assert.Equal(dsdt, BinaryPrimitives.ReadUInt32LittleEndian(f[40..]));
        Span<byte> d = t.AsSpan((int)(dsdt - At));
        int dsdtLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        Assert.Equal("DSDT", Encoding.ASCII.GetString(d[..4]));
        Assert.Equal(0, Sum(d[..dsdtLength]));
        Assert.Equal("\\_S5_", Encoding.ASCII.GetString(d.Slice(37, 5)));
        Assert.Equal(t.Length, (int)(dsdt - At) + dsdtLength);
    }
}
