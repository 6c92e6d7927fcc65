// The CFI flash against Intel's command set as QEMU's pflash_cfi01 implements it, hand-derived:
// OVMF's flash detection sequence, byte programming (bits only cleared), block erase, the status
// register, the identifier and query modes, the file kept up to date, images of the wrong size.
using System;
using System.IO;
using Hyve.Devices.Storage;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class CfiFlashTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();

    public CfiFlashTests()
    {
        byte[] image = new byte[2 * CfiFlash.BlockSize];
        for (int i = 0; i < image.Length; i++)
            image[i] = (byte)(i * 7 + 1);
        File.WriteAllBytes(_path, image);
    }

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void OvmfsProbeFindsFlash()
    {
        // OVMF: remember a byte, write CLEAR STATUS and read (RAM would return 0x50), then READ
        // STATUS and read: flash answers 0x00 (the cleared status), RAM 0x70, ROM the byte.
        using var flash = new CfiFlash(_path);
        byte original = (byte)flash.Read(5, 1);
        Assert.Equal(36, original);
        flash.Write(5, 1, 0x50);
        Assert.Equal(original, (byte)flash.Read(5, 1));   // back in read-array mode
        flash.Write(5, 1, 0x70);
        Assert.Equal(0x00UL, flash.Read(5, 1));
        flash.Write(5, 1, 0xFF);
        Assert.Equal(original, (byte)flash.Read(5, 1));
        Assert.Equal(0L, flash.Programmed);
    }

    [Fact]
    public void ProgrammingClearsBitsAndEraseSetsABlockToOnes()
    {
        using (var flash = new CfiFlash(_path))
        {
            flash.Write(0x10, 1, 0x10);                    // program 0x0F into 0x71 (0x10 * 7 + 1)
            flash.Write(0x10, 1, 0x0F);
            Assert.Equal(0x80UL, flash.Read(0x10, 1));     // status: ready
            flash.Write(0x10, 1, 0xFF);
            Assert.Equal(0x01UL, flash.Read(0x10, 1));     // 0x71 & 0x0F: a cell only loses bits
            flash.Write(0x1234, 1, 0x20);                  // erase the second half of block 1
            flash.Write(0x1234, 1, 0xD0);
            Assert.Equal(0x80UL, flash.Read(0, 1));        // the status, anywhere
            flash.Write(0, 1, 0xFF);
            Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, flash.Read(0x1000, 8));
            Assert.Equal(0xFFUL, flash.Read(0x1FFF, 1));
            Assert.Equal(0x01UL, flash.Read(0x10, 1));     // block 0 kept
            flash.Write(0x40, 1, 0x40);                    // 0x40 programs too, then another program right after
            flash.Write(0x40, 1, 0x00);
            flash.Write(0x41, 1, 0x10);
            flash.Write(0x41, 1, 0x00);
            flash.Write(0x41, 1, 0xFF);
            Assert.Equal(0UL, flash.Read(0x40, 2));
            Assert.Equal(3L, flash.Programmed);
            Assert.Equal(1L, flash.Erased);
            flash.Write(0x100, 1, 0x20);                   // an erase not confirmed: an error in the status
            flash.Write(0x100, 1, 0x00);
            Assert.Equal(0xB0UL, flash.Read(0x100, 1));
            flash.Write(0x100, 1, 0x50);                   // cleared
            flash.Write(0x100, 1, 0x70);
            Assert.Equal(0UL, flash.Read(0x100, 1));
            flash.Write(0x100, 1, 0x90);                   // identifiers: Intel
            Assert.Equal(0x89UL, flash.Read(0, 1));
            flash.Write(0x100, 1, 0x98);                   // the query's "QRY"
            Assert.Equal(0x59_52_51UL, flash.Read(0x10, 3));
            flash.Write(0x100, 1, 0x33);                   // no such command: counted, back to the array
            Assert.Equal(1L, flash.BadCommands);
            Assert.Equal(0xFFUL, flash.Read(0x1000, 1));
        }
        byte[] file = File.ReadAllBytes(_path);            // the file holds every change
        Assert.Equal(0x01, file[0x10]);
        Assert.Equal(0, file[0x40]);
        Assert.Equal(0xFF, file[0x1000]);
        Assert.Equal(unchecked((byte)(0x0FFF * 7 + 1)), file[0x0FFF]);
    }

    [Fact]
    public void AnImageThatIsNotWholeBlocksIsRefused()
    {
        File.WriteAllBytes(_path, new byte[CfiFlash.BlockSize + 1]);
        Assert.Throws<InvalidDataException>(() => new CfiFlash(_path));
        File.WriteAllBytes(_path, []);
        Assert.Throws<InvalidDataException>(() => new CfiFlash(_path));
    }
}
