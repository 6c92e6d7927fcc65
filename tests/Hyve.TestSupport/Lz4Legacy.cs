// Decompresses the LZ4 "legacy" frames kernels use for their compressed payload (magic
// 0x184C2102, then blocks of a 32-bit compressed size and an LZ4 block), so a test can get the
// uncompressed vmlinux out of Debian's bzImage.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;

namespace Hyve.TestSupport;

/// <summary>An LZ4 legacy-frame decoder.</summary>
public static class Lz4Legacy
{
    private const uint Magic = 0x184C_2102;

    /// <summary>The uncompressed bytes of <paramref name="data"/> (trailing bytes that are not a
    /// whole block, such as the kernel's appended length, are ignored).</summary>
    public static byte[] Decompress(ReadOnlySpan<byte> data)
    {
        if (data.Length < 4 || BinaryPrimitives.ReadUInt32LittleEndian(data) != Magic)
            throw new InvalidDataException("not an LZ4 legacy frame");
        var output = new List<byte>(data.Length * 3);
        int at = 4;
        while (at + 4 <= data.Length)
        {
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(data[at..]);
            if (size == Magic)
            {
                at += 4;
                continue;
            }
            if (size == 0 || size > data.Length - at - 4)
                break;
            Block(data.Slice(at + 4, (int)size), output);
            at += 4 + (int)size;
        }
        return [.. output];
    }

    private static void Block(ReadOnlySpan<byte> src, List<byte> dst)
    {
        int i = 0;
        while (i < src.Length)
        {
            int token = src[i++];
            int literals = token >> 4;
            if (literals == 15)
            {
                int b;
                do
                {
                    b = src[i++];
                    literals += b;
                }
                while (b == 255);
            }
            for (int k = 0; k < literals; k++)
                dst.Add(src[i++]);
            if (i >= src.Length)
                break; // the last sequence has literals only
            int offset = src[i] | (src[i + 1] << 8);
            i += 2;
            int length = token & 15;
            if (length == 15)
            {
                int b;
                do
                {
                    b = src[i++];
                    length += b;
                }
                while (b == 255);
            }
            length += 4;
            int from = dst.Count - offset;
            for (int k = 0; k < length; k++)
                dst.Add(dst[from + k]); // may overlap the bytes it produces, by design
        }
    }
}
