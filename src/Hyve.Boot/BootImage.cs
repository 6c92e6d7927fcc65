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
    /// <summary>64-bit mode with the image's page tables and GDT (Linux's 64-bit boot protocol).</summary>
    Long64,
    /// <summary>The state after reset: real mode at F000:FFF0 with CS based at 0xFFFF0000 (firmware).</summary>
    Reset,
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

    /// <summary>RSI at entry (<see cref="EntryMode.Long64"/>: the boot parameters).</summary>
    public ulong Rsi { get; set; }

    /// <summary>CR3 at entry (<see cref="EntryMode.Long64"/>).</summary>
    public ulong Cr3 { get; set; }

    /// <summary>The GDT the image provides (<see cref="EntryMode.Long64"/>), and the code and
    /// data selectors to load from it.</summary>
    public ulong GdtBase { get; set; }

    /// <summary>The GDT's limit.</summary>
    public ushort GdtLimit { get; set; }

    /// <summary>The code selector at entry.</summary>
    public ushort CodeSelector { get; set; }

    /// <summary>The data selector at entry.</summary>
    public ushort DataSelector { get; set; }

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
