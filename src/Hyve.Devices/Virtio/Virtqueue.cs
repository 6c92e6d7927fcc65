// A split virtqueue in guest memory (virtio 1.x, section 2.7): the descriptor table, the
// driver's available ring and the device's used ring. The device side takes chains of
// descriptors the driver made available and returns them with the number of bytes written.
// A malformed chain (a loop, an index out of range, memory that is not RAM) is counted and
// returned with nothing written, as a device that cannot parse it would.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using Hyve.Vmm;

namespace Hyve.Devices.Virtio;

/// <summary>One buffer of a descriptor chain.</summary>
/// <param name="Gpa">Guest-physical address.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="DeviceWrites">Whether the device writes it (else it reads it).</param>
public readonly record struct VirtqBuffer(ulong Gpa, uint Length, bool DeviceWrites);

/// <summary>A split virtqueue.</summary>
public sealed class Virtqueue(GuestMemory memory)
{
    private const ushort DescNext = 1, DescWrite = 2, DescIndirect = 4;

    /// <summary>The queue's size (a power of two up to <see cref="MaxSize"/>).</summary>
    public ushort Size { get; set; } = MaxSize;

    /// <summary>The largest size this device offers.</summary>
    public const ushort MaxSize = 256;

    /// <summary>Guest-physical address of the descriptor table.</summary>
    public ulong Desc { get; set; }

    /// <summary>Guest-physical address of the available (driver) ring.</summary>
    public ulong Avail { get; set; }

    /// <summary>Guest-physical address of the used (device) ring.</summary>
    public ulong Used { get; set; }

    /// <summary>Whether the driver enabled the queue.</summary>
    public bool Ready { get; set; }

    /// <summary>The next available-ring entry the device will take.</summary>
    public ushort LastAvail { get; private set; }

    /// <summary>Chains that could not be parsed.</summary>
    public long Malformed { get; private set; }

    /// <summary>Back to the reset state.</summary>
    public void Reset()
    {
        Size = MaxSize;
        Desc = Avail = Used = 0;
        Ready = false;
        LastAvail = 0;
    }

    /// <summary>Takes the next available chain: its head index and buffers. False when the
    /// driver has made nothing more available.</summary>
    public bool TryPop(out ushort head, List<VirtqBuffer> buffers)
    {
        buffers.Clear();
        head = 0;
        if (!Ready || !ReadU16(Avail + 2, out ushort availIdx) || availIdx == LastAvail)
            return false;
        if (!ReadU16(Avail + 4 + 2UL * (ulong)(LastAvail % Size), out head))
        {
            Malformed++;
            return false;
        }
        LastAvail++;
        if (!Walk(head, buffers))
        {
            Malformed++;
            buffers.Clear();
        }
        return true;
    }

    // Follows a chain (and at most one indirect table), checking indexes and counting steps so
    // a loop ends.
    private bool Walk(ushort head, List<VirtqBuffer> buffers)
    {
        ulong table = Desc;
        uint tableSize = Size;
        uint index = head;
        Span<byte> d = stackalloc byte[16];
        for (int steps = 0; steps <= tableSize; steps++)
        {
            if (index >= tableSize)
                return false;
            if (!memory.ReadRam(table + 16UL * index, d))
                return false;
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(d);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]);
            if ((flags & DescIndirect) != 0)
            {
                if (table != Desc || len % 16 != 0 || len == 0)
                    return false;
                table = addr;
                tableSize = len / 16;
                index = 0;
                steps = -1;
                continue;
            }
            buffers.Add(new VirtqBuffer(addr, len, (flags & DescWrite) != 0));
            if ((flags & DescNext) == 0)
                return true;
            index = next;
        }
        return false;
    }

    /// <summary>Returns chain <paramref name="head"/> to the driver with <paramref name="written"/>
    /// bytes written into its buffers.</summary>
    public void Push(ushort head, uint written)
    {
        if (!ReadU16(Used + 2, out ushort usedIdx))
        {
            Malformed++;
            return;
        }
        Span<byte> e = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(e, head);
        BinaryPrimitives.WriteUInt32LittleEndian(e[4..], written);
        Span<byte> idx = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(idx, (ushort)(usedIdx + 1));
        // The element first, then the index that publishes it.
        if (!memory.WriteRam(Used + 4 + 8UL * (ulong)(usedIdx % Size), e) || !memory.WriteRam(Used + 2, idx))
            Malformed++;
    }

    private bool ReadU16(ulong gpa, out ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        bool ok = memory.ReadRam(gpa, b);
        value = BinaryPrimitives.ReadUInt16LittleEndian(b);
        return ok;
    }
}
