// Reads ELF64 section headers (enough to find a named section: the disassembler's --section,
// real-code tests) and checks program-header and segment bounds for the loaders.
using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;

namespace Hyve.Boot;

/// <summary>A section's contents and load address.</summary>
/// <param name="Bytes">The section's bytes.</param>
/// <param name="Address">Its virtual address.</param>
public readonly record struct ElfSection(byte[] Bytes, ulong Address);

/// <summary>Minimal ELF64 little-endian reader.</summary>
public static class ElfFile
{
    /// <summary>Whether <paramref name="image"/> starts like an ELF64 little-endian file.</summary>
    public static bool IsElf64(ReadOnlySpan<byte> image) =>
        image.Length >= 64 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F' && image[4] == 2 && image[5] == 1;

    /// <summary>Program header <paramref name="index"/> of a file whose headers start at
    /// <paramref name="phoff"/>, <paramref name="entrySize"/> bytes apart (at least
    /// <paramref name="minSize"/>), with every offset checked against the file's length and for
    /// overflow.</summary>
    /// <exception cref="InvalidDataException">The header is not entirely inside the file.</exception>
    public static ReadOnlySpan<byte> ProgramHeader(ReadOnlySpan<byte> file, ulong phoff, int index, int entrySize, int minSize)
    {
        if (entrySize < minSize)
            throw new InvalidDataException($"ELF program headers of {entrySize} bytes are too small (at least {minSize})");
        ulong length = (ulong)file.Length;
        ulong skip = (ulong)index * (ulong)entrySize;
        if (phoff > length || skip > length - phoff || (ulong)entrySize > length - phoff - skip)
            throw new InvalidDataException($"ELF program header {index} at offset 0x{phoff:X} + {skip} is past the end of the file ({length} bytes)");
        return file.Slice((int)(phoff + skip), entrySize);
    }

    /// <summary>Checks a loadable segment: its file bytes lie inside the file, it holds no more
    /// file bytes than memory bytes, and its memory range does not wrap past the top of the
    /// address space.</summary>
    /// <exception cref="InvalidDataException">The segment is malformed.</exception>
    public static void CheckSegment(int index, ulong fileLength, ulong offset, ulong filesz, ulong paddr, ulong memsz)
    {
        if (filesz > memsz)
            throw new InvalidDataException($"ELF segment {index} has more file bytes (0x{filesz:X}) than memory bytes (0x{memsz:X})");
        if (offset > fileLength || filesz > fileLength - offset)
            throw new InvalidDataException($"ELF segment {index} runs past the end of the file");
        if (memsz > ulong.MaxValue - paddr)
            throw new InvalidDataException($"ELF segment {index} at 0x{paddr:X} with size 0x{memsz:X} wraps past the top of memory");
    }

    /// <summary>Finds <paramref name="name"/> in <paramref name="image"/>.</summary>
    /// <exception cref="InvalidDataException">The image is not ELF64, is truncated, or has no such section.</exception>
    public static ElfSection ReadSection(byte[] image, string name)
    {
        if (!IsElf64(image))
            throw new InvalidDataException("not an ELF64 little-endian file");
        try
        {
            ReadOnlySpan<byte> f = image;
            ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(f[0x28..]);
            int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(f[0x3A..]);
            int shnum = BinaryPrimitives.ReadUInt16LittleEndian(f[0x3C..]);
            int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(f[0x3E..]);
            ReadOnlySpan<byte> strHdr = f[checked((int)shoff + shstrndx * shentsize)..];
            int strOff = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(strHdr[0x18..]));
            const uint ShtNobits = 8;
            for (int i = 0; i < shnum; i++)
            {
                ReadOnlySpan<byte> h = f[checked((int)shoff + i * shentsize)..];
                int start = checked(strOff + (int)BinaryPrimitives.ReadUInt32LittleEndian(h));
                int len = f[start..].IndexOf((byte)0);
                if (len < 0 || Encoding.ASCII.GetString(f.Slice(start, len)) != name)
                    continue;
                if (BinaryPrimitives.ReadUInt32LittleEndian(h[4..]) == ShtNobits)
                    throw new InvalidDataException($"section '{name}' has no contents in the file");
                ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(h[0x10..]);
                int off = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(h[0x18..]));
                int size = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(h[0x20..]));
                return new ElfSection(f.Slice(off, size).ToArray(), addr);
            }
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or IndexOutOfRangeException or OverflowException)
        {
            throw new InvalidDataException("truncated or corrupt ELF section table", e);
        }
        throw new InvalidDataException($"no section '{name}'");
    }
}
