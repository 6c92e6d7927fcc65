// The floppy controller and ISA DMA against the 82077AA's and the 8237's data sheets,
// hand-derived: the reset's interrupt and its four drive statuses, the command, result and
// interrupt of each command SeaBIOS and DOS use, READ DATA through DMA channel 2 to its
// terminal count (one sector, then across both heads of a track), and a write to a read-only
// disk refused with ST1's not-writable bit.
using System;
using System.Collections.Generic;
using System.IO;
using Hyve.Devices.Chipset;
using Hyve.Devices.Storage;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class FloppyTests : IDisposable
{
    private readonly GuestMemory _memory = new();
    private readonly string _image = Path.GetTempFileName();
    private readonly PortBus _bus = new();
    private readonly List<bool> _irq = [];
    private readonly FloppyController _fdc;

    public FloppyTests()
    {
        _memory.AddRam(0, 0x10_0000);
        var bytes = new byte[1_474_560];
        for (int i = 0; i < bytes.Length; i++)
            bytes[i] = (byte)(i / 512 * 7 + i);
        File.WriteAllBytes(_image, bytes);
        var dma = new IsaDma(_memory);
        dma.Register(_bus);
        _fdc = new FloppyController(_image, writable: false, dma, _irq.Add);
        _fdc.Register(_bus);
    }

    public void Dispose()
    {
        _fdc.Dispose();
        _memory.Dispose();
        File.Delete(_image);
    }

    private uint In(ushort port) => _bus.Handle(new InoutAccess(port, 1, true, 0)).Eax & 0xFF;

    private void Out(ushort port, byte value) => _bus.Handle(new InoutAccess(port, 1, false, value));

    private bool IrqLine => _irq.Count > 0 && _irq[^1];

    // Sends a command's bytes (each only when MSR says RQM and not DIO), then reads its result.
    private byte[] Command(params byte[] bytes)
    {
        foreach (byte b in bytes)
        {
            Assert.Equal(0x80u, In(0x3F4) & 0xC0);
            Out(0x3F5, b);
        }
        var result = new List<byte>();
        while ((In(0x3F4) & 0xC0) == 0xC0)
            result.Add((byte)In(0x3F5));
        return [.. result];
    }

    private void Enable()
    {
        Out(0x3F2, 0x00);             // reset
        Out(0x3F2, 0x1C);             // out of reset, DMA and IRQ on, motor A, drive 0
        Assert.True(IrqLine);
        for (int d = 0; d < 4; d++)   // one status per drive, then the line drops
            Assert.Equal(new byte[] { (byte)(0xC0 | d), 0 }, Command(0x08));
        Assert.False(IrqLine);
        Assert.Equal(new byte[] { 0x80 }, Command(0x08)); // nothing pending: invalid
    }

    // Channel 2, single mode, device to memory, at gpa for count + 1 bytes.
    private void ProgramDma(uint gpa, ushort count)
    {
        Out(0x0A, 0x06);              // mask channel 2
        Out(0x0C, 0);                 // clear the flip-flop
        Out(0x0B, 0x46);              // single, increment, write to memory, channel 2
        Out(0x04, (byte)gpa);
        Out(0x04, (byte)(gpa >> 8));
        Out(0x81, (byte)(gpa >> 16));
        Out(0x05, (byte)count);
        Out(0x05, (byte)(count >> 8));
        Out(0x0A, 0x02);              // unmask
    }

    private byte[] Ram(ulong gpa, int n)
    {
        var b = new byte[n];
        Assert.True(_memory.ReadRam(gpa, b));
        return b;
    }

    private static byte[] Sector(int lba)
    {
        var b = new byte[512];
        for (int i = 0; i < 512; i++)
            b[i] = (byte)(lba * 7 + lba * 512 + i);
        return b;
    }

    [Fact]
    public void ResetRecalibrateSeekAndVersion()
    {
        Enable();
        Assert.Equal(new byte[] { 0x90 }, Command(0x10));                  // VERSION: 82077AA
        Assert.Empty(Command(0x03, 0xAF, 0x02));                           // SPECIFY: no result, no interrupt
        Assert.Empty(Command(0x07, 0x00));                                 // RECALIBRATE drive 0
        Assert.True(IrqLine);
        Assert.Equal(new byte[] { 0x20, 0 }, Command(0x08));              // seek end, cylinder 0
        Assert.Empty(Command(0x0F, 0x04, 17));                             // SEEK head 1 to cylinder 17
        Assert.Equal(new byte[] { 0x24, 17 }, Command(0x08));
        byte st3 = Command(0x04, 0x00)[0];                                 // SENSE DRIVE STATUS
        Assert.Equal(0x48, st3 & 0x48);                                    // write-protected, two-sided
        Assert.Equal(new byte[] { 0x80 }, Command(0x1F));                  // an invalid command
        Assert.Equal(new byte[] { 0x00, 0x00, 0x00, 17, 0x00, 0x01, 0x02 }, Command(0x4A, 0x00)); // READ ID
    }

    [Fact]
    public void ReadDataMovesSectorsThroughDmaToTheTerminalCount()
    {
        Enable();
        // One sector: cylinder 1, head 0, sector 3 (LBA 38) into 0x8000.
        ProgramDma(0x8000, 511);
        byte[] r = Command(0xE6, 0x00, 1, 0, 3, 2, 18, 0x1B, 0xFF);
        Assert.True(IrqLine);
        Assert.Equal(new byte[] { 0x00, 0x00, 0x00, 1, 0, 4, 2 }, r); // normal end; the next sector is 4
        Assert.Equal(Sector(38), Ram(0x8000, 512));
        // Multi-track: from head 0 sector 18 on cylinder 2, two sectors: the second is head 1's first.
        ProgramDma(0x1_0000, 1023);
        r = Command(0xE6, 0x00, 2, 0, 18, 2, 18, 0x1B, 0xFF);
        Assert.Equal(new byte[] { 0x04, 0x00, 0x00, 2, 1, 2, 2 }, r);
        Assert.Equal(Sector(2 * 36 + 17), Ram(0x1_0000, 512));
        Assert.Equal(Sector(2 * 36 + 18), Ram(0x1_0200, 512));
        // The DMA status shows channel 2's terminal count once.
        Assert.Equal(0x04u, In(0x08) & 0x04);
        Assert.Equal(0u, In(0x08) & 0x04);
    }

    [Fact]
    public void AWriteToAReadOnlyDiskIsRefusedAndAMaskedChannelMovesNothing()
    {
        Enable();
        byte[] w = Command(0xC5, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF);
        Assert.Equal(0x40, w[0] & 0xC0); // abnormal end
        Assert.Equal(0x02, w[1]);        // not writable
        Out(0x0A, 0x06);                 // channel 2 masked: the read gets nothing through
        w = Command(0xE6, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF);
        Assert.Equal(0x40, w[0] & 0xC0);
        Assert.Equal(new byte[512], Ram(0x2_0000, 512));
    }

    [Fact]
    public void ImagesOfOtherSizesAreRefused()
    {
        Assert.Equal(4, _fdc.CmosType);
        Assert.Null(FloppyController.Geometry(1000));
        Assert.Equal((80, 2, 9), FloppyController.Geometry(737_280));
    }
}
