// Raw flat binaries: the file's bytes at a given guest-physical address, entered there in
// 32-bit protected mode with flat segments (the state a Multiboot kernel starts in, without the
// information structure).
using System;
using System.IO;

namespace Hyve.Boot;

/// <summary>Loads a raw binary at an address.</summary>
public static class FlatBinary
{
    /// <summary>Places <paramref name="file"/> at <paramref name="address"/> and starts there.</summary>
    /// <exception cref="InvalidDataException">The file is empty or does not fit in RAM at that address.</exception>
    public static BootImage Load(byte[] file, ulong address, MemoryMap map)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(map);
        if (file.Length == 0)
            throw new InvalidDataException("the flat binary is empty");
        ulong end = address + (ulong)file.Length;
        if (end > MemoryMap.FourGiB || !map.IsRam(address, end))
            throw new InvalidDataException($"{file.Length} bytes at 0x{address:X} are not all in the machine's RAM below 4 GiB");
        var image = new BootImage { Mode = EntryMode.Protected32, Entry = address };
        image.Segments.Add(new LoadSegment(address, file));
        return image;
    }
}
