// The device half's device memory: address ranges owned by devices, each seeing an offset and
// a sized access. An address nobody owns reads as all ones and drops writes, counted, as a
// bus with nothing decoding that address would.
using System;
using System.Collections.Generic;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The device half's MMIO space: answers the vmm's device-memory requests.</summary>
public sealed class MmioBus
{
    private readonly record struct Range(ulong Start, ulong Size, IMmioHandler Device);

    private Range[] _ranges = [];

    /// <summary>Reads of addresses no device owns (answered with all ones).</summary>
    public long UnclaimedReads { get; private set; }

    /// <summary>Writes to addresses no device owns (dropped).</summary>
    public long UnclaimedWrites { get; private set; }

    /// <summary>The last address no device owned (for diagnostics).</summary>
    public ulong LastUnclaimed { get; private set; }

    /// <summary>Gives <paramref name="size"/> bytes from <paramref name="start"/> to
    /// <paramref name="device"/>; a range that overlaps another device's is refused.</summary>
    public void Register(ulong start, ulong size, IMmioHandler device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (size == 0 || start + size - 1 < start)
            throw new ArgumentOutOfRangeException(nameof(size), "an empty or wrapping range");
        foreach (Range r in _ranges)
        {
            if (start < r.Start + r.Size && r.Start < start + size)
                throw new ArgumentException($"0x{start:X}+0x{size:X} overlaps a device at 0x{r.Start:X}");
        }
        var list = new List<Range>(_ranges) { new(start, size, device) };
        list.Sort((a, b) => a.Start.CompareTo(b.Start));
        _ranges = [.. list];
    }

    /// <summary>Moves <paramref name="device"/>'s <paramref name="size"/> bytes from
    /// <paramref name="from"/> to <paramref name="to"/> (-1: not placed), as a PCI memory BAR
    /// follows its address and enable bit. A place that overlaps another device's range is
    /// refused (false) and leaves the device unplaced.</summary>
    public bool Move(IMmioHandler device, ulong size, long from, long to)
    {
        ArgumentNullException.ThrowIfNull(device);
        var list = new List<Range>(_ranges);
        if (from >= 0)
            list.RemoveAll(r => r.Device == device && r.Start == (ulong)from);
        bool placed = true;
        if (to >= 0)
        {
            ulong start = (ulong)to;
            placed = size != 0 && start + size - 1 >= start && !list.Exists(r => start < r.Start + r.Size && r.Start < start + size);
            if (placed)
                list.Add(new(start, size, device));
        }
        list.Sort((a, b) => a.Start.CompareTo(b.Start));
        _ranges = [.. list];
        return placed;
    }

    /// <summary>Answers one device-memory request: the device whose range holds its first byte
    /// gets it (accesses never straddle ranges: the vmm splits them at page boundaries).</summary>
    public MmioAccess Handle(in MmioAccess request)
    {
        Range[] ranges = _ranges;
        int lo = 0, hi = ranges.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ref readonly Range r = ref ranges[mid];
            if (request.Gpa < r.Start)
                hi = mid - 1;
            else if (request.Gpa - r.Start >= r.Size)
                lo = mid + 1;
            else
            {
                ulong offset = request.Gpa - r.Start;
                if (!request.Write)
                    return request with { Data = r.Device.Read(offset, request.Bytes) };
                r.Device.Write(offset, request.Bytes, request.Data);
                return request;
            }
        }
        LastUnclaimed = request.Gpa;
        if (request.Write)
        {
            UnclaimedWrites++;
            return request;
        }
        UnclaimedReads++;
        return request with { Data = request.Bytes >= 8 ? ulong.MaxValue : (1UL << (8 * request.Bytes)) - 1 };
    }
}
