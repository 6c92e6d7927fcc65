// A firmware ROM as a PC decodes it (the image ending at 4 GiB, its last 128 KiB at 0xE0000)
// and the images that cannot be one.
using System.IO;
using Xunit;

namespace Hyve.Boot.Tests;

public sealed class FirmwareTests
{
    [Fact]
    public void TheImageEndsAt4GiBAndItsLast128KiBEndAt1MiB()
    {
        var rom = new byte[256 * 1024];
        rom[0] = 0x11;
        rom[^1] = 0x22;
        rom[^(128 * 1024)] = 0x33;
        BootImage image = Firmware.Load(rom);
        Assert.Equal(EntryMode.Reset, image.Mode);
        Assert.Equal(0xFFFC_0000UL, image.Segments[0].Address);
        Assert.Equal(0x1_0000_0000UL, image.Segments[0].End);
        Assert.Equal(0xE_0000UL, image.Segments[1].Address);
        Assert.Equal(0x10_0000UL, image.Segments[1].End);
        Assert.Equal(0x33, image.Segments[1].Data[0]);
        Assert.Equal(0x22, image.Segments[1].Data[^1]);
        // A 64 KiB image appears whole below 1 MiB, at 0xF0000.
        Assert.Equal(0xF_0000UL, Firmware.Load(new byte[64 * 1024]).Segments[1].Address);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    [InlineData(17 << 20)]
    public void ImagesThatAreNotWholePagesUpTo16MiBAreRefused(int size) =>
        Assert.Throws<InvalidDataException>(() => Firmware.Load(new byte[size]));
}
