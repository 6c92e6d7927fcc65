// The PC memory map every loader describes (e820, Multiboot's mmap): conventional memory below
// 640 KiB, the legacy hole, RAM from 1 MiB up to the device window below 4 GiB, and the rest of
// RAM above 4 GiB. The machine maps RAM from the same entries, so the two always agree.
using System;
using System.Collections.Generic;

namespace Hyve.Boot;

/// <summary>An e820 memory type.</summary>
public enum MemoryType : uint
{
    /// <summary>Usable RAM.</summary>
    Ram = 1,
    /// <summary>Reserved.</summary>
    Reserved = 2,
}

/// <summary>One range of the map.</summary>
public readonly record struct MemoryRange(ulong Base, ulong Length, MemoryType Type)
{
    /// <summary>One past the last byte.</summary>
    public ulong End => Base + Length;
}

/// <summary>The guest-physical memory map of a PC with a given amount of RAM.</summary>
public sealed class MemoryMap
{
    /// <summary>Where conventional memory ends (the EBDA's last KiB is reserved below it).</summary>
    public const ulong ConventionalEnd = 0xA_0000;
    /// <summary>Where extended memory starts.</summary>
    public const ulong HighMemory = 0x10_0000;
    /// <summary>Where the device window below 4 GiB starts (I/O APIC, local APIC, test devices).</summary>
    public const ulong DeviceWindow = 0xC000_0000;
    /// <summary>4 GiB, where RAM beyond the device window continues.</summary>
    public const ulong FourGiB = 0x1_0000_0000;
    /// <summary>The smallest machine: conventional memory and 1 MiB of extended memory.</summary>
    public const ulong MinimumRam = 2 * HighMemory;

    private MemoryMap(ulong ramBytes, List<MemoryRange> ranges)
    {
        RamBytes = ramBytes;
        Ranges = ranges;
    }

    /// <summary>The RAM size the map was built for.</summary>
    public ulong RamBytes { get; }

    /// <summary>The ranges, by address.</summary>
    public IReadOnlyList<MemoryRange> Ranges { get; }

    /// <summary>The top 8 KiB of conventional memory, where the loaders put the firmware's tables
    /// (ACPI, MP); reserved in the map, as a BIOS reserves its EBDA.</summary>
    public const ulong FirmwareData = 0x9_E000;

    /// <summary>The end of extended memory below 4 GiB.</summary>
    public ulong LowEnd => Math.Min(RamBytes, DeviceWindow);

    /// <summary>The map of a PC with <paramref name="ramBytes"/> of RAM.</summary>
    public static MemoryMap Pc(ulong ramBytes)
    {
        if (ramBytes < MinimumRam)
            throw new ArgumentOutOfRangeException(nameof(ramBytes), $"at least {MinimumRam >> 20} MiB of RAM");
        var r = new List<MemoryRange>
        {
            new(0, FirmwareData, MemoryType.Ram),
            new(FirmwareData, ConventionalEnd - FirmwareData, MemoryType.Reserved),
            new(0xF_0000, 0x1_0000, MemoryType.Reserved),
        };
        ulong low = Math.Min(ramBytes, DeviceWindow);
        r.Add(new(HighMemory, low - HighMemory, MemoryType.Ram));
        if (ramBytes > DeviceWindow)
            r.Add(new(FourGiB, ramBytes - DeviceWindow, MemoryType.Ram));
        return new MemoryMap(ramBytes, r);
    }

    /// <summary>The ranges the machine backs with RAM (the reserved firmware area is RAM too).</summary>
    public IEnumerable<MemoryRange> RamRegions()
    {
        yield return new(0, ConventionalEnd, MemoryType.Ram);
        yield return new(HighMemory, LowEnd - HighMemory, MemoryType.Ram);
        if (RamBytes > DeviceWindow)
            yield return new(FourGiB, RamBytes - DeviceWindow, MemoryType.Ram);
    }

    /// <summary>Whether [<paramref name="start"/>, <paramref name="end"/>) is usable RAM.</summary>
    public bool IsRam(ulong start, ulong end)
    {
        foreach (MemoryRange m in Ranges)
        {
            if (m.Type == MemoryType.Ram && start >= m.Base && end <= m.End && end >= start)
                return true;
        }
        return false;
    }
}
