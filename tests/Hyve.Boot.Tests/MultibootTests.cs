// The Multiboot loader on images built here byte by byte: ELF32, ELF64 and the address-field
// form; the information structure a kernel reads; and corrupt or truncated files rejected
// with a message that says what is wrong.
using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Text;
using Xunit;

namespace Hyve.Boot.Tests;

public sealed class MultibootTests
{
    private static readonly MemoryMap Map = MemoryMap.Pc(64UL << 20);

    private static byte[] Header(uint flags, params uint[] addresses)
    {
        var h = new byte[12 + 4 * addresses.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(h, Multiboot.HeaderMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), unchecked(0u - Multiboot.HeaderMagic - flags));
        for (int i = 0; i < addresses.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12 + 4 * i), addresses[i]);
        return h;
    }

    // An ELF file with one PT_LOAD segment: code at file offset 0x1000, loaded at paddr, with
    // memsz - filesz bytes of bss, and the Multiboot header at the start of the code.
    private static byte[] Elf(bool is64, ulong vaddr, ulong paddr, byte[] code, ulong bss, ulong entry)
    {
        var f = new byte[0x1000 + code.Length];
        f[0] = 0x7F; f[1] = (byte)'E'; f[2] = (byte)'L'; f[3] = (byte)'F';
        f[4] = (byte)(is64 ? 2 : 1); f[5] = 1; f[6] = 1;
        Span<byte> s = f;
        BinaryPrimitives.WriteUInt16LittleEndian(s[16..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(s[18..], (ushort)(is64 ? 62 : 3));
        if (is64)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(s[24..], entry);
            BinaryPrimitives.WriteUInt64LittleEndian(s[32..], 64);
            BinaryPrimitives.WriteUInt16LittleEndian(s[54..], 56);
            BinaryPrimitives.WriteUInt16LittleEndian(s[56..], 1);
            Span<byte> p = s[64..];
            BinaryPrimitives.WriteUInt32LittleEndian(p, 1);
            BinaryPrimitives.WriteUInt64LittleEndian(p[8..], 0x1000);
            BinaryPrimitives.WriteUInt64LittleEndian(p[16..], vaddr);
            BinaryPrimitives.WriteUInt64LittleEndian(p[24..], paddr);
            BinaryPrimitives.WriteUInt64LittleEndian(p[32..], (ulong)code.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(p[40..], (ulong)code.Length + bss);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(s[24..], (uint)entry);
            BinaryPrimitives.WriteUInt32LittleEndian(s[28..], 52);
            BinaryPrimitives.WriteUInt16LittleEndian(s[42..], 32);
            BinaryPrimitives.WriteUInt16LittleEndian(s[44..], 1);
            Span<byte> p = s[52..];
            BinaryPrimitives.WriteUInt32LittleEndian(p, 1);
            BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 0x1000);
            BinaryPrimitives.WriteUInt32LittleEndian(p[8..], (uint)vaddr);
            BinaryPrimitives.WriteUInt32LittleEndian(p[12..], (uint)paddr);
            BinaryPrimitives.WriteUInt32LittleEndian(p[16..], (uint)code.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(p[20..], (uint)code.Length + (uint)bss);
        }
        code.CopyTo(f, 0x1000);
        return f;
    }

    private static byte[] Code(uint flags = 0) => [.. Header(flags), .. Enumerable.Range(0, 52).Select(i => (byte)i)];

    private static byte[] Read(BootImage image, ulong address, int length)
    {
        var mem = new byte[length];
        foreach (LoadSegment s in image.Segments)
        {
            for (int i = 0; i < length; i++)
            {
                ulong a = address + (ulong)i;
                if (a >= s.Address && a < s.Address + (ulong)s.Data.Length)
                    mem[i] = s.Data[a - s.Address];
            }
        }
        return mem;
    }

    private static uint U32(BootImage image, ulong address) => BinaryPrimitives.ReadUInt32LittleEndian(Read(image, address, 4));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ElfSegmentsArePlacedAtTheirPhysicalAddresses(bool is64)
    {
        byte[] code = Code();
        // Linked high, loaded at 1 MiB: the entry is translated through the segment.
        BootImage image = Multiboot.Load(Elf(is64, 0xC010_0000, 0x10_0000, code, 0x2000, 0xC010_000C), Map);
        LoadSegment kernel = image.Segments[0];
        Assert.Equal(0x10_0000UL, kernel.Address);
        Assert.Equal(code, kernel.Data);
        Assert.Equal(0x2000UL, kernel.ZeroBytes);
        Assert.Equal(0x10_000CUL, image.Entry);
        Assert.Equal(EntryMode.Protected32, image.Mode);
        Assert.Equal(Multiboot.BootMagic, image.Eax);
    }

    [Fact]
    public void AddressFieldsPlaceAnyFile()
    {
        // header_addr 0x200010 at file offset 16: the image starts at 0x200000, 0x40 bytes are
        // loaded, bss to 0x200100, entry 0x200020.
        byte[] file = [.. new byte[16], .. Header(1 << 16, 0x20_0010, 0x20_0000, 0x20_0040, 0x20_0100, 0x20_0020), .. new byte[64]];
        BootImage image = Multiboot.Load(file, Map);
        LoadSegment s = image.Segments[0];
        Assert.Equal(0x20_0000UL, s.Address);
        Assert.Equal(0x40, s.Data.Length);
        Assert.Equal(file.AsSpan(0, 0x40).ToArray(), s.Data);
        Assert.Equal(0x20_0100UL, s.End);
        Assert.Equal(0x20_0020UL, image.Entry);
    }

    [Fact]
    public void InformationStructureDescribesMemoryCommandLineAndModules()
    {
        var modules = new[] { new MultibootModule("first module"u8.ToArray(), "mod1 arg"), new MultibootModule(new byte[5000], "mod2") };
        BootImage image = Multiboot.Load(Elf(false, 0x10_0000, 0x10_0000, Code(), 0, 0x10_0000), Map, "console=ttyS0", modules);
        ulong info = image.Ebx;
        Assert.True(info >= 0x10_1000 && info % 4096 == 0, $"info at 0x{info:X}");
        uint flags = U32(image, info);
        Assert.Equal(1u | 4 | 8 | 64 | 512, flags);
        Assert.Equal(639u, U32(image, info + 4));
        Assert.Equal((64u << 10) - 1024, U32(image, info + 8));
        Assert.Equal("console=ttyS0", CString(image, U32(image, info + 16)));
        Assert.Equal("hyve", CString(image, U32(image, info + 64)));
        Assert.Equal(2u, U32(image, info + 20));
        uint mods = U32(image, info + 24);
        uint m0 = U32(image, mods), m0End = U32(image, mods + 4);
        Assert.Equal("first module"u8.ToArray(), Read(image, m0, (int)(m0End - m0)));
        Assert.Equal("mod1 arg", CString(image, U32(image, mods + 8)));
        uint m1 = U32(image, mods + 16);
        Assert.True(m1 >= m0End && m1 % 8 == 0, $"second module at 0x{m1:X}");
        Assert.Equal("mod2", CString(image, U32(image, mods + 24)));

        // The memory map: 20-byte entries, usable RAM where the machine has it.
        uint length = U32(image, info + 44), at = U32(image, info + 48);
        Assert.Equal((uint)(Map.Ranges.Count * 24), length);
        for (int i = 0; i < Map.Ranges.Count; i++)
        {
            byte[] e = Read(image, at + (ulong)(24 * i), 24);
            Assert.Equal(20u, BinaryPrimitives.ReadUInt32LittleEndian(e));
            Assert.Equal(Map.Ranges[i].Base, BinaryPrimitives.ReadUInt64LittleEndian(e.AsSpan(4)));
            Assert.Equal(Map.Ranges[i].Length, BinaryPrimitives.ReadUInt64LittleEndian(e.AsSpan(12)));
            Assert.Equal((uint)Map.Ranges[i].Type, BinaryPrimitives.ReadUInt32LittleEndian(e.AsSpan(20)));
        }
    }

    [Fact]
    public void ModulesArePageAlignedWhenTheKernelAsks()
    {
        var modules = new[] { new MultibootModule(new byte[3], "a"), new MultibootModule(new byte[3], "b") };
        BootImage image = Multiboot.Load(Elf(false, 0x10_0000, 0x10_0000, Code(flags: 1), 0, 0x10_0000), Map, "", modules);
        uint mods = U32(image, image.Ebx + 24);
        Assert.Equal(0u, U32(image, mods) % 4096);
        Assert.Equal(0u, U32(image, mods + 16) % 4096);
        Assert.NotEqual(U32(image, mods), U32(image, mods + 16));
    }

    private static string CString(BootImage image, ulong address)
    {
        byte[] b = Read(image, address, 64);
        return Encoding.UTF8.GetString(b, 0, Array.IndexOf(b, (byte)0));
    }

    [Fact]
    public void MemoryMapSplitsAroundTheDeviceWindow()
    {
        MemoryMap big = MemoryMap.Pc(4UL << 30);
        Assert.Equal(MemoryMap.DeviceWindow, big.LowEnd);
        MemoryRange high = big.Ranges[^1];
        Assert.Equal(MemoryMap.FourGiB, high.Base);
        Assert.Equal((4UL << 30) - MemoryMap.DeviceWindow, high.Length);
        Assert.Equal(3, big.RamRegions().Count());
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMap.Pc(1UL << 20));
    }

    [Theory]
    [InlineData("empty")]
    [InlineData("no-header")]
    [InlineData("bad-checksum")]
    [InlineData("header-past-8k")]
    [InlineData("unknown-required-flag")]
    [InlineData("not-elf-no-addresses")]
    [InlineData("truncated-segment")]
    [InlineData("truncated-program-headers")]
    [InlineData("outside-ram")]
    [InlineData("addresses-past-end")]
    public void BadFilesAreRejectedWithAMessage(string kind)
    {
        byte[] good = Elf(false, 0x10_0000, 0x10_0000, Code(), 0, 0x10_0000);
        byte[] file = kind switch
        {
            "empty" => [],
            "no-header" => new byte[4096],
            "bad-checksum" => Patch(good, 0x1008, 0),
            "header-past-8k" => [.. new byte[8192], .. Header(0)],
            "unknown-required-flag" => Patch(Patch(good, 0x1004, 0x8), 0x1008, unchecked(0u - Multiboot.HeaderMagic - 8)),
            "not-elf-no-addresses" => [.. Header(0), .. new byte[64]],
            "truncated-segment" => good[..0x1010],
            "truncated-program-headers" => Patch(good, 28, 0xF00),
            "outside-ram" => Elf(false, 0x800_0000, 0x800_0000, Code(), 0, 0x800_0000),
            "addresses-past-end" => [.. Header(1 << 16, 0x10_0000, 0x10_0000, 0x20_0000, 0, 0x10_0000), .. new byte[16]],
            _ => throw new ArgumentException(kind),
        };
        InvalidDataException e = Assert.Throws<InvalidDataException>(() => Multiboot.Load(file, Map));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.DoesNotContain('\n', e.Message);
    }

    private static byte[] Patch(byte[] file, int at, uint value)
    {
        byte[] copy = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(at), value);
        return copy;
    }

    [Fact]
    public void FlatBinariesGoWhereTheyAreToldAndStartThere()
    {
        BootImage image = FlatBinary.Load([0xF4], 0x10_0000, Map);
        Assert.Equal(0x10_0000UL, image.Entry);
        Assert.Equal(EntryMode.Protected32, image.Mode);
        Assert.Equal([0xF4], image.Segments.Single().Data);
        Assert.Throws<InvalidDataException>(() => FlatBinary.Load([], 0x10_0000, Map));
        Assert.Throws<InvalidDataException>(() => FlatBinary.Load([0xF4], 0xA_0000, Map)); // the legacy hole
        Assert.Throws<InvalidDataException>(() => FlatBinary.Load(new byte[16], Map.LowEnd - 8, Map));
    }
}
