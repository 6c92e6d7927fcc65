// The Multiboot (version 1) loader: finds the header in the first 8 KiB, places the kernel from
// the header's address fields (the "a.out kludge", any container) or from the ELF32/ELF64
// program headers, then builds the information structure (memory sizes, the memory map, the
// command line, modules, the loader's name) above the kernel. Entry: 32-bit protected mode,
// EAX = 0x2BADB002, EBX = the information structure.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Hyve.Boot;

/// <summary>A module handed to a Multiboot kernel.</summary>
public sealed record MultibootModule(byte[] Data, string CommandLine);

/// <summary>Loads Multiboot v1 kernels.</summary>
public static class Multiboot
{
    /// <summary>The header's magic.</summary>
    public const uint HeaderMagic = 0x1BAD_B002;
    /// <summary>What EAX holds at entry.</summary>
    public const uint BootMagic = 0x2BAD_B002;

    private const int SearchLength = 8192;
    private const uint FlagPageAlignModules = 1, FlagMemoryInfo = 2, FlagVideo = 4, FlagAddresses = 1 << 16;
    private const uint InfoMemory = 1 << 0, InfoCmdline = 1 << 2, InfoModules = 1 << 3, InfoMmap = 1 << 6, InfoLoaderName = 1 << 9;
    private const int InfoSize = 88;

    /// <summary>Whether <paramref name="file"/> carries a valid Multiboot header.</summary>
    public static bool IsMultiboot(ReadOnlySpan<byte> file) => FindHeader(file) >= 0;

    /// <summary>Loads <paramref name="file"/> for a machine with <paramref name="map"/>.</summary>
    /// <exception cref="InvalidDataException">Not a Multiboot kernel, corrupt, truncated, or it
    /// does not fit in the machine's RAM.</exception>
    public static BootImage Load(byte[] file, MemoryMap map, string commandLine = "", IReadOnlyList<MultibootModule>? modules = null)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(map);
        int at = FindHeader(file);
        if (at < 0)
            throw new InvalidDataException("not a Multiboot kernel (no valid header in the first 8 KiB)");
        ReadOnlySpan<byte> h = file.AsSpan(at);
        uint flags = U32(h, 4);
        // Bits 0-15 are requirements: a loader that does not know one must refuse the kernel.
        uint unknown = flags & 0xFFFF & ~(FlagPageAlignModules | FlagMemoryInfo | FlagVideo);
        if (unknown != 0)
            throw new InvalidDataException($"the Multiboot header requires features this loader lacks (flags 0x{unknown:X})");

        var image = new BootImage { Mode = EntryMode.Protected32, Eax = BootMagic };
        if ((flags & FlagAddresses) != 0)
            LoadByAddresses(file, at, image);
        else if (IsElf(file))
            LoadElf(file, image);
        else
            throw new InvalidDataException("a Multiboot kernel that is not ELF must give its load addresses (header flag 16)");

        foreach (LoadSegment s in image.Segments)
        {
            if (!map.IsRam(s.Address, s.End))
                throw new InvalidDataException($"the kernel's segment at 0x{s.Address:X}-0x{s.End:X} is not in the machine's RAM");
        }
        if (image.Entry >= MemoryMap.FourGiB)
            throw new InvalidDataException($"the entry point 0x{image.Entry:X} is above 4 GiB");

        BuildInfo(image, map, commandLine, modules ?? [], (flags & FlagPageAlignModules) != 0);
        return image;
    }

    private static int FindHeader(ReadOnlySpan<byte> file)
    {
        int limit = Math.Min(file.Length, SearchLength) - 12;
        for (int i = 0; i <= limit; i += 4)
        {
            if (U32(file, i) == HeaderMagic && unchecked(HeaderMagic + U32(file, i + 4) + U32(file, i + 8)) == 0)
                return i;
        }
        return -1;
    }

    private static void LoadByAddresses(byte[] file, int at, BootImage image)
    {
        ReadOnlySpan<byte> h = file.AsSpan(at);
        if (h.Length < 32)
            throw new InvalidDataException("truncated Multiboot header");
        uint headerAddr = U32(h, 12), loadAddr = U32(h, 16), loadEnd = U32(h, 20), bssEnd = U32(h, 24), entry = U32(h, 28);
        if (loadAddr > headerAddr)
            throw new InvalidDataException("Multiboot load address above the header's address");
        long offset = at - (long)(headerAddr - loadAddr);
        if (offset < 0)
            throw new InvalidDataException("Multiboot header addresses place the image before the file's start");
        long size = loadEnd == 0 ? file.Length - offset : (long)loadEnd - loadAddr;
        if (size < 0 || offset + size > file.Length)
            throw new InvalidDataException("Multiboot load range runs past the end of the file");
        ulong zeros = bssEnd > loadAddr + size ? bssEnd - (loadAddr + (ulong)size) : 0;
        image.Segments.Add(new LoadSegment(loadAddr, file.AsSpan((int)offset, (int)size).ToArray(), zeros));
        image.Entry = entry;
    }

    private static bool IsElf(ReadOnlySpan<byte> f) =>
        f.Length >= 52 && f[0] == 0x7F && f[1] == (byte)'E' && f[2] == (byte)'L' && f[3] == (byte)'F' && f[5] == 1;

    private static void LoadElf(byte[] file, BootImage image)
    {
        ReadOnlySpan<byte> f = file;
        bool is64 = f[4] == 2;
        if (f[4] is not (1 or 2) || U16(f, 18) is not (3 or 62))
            throw new InvalidDataException("not an x86 ELF file");
        if (is64 && f.Length < 64)
            throw new InvalidDataException("truncated ELF header");
        ulong entry = is64 ? U64(f, 24) : U32(f, 24);
        ulong phoff = is64 ? U64(f, 32) : U32(f, 28);
        int phentsize = U16(f, is64 ? 54 : 42), phnum = U16(f, is64 ? 56 : 44);
        if (phnum == 0 || phentsize < (is64 ? 56 : 32))
            throw new InvalidDataException("the ELF file has no program headers");
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = ElfFile.ProgramHeader(f, phoff, i, phentsize, is64 ? 56 : 32);
            if (U32(p, 0) != 1) // PT_LOAD
                continue;
            ulong offset = is64 ? U64(p, 8) : U32(p, 4);
            ulong paddr = is64 ? U64(p, 24) : U32(p, 12);
            ulong filesz = is64 ? U64(p, 32) : U32(p, 16);
            ulong memsz = is64 ? U64(p, 40) : U32(p, 20);
            if (memsz == 0)
                continue;
            ElfFile.CheckSegment(i, (ulong)f.Length, offset, filesz, paddr, memsz);
            image.Segments.Add(new LoadSegment(paddr, f.Slice((int)offset, (int)filesz).ToArray(), memsz - filesz));
        }
        if (image.Segments.Count == 0)
            throw new InvalidDataException("the ELF file has no loadable segments");
        // The entry is a virtual address: translate it through the segment that holds it.
        image.Entry = entry;
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = ElfFile.ProgramHeader(f, phoff, i, phentsize, is64 ? 56 : 32);
            ulong vaddr = is64 ? U64(p, 16) : U32(p, 8), paddr = is64 ? U64(p, 24) : U32(p, 12), memsz = is64 ? U64(p, 40) : U32(p, 20);
            if (U32(p, 0) == 1 && entry >= vaddr && entry - vaddr < memsz)
            {
                image.Entry = entry - vaddr + paddr;
                break;
            }
        }
    }

    // The information structure, command lines, module list, memory map and loader name, packed
    // from the first page boundary above the kernel; modules follow on their own pages.
    private static void BuildInfo(BootImage image, MemoryMap map, string commandLine, IReadOnlyList<MultibootModule> modules, bool pageAlign)
    {
        ulong cursor = Align(Math.Max(image.End, MemoryMap.HighMemory), 4096);
        var modEntries = new byte[modules.Count * 16];
        var modCmdOffsets = new List<int>();
        for (int i = 0; i < modules.Count; i++)
        {
            ulong start = pageAlign ? Align(cursor, 4096) : Align(cursor, 8);
            byte[] data = modules[i].Data;
            Place(image, map, start, data, "module");
            BinaryPrimitives.WriteUInt32LittleEndian(modEntries.AsSpan(i * 16), (uint)start);
            BinaryPrimitives.WriteUInt32LittleEndian(modEntries.AsSpan(i * 16 + 4), (uint)(start + (ulong)data.Length));
            cursor = start + (ulong)data.Length;
        }

        // Everything else in one block: info, then the strings, module list and memory map.
        var block = new List<byte>(InfoSize);
        block.AddRange(new byte[InfoSize]);
        int cmdAt = AddString(block, commandLine);
        int nameAt = AddString(block, "hyve");
        foreach (MultibootModule m in modules)
            modCmdOffsets.Add(AddString(block, m.CommandLine));
        Pad(block, 8);
        int modsAt = block.Count;
        block.AddRange(modEntries);
        int mmapAt = block.Count;
        foreach (MemoryRange r in map.Ranges)
        {
            var e = new byte[24];
            BinaryPrimitives.WriteUInt32LittleEndian(e, 20);
            BinaryPrimitives.WriteUInt64LittleEndian(e.AsSpan(4), r.Base);
            BinaryPrimitives.WriteUInt64LittleEndian(e.AsSpan(12), r.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(20), (uint)r.Type);
            block.AddRange(e);
        }
        int mmapLength = block.Count - mmapAt;

        ulong infoAddr = Align(cursor, 4096);
        byte[] info = [.. block];
        uint Abs(int offset) => (uint)(infoAddr + (ulong)offset);
        Span<byte> s = info;
        uint infoFlags = InfoMemory | InfoCmdline | InfoMmap | InfoLoaderName | (modules.Count > 0 ? InfoModules : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(s, infoFlags);
        BinaryPrimitives.WriteUInt32LittleEndian(s[4..], (uint)((MemoryMap.ConventionalEnd - 0x400) / 1024));
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], (uint)((map.LowEnd - MemoryMap.HighMemory) / 1024));
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], 0xFFFF_FFFF); // no BIOS boot device
        BinaryPrimitives.WriteUInt32LittleEndian(s[16..], Abs(cmdAt));
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], (uint)modules.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(s[24..], Abs(modsAt));
        BinaryPrimitives.WriteUInt32LittleEndian(s[44..], (uint)mmapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(s[48..], Abs(mmapAt));
        BinaryPrimitives.WriteUInt32LittleEndian(s[64..], Abs(nameAt));
        for (int i = 0; i < modules.Count; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(s[(modsAt + i * 16 + 8)..], Abs(modCmdOffsets[i]));
        Place(image, map, infoAddr, info, "Multiboot information");
        image.Ebx = (uint)infoAddr;
    }

    private static void Place(BootImage image, MemoryMap map, ulong at, byte[] data, string what)
    {
        ulong end = at + (ulong)data.Length;
        if (end > MemoryMap.FourGiB || !map.IsRam(at, Math.Max(end, at + 1)))
            throw new InvalidDataException($"the {what} does not fit in the machine's RAM below 4 GiB");
        image.Segments.Add(new LoadSegment(at, data));
    }

    private static int AddString(List<byte> block, string s)
    {
        int at = block.Count;
        block.AddRange(Encoding.UTF8.GetBytes(s));
        block.Add(0);
        return at;
    }

    private static void Pad(List<byte> block, int alignment)
    {
        while (block.Count % alignment != 0)
            block.Add(0);
    }

    private static ulong Align(ulong v, ulong a) => (v + a - 1) & ~(a - 1);

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    private static ushort U16(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);
}
