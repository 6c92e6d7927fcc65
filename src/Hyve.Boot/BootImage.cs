// What a loader produces: the bytes to place in guest memory and the processor state to start
// in. Pure data, so loaders are tested without a VM and the machine applies it in one place.
using System.Collections.Generic;

namespace Hyve.Boot;

/// <summary>Bytes placed at a guest-physical address, followed by <paramref name="ZeroBytes"/> zeros.</summary>
public sealed record LoadSegment(ulong Address, byte[] Data, ulong ZeroBytes = 0)
{
    /// <summary>One past the last byte the segment covers.</summary>
    public ulong End => Address + (ulong)Data.Length + ZeroBytes;
}

/// <summary>The processor state a boot protocol starts in.</summary>
public enum EntryMode : byte
{
    /// <summary>32-bit protected mode, flat segments, paging off (Multiboot).</summary>
    Protected32,
}

/// <summary>A loaded guest: memory contents and where and how to start.</summary>
public sealed class BootImage
{
    /// <summary>What goes into guest memory, in order.</summary>
    public List<LoadSegment> Segments { get; } = [];

    /// <summary>The entry point.</summary>
    public ulong Entry { get; set; }

    /// <summary>How the processor starts.</summary>
    public EntryMode Mode { get; set; }

    /// <summary>EAX at entry.</summary>
    public uint Eax { get; set; }

    /// <summary>EBX at entry.</summary>
    public uint Ebx { get; set; }

    /// <summary>One past the highest byte any segment covers.</summary>
    public ulong End
    {
        get
        {
            ulong end = 0;
            foreach (LoadSegment s in Segments)
                end = System.Math.Max(end, s.End);
            return end;
        }
    }
}
