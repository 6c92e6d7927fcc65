// Reads the .text section of an ELF64 file on the machine (real code for the differential tests).
using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;

namespace Hyve.X86.Tests;

/// <summary>Minimal ELF64 reader: finds a section by name.</summary>
public static class ElfText
{
    /// <summary>Returns the bytes and virtual address of <paramref name="section"/>, or null when absent.</summary>
    public static (byte[] Bytes, ulong Address)? Read(string path, string section = ".text")
    {
        if (!File.Exists(path))
            return null;
        byte[] f = File.ReadAllBytes(path);
        if (f.Length < 64 || f[0] != 0x7F || f[1] != (byte)'E' || f[4] != 2)
            return null;
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(f.AsSpan(0x28));
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(f.AsSpan(0x3A));
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(f.AsSpan(0x3C));
        int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(f.AsSpan(0x3E));
        Span<byte> strHdr = f.AsSpan((int)shoff + shstrndx * shentsize);
        ulong strOff = BinaryPrimitives.ReadUInt64LittleEndian(strHdr[0x18..]);
        for (int i = 0; i < shnum; i++)
        {
            Span<byte> h = f.AsSpan((int)shoff + i * shentsize);
            uint nameOff = BinaryPrimitives.ReadUInt32LittleEndian(h);
            int start = (int)strOff + (int)nameOff;
            int end = Array.IndexOf(f, (byte)0, start);
            if (Encoding.ASCII.GetString(f, start, end - start) != section)
                continue;
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(h[0x10..]);
            ulong off = BinaryPrimitives.ReadUInt64LittleEndian(h[0x18..]);
            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(h[0x20..]);
            return (f.AsSpan((int)off, (int)size).ToArray(), addr);
        }
        return null;
    }

    /// <summary>Real binaries used by the tests and benchmarks, when present.</summary>
    public static string[] KnownBinaries()
    {
        var list = new System.Collections.Generic.List<string>();
        string runtimeDir = System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory();
        list.Add(Path.Combine(runtimeDir, "libcoreclr.so"));
        foreach (string gccDir in new[] { "/usr/lib/gcc/x86_64-linux-gnu" })
        {
            if (!Directory.Exists(gccDir))
                continue;
            foreach (string d in Directory.GetDirectories(gccDir))
            {
                string cc1 = Path.Combine(d, "cc1");
                if (File.Exists(cc1))
                {
                    list.Add(cc1);
                    break;
                }
            }
        }
        return list.ToArray();
    }
}
