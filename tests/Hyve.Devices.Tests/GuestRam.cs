// Little-endian values in guest RAM, as the tests' drivers lay out rings and requests.
using System;
using System.Buffers.Binary;
using Hyve.Vmm;

namespace Hyve.Devices.Tests;

internal static class GuestRam
{
    /// <summary>Writes the low <paramref name="bytes"/> of <paramref name="value"/> at <paramref name="gpa"/>.</summary>
    public static void Put(this GuestMemory memory, ulong gpa, ulong value, int bytes)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        memory.WriteRam(gpa, b[..bytes]);
    }

    /// <summary>Reads <paramref name="bytes"/> at <paramref name="gpa"/>.</summary>
    public static ulong Get(this GuestMemory memory, ulong gpa, int bytes)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        memory.ReadRam(gpa, b[..bytes]);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }
}
