// A firmware ROM (SeaBIOS, OVMF or any PC BIOS image) as a PC maps it: the whole image ends at
// the top of 4 GiB, where the reset vector (0xFFFFFFF0) lies, and its last 128 KiB also appear
// at 0xE0000-0xFFFFF, the legacy BIOS area. The processor starts from reset. Both copies are
// RAM (writable shadows, as the chipset's PAM registers make them once the firmware asks).
using System;
using System.IO;

namespace Hyve.Boot;

/// <summary>Places a firmware image the way a PC's chipset decodes it.</summary>
public static class Firmware
{
    /// <summary>The legacy BIOS area below 1 MiB that firmware shadows itself into
    /// (0xC0000-0xFFFFF: option ROMs, then the BIOS).</summary>
    public const ulong LegacyBase = 0xC_0000, LegacyEnd = 0x10_0000;

    /// <summary>How much of the image's end appears below 1 MiB.</summary>
    public const int LowAlias = 128 * 1024;

    /// <summary>The largest image: 16 MiB, as the flash decode of a PC chipset allows.</summary>
    public const int MaxSize = 16 << 20;

    /// <summary>Where an image of <paramref name="size"/> bytes starts: it ends at 4 GiB.</summary>
    public static ulong HighBase(int size) => MemoryMap.FourGiB - (ulong)size;

    /// <summary>Checks <paramref name="rom"/> and describes it mapped, with the processor starting
    /// at the reset vector.</summary>
    public static BootImage Load(byte[] rom)
    {
        ArgumentNullException.ThrowIfNull(rom);
        if (rom.Length == 0 || rom.Length % 4096 != 0 || rom.Length > MaxSize)
            throw new InvalidDataException($"a firmware image is a whole number of 4 KiB pages up to 16 MiB; this one has {rom.Length} bytes");
        var image = new BootImage { Mode = EntryMode.Reset, Entry = 0xFFFF_FFF0 };
        image.Segments.Add(new LoadSegment(HighBase(rom.Length), rom));
        int low = Math.Min(LowAlias, rom.Length);
        image.Segments.Add(new LoadSegment(LegacyEnd - (ulong)low, rom[^low..]));
        return image;
    }
}
