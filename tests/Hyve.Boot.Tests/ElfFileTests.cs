// ElfFile on a hand-built image (exact offsets known), on corrupt input, and on a real binary.
using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;
using Xunit;

namespace Hyve.Boot.Tests;

public sealed class ElfFileTests
{
    // A minimal ELF64 image: sections null, .text (PROGBITS at 0x1000), .bss (NOBITS), .shstrtab.
    private static byte[] BuildImage()
    {
        byte[] strtab = Encoding.ASCII.GetBytes("\0.text\0.bss\0.shstrtab\0");
        byte[] text = [0x90, 0xC3];
        int textOff = 64, strOff = textOff + text.Length, shOff = 128;
        var f = new byte[shOff + 4 * 64];
        f[0] = 0x7F; f[1] = (byte)'E'; f[2] = (byte)'L'; f[3] = (byte)'F'; f[4] = 2; f[5] = 1; f[6] = 1;
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(0x28), (ulong)shOff);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x3A), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x3C), 4);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x3E), 3);
        text.CopyTo(f, textOff);
        strtab.CopyTo(f, strOff);
        void Section(int i, uint name, uint type, ulong addr, int off, int size)
        {
            Span<byte> h = f.AsSpan(shOff + i * 64);
            BinaryPrimitives.WriteUInt32LittleEndian(h, name);
            BinaryPrimitives.WriteUInt32LittleEndian(h[4..], type);
            BinaryPrimitives.WriteUInt64LittleEndian(h[0x10..], addr);
            BinaryPrimitives.WriteUInt64LittleEndian(h[0x18..], (ulong)off);
            BinaryPrimitives.WriteUInt64LittleEndian(h[0x20..], (ulong)size);
        }
        Section(1, 1, 1, 0x1000, textOff, text.Length);
        Section(2, 7, 8, 0x2000, 0, 0x100);
        Section(3, 12, 3, 0, strOff, strtab.Length);
        return f;
    }

    [Fact]
    public void FindsASectionWithItsAddressAndBytes()
    {
        ElfSection s = ElfFile.ReadSection(BuildImage(), ".text");
        Assert.Equal(0x1000UL, s.Address);
        Assert.Equal(new byte[] { 0x90, 0xC3 }, s.Bytes);
    }

    [Fact]
    public void RejectsMissingAndContentlessSections()
    {
        byte[] image = BuildImage();
        Assert.Contains("no section", Assert.Throws<InvalidDataException>(() => ElfFile.ReadSection(image, ".data")).Message, StringComparison.Ordinal);
        Assert.Contains("no contents", Assert.Throws<InvalidDataException>(() => ElfFile.ReadSection(image, ".bss")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RejectsCorruptImagesWithInvalidData()
    {
        Assert.Throws<InvalidDataException>(() => ElfFile.ReadSection([1, 2, 3], ".text"));
        byte[] image = BuildImage();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(0x28), 0xFFFF_FFF0); // section table past the end
        Assert.Throws<InvalidDataException>(() => ElfFile.ReadSection(image, ".text"));
        image = BuildImage();
        Array.Resize(ref image, 150); // truncated inside the section table
        Assert.Throws<InvalidDataException>(() => ElfFile.ReadSection(image, ".text"));
    }

    [Fact]
    public void ReadsTheRuntimesOwnCode()
    {
        string path = Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "libcoreclr.so");
        ElfSection s = ElfFile.ReadSection(File.ReadAllBytes(path), ".text");
        Assert.True(s.Bytes.Length > 1_000_000, $".text of libcoreclr.so is {s.Bytes.Length} bytes");
        Assert.NotEqual(0UL, s.Address);
    }
}
