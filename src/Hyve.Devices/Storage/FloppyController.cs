// The PC's floppy disk controller (an 82077AA at 0x3F0-0x3F7, IRQ 6, ISA DMA channel 2) with
// one 3.5" drive: the digital output register (reset, drive select, motors, DMA and interrupt
// enable), the main status register and the data FIFO with its command, execution and result
// phases. Commands: SPECIFY, SENSE DRIVE STATUS, RECALIBRATE, SENSE INTERRUPT STATUS, SEEK,
// READ ID, READ DATA and WRITE DATA (multi-track, through DMA), VERSION, CONFIGURE, DUMPREG,
// PERPENDICULAR MODE and LOCK; anything else is invalid (ST0 0x80), as on the part. Operations
// complete at once; the image is read-only unless opened for writing.
using System;
using System.IO;
using Hyve.Devices.Chipset;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Storage;

/// <summary>A floppy controller with drive A: holding a raw disk image.</summary>
public sealed class FloppyController : IPortHandler, IDisposable
{
    /// <summary>The controller's first port.</summary>
    public const ushort DefaultPort = 0x3F0;

    /// <summary>Its ISA interrupt line and DMA channel.</summary>
    public const int Irq = 6, DmaChannel = 2;

    private const int SectorSize = 512;
    private const byte MsrReady = 0x80, MsrToHost = 0x40, MsrBusy = 0x10;
    private const byte DorReset = 0x04, DorDmaIrq = 0x08;

    private readonly FileStream? _image;
    private readonly bool _writable;
    private readonly IsaDma _dma;
    private readonly Action<bool> _irq;
    private readonly int _cylinders, _heads, _sectors;
    private readonly byte[] _command = new byte[9];
    private readonly byte[] _result = new byte[10];
    private readonly byte[] _buffer = new byte[SectorSize];
    private int _commandLength, _commandExpected, _resultLength, _resultAt;
    private byte _dor;
    private byte _cylinder; // the drive's head position
    private byte _st0;      // the interrupt status SENSE INTERRUPT reports
    private int _pendingSense; // interrupt statuses waiting (4 after a reset: one per drive)
    private byte _specify1, _specify2, _config = 0x20, _precomp;
    private bool _locked;

    /// <summary>A controller over <paramref name="image"/> (null: no disk in the drive), which
    /// must be a 1.44 MB, 720 KB, 1.2 MB or 2.88 MB image.</summary>
    public FloppyController(string? image, bool writable, IsaDma dma, Action<bool> irq)
    {
        ArgumentNullException.ThrowIfNull(dma);
        ArgumentNullException.ThrowIfNull(irq);
        _dma = dma;
        _irq = irq;
        (_cylinders, _heads, _sectors) = (80, 2, 18);
        if (image != null)
        {
            _image = new FileStream(image, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.Read);
            (_cylinders, _heads, _sectors) = Geometry(_image.Length)
                ?? throw new InvalidDataException($"{image}: {_image.Length} bytes is not the size of a floppy image (1,474,560 for 1.44 MB)");
            _writable = writable;
        }
    }

    /// <summary>Cylinders, heads and sectors per track of an image of <paramref name="bytes"/>.</summary>
    public static (int, int, int)? Geometry(long bytes) => bytes switch
    {
        737_280 => (80, 2, 9),
        1_228_800 => (80, 2, 15),
        1_474_560 => (80, 2, 18),
        2_949_120 => (80, 2, 36),
        _ => null,
    };

    /// <summary>The drive's CMOS type (register 0x10's high nibble): 3 for 720 KB, 2 for 1.2 MB,
    /// 4 for 1.44 MB, 5 for 2.88 MB; the drive is a 1.44 MB one when empty.</summary>
    public byte CmosType => _sectors switch { 9 => 3, 15 => 2, 36 => 5, _ => 4 };

    /// <summary>Registers ports 0x3F0-0x3F5 and 0x3F7 (0x3F6 belongs to the IDE controller).</summary>
    public void Register(PortBus ports)
    {
        ArgumentNullException.ThrowIfNull(ports);
        ports.Register(DefaultPort, 6, this);
        ports.Register(DefaultPort + 7, 1, this);
    }

    /// <inheritdoc/>
    public void Dispose() => _image?.Dispose();

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes)
    {
        switch (offset)
        {
            case 2:
                return _dor;
            case 4:
                return MainStatus;
            case 5:
                if (_resultAt >= _resultLength)
                    return 0xFF;
                byte b = _result[_resultAt++];
                if (_resultAt == _resultLength)
                    _resultAt = _resultLength = 0;
                return b;
            case 7:
                return 0; // DIR: no disk change
            default:
                return 0xFF;
        }
    }

    private byte MainStatus
    {
        get
        {
            if ((_dor & DorReset) == 0)
                return 0;
            if (_resultLength > 0)
                return MsrReady | MsrToHost | MsrBusy;
            return (byte)(MsrReady | (_commandLength > 0 ? MsrBusy : 0));
        }
    }

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        byte v = (byte)value;
        switch (offset)
        {
            case 2:
                bool wasReset = (_dor & DorReset) == 0;
                _dor = v;
                if ((v & DorReset) == 0)
                    Reset();
                else if (wasReset)
                    Interrupt(0xC0, sensesAfterReset: 4); // leaving reset: one status per drive
                break;
            case 4: // data-rate select: bit 7 resets
                if ((v & 0x80) != 0)
                {
                    Reset();
                    Interrupt(0xC0, sensesAfterReset: 4);
                }
                break;
            case 5:
                Fifo(v);
                break;
                // 7: configuration control (the data rate), nothing to do.
        }
    }

    private void Reset()
    {
        _commandLength = _resultLength = _resultAt = 0;
        _pendingSense = 0;
        _irq(false);
    }

    // A seek, recalibration or reset ends: its status waits for SENSE INTERRUPT.
    private void Interrupt(byte st0, int sensesAfterReset = 1)
    {
        _st0 = st0;
        _pendingSense = sensesAfterReset;
        RaiseIrq();
    }

    // IRQ 6 rises (from low, so the PIC sees an edge), when the DOR lets interrupts out.
    private void RaiseIrq()
    {
        if ((_dor & DorDmaIrq) != 0)
        {
            _irq(false);
            _irq(true);
        }
    }

    // Parameter bytes after each command's first byte.
    private static int Parameters(byte command) => (command & 0x1F) switch
    {
        0x03 => 2,        // SPECIFY
        0x04 => 1,        // SENSE DRIVE STATUS
        0x05 or 0x06 => 8, // WRITE DATA, READ DATA
        0x07 => 1,        // RECALIBRATE
        0x0A => 1,        // READ ID
        0x0F => 2,        // SEEK
        0x12 => 1,        // PERPENDICULAR MODE
        0x13 => 3,        // CONFIGURE
        _ => 0,
    };

    private void Fifo(byte v)
    {
        if (_resultLength > 0)
            return; // the host must read the result first
        _command[_commandLength++] = v;
        if (_commandLength == 1)
            _commandExpected = 1 + Parameters(v);
        if (_commandLength < _commandExpected)
            return;
        _commandLength = 0;
        Execute();
    }

    private void Result(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_result);
        _resultLength = bytes.Length;
        _resultAt = 0;
    }

    private void Execute()
    {
        byte cmd = _command[0];
        int drive = _command[1] & 3, head = (_command[1] >> 2) & 1;
        switch (cmd & 0x1F)
        {
            case 0x03:
                _specify1 = _command[1];
                _specify2 = _command[2];
                break;
            case 0x04:
                // ST3: ready, track 0, two-sided, write-protected, the drive and head.
                Result([(byte)(0x20 | (_cylinder == 0 ? 0x10 : 0) | 0x08 | (_writable ? 0 : 0x40) | (head << 2) | drive)]);
                break;
            case 0x07:
                if (drive == 0)
                    _cylinder = 0;
                Interrupt((byte)(drive == 0 ? 0x20 : 0x70 | drive)); // seek end; other drives: not ready
                break;
            case 0x08:
                if (_pendingSense == 0)
                {
                    Result([0x80]);
                    break;
                }
                int d = 4 - _pendingSense;
                byte st0 = _st0 == 0xC0 ? (byte)(0xC0 | (d & 3)) : _st0;
                _pendingSense--;
                if (_pendingSense == 0)
                    _irq(false);
                Result([st0, _cylinder]);
                break;
            case 0x0F:
                if (drive == 0)
                    _cylinder = _command[2];
                Interrupt((byte)(0x20 | (head << 2) | drive));
                break;
            case 0x0A:
                if (drive != 0 || _image == null)
                {
                    Finish(0x40 | (head << 2) | drive, 0x01, 0, _cylinder, head, 1);
                    break;
                }
                Finish((head << 2) | drive, 0, 0, _cylinder, head, 1);
                break;
            case 0x05 or 0x06:
                Transfer(read: (cmd & 0x1F) == 0x06, multiTrack: (cmd & 0x80) != 0);
                break;
            case 0x10:
                Result([0x90]); // an enhanced controller
                break;
            case 0x0E:
                Result([_cylinder, 0, 0, 0, _specify1, _specify2, 18, (byte)(_locked ? 0x80 : 0), _config, _precomp]);
                break;
            case 0x12:
                break;
            case 0x13:
                _config = _command[2];
                _precomp = _command[3];
                break;
            case 0x14:
                _locked = (cmd & 0x80) != 0;
                Result([(byte)(_locked ? 0x10 : 0)]);
                break;
            default:
                Result([0x80]);
                break;
        }
    }

    // The seven result bytes of a data command: ST0, ST1, ST2, C, H, R, N; with an interrupt.
    private void Finish(int st0, int st1, int st2, int c, int h, int r)
    {
        Result([(byte)st0, (byte)st1, (byte)st2, (byte)c, (byte)h, (byte)r, 2]);
        _st0 = (byte)st0;
        RaiseIrq();
    }

    // READ DATA or WRITE DATA from C/H/R to the end of the track (EOT), continuing on head 1 with
    // MT, until DMA's terminal count; the result names the sector after the last one moved.
    private void Transfer(bool read, bool multiTrack)
    {
        int drive = _command[1] & 3;
        int c = _command[2], h = _command[3], r = _command[4], n = _command[5], eot = _command[6];
        int hd = (_command[1] >> 2) & 1;
        if (drive != 0 || _image == null)
        {
            Finish(0x48 | (hd << 2) | drive, 0, 0, c, h, r); // abnormal end, drive not ready
            return;
        }
        if (!read && !_writable)
        {
            Finish(0x40 | (hd << 2) | drive, 0x02, 0, c, h, r); // not writable
            return;
        }
        if (n != 2 || c >= _cylinders || h >= _heads || r < 1 || r > _sectors)
        {
            Finish(0x40 | (hd << 2) | drive, 0x04, 0, c, h, r); // no data: the sector is not there
            return;
        }
        _cylinder = (byte)c;
        while (true)
        {
            long at = (((long)c * _heads + h) * _sectors + (r - 1)) * SectorSize;
            int moved;
            if (read)
            {
                _image.Position = at;
                _image.ReadExactly(_buffer);
                moved = _dma.Transfer(DmaChannel, _buffer, toMemory: true);
            }
            else
            {
                moved = _dma.Transfer(DmaChannel, _buffer, toMemory: false);
                if (moved == SectorSize)
                {
                    _image.Position = at;
                    _image.Write(_buffer);
                }
            }
            if (moved < SectorSize)
            {
                // DMA stopped (terminal count or not programmed): a normal end when the
                // channel's count ran out on a sector boundary, as the host asked.
                if (moved == 0)
                    Finish(0x40 | (hd << 2) | drive, 0x10, 0, c, h, r); // DMA did not answer: overrun
                else
                    Finish((hd << 2) | drive, 0, 0, c, h, r);
                return;
            }
            // The next sector: past the track's end, head 1 with MT, else the next cylinder.
            r++;
            bool last = false;
            if (r > eot || r > _sectors)
            {
                r = 1;
                if (multiTrack && h == 0)
                    h = 1;
                else
                {
                    h = 0;
                    c++;
                    last = true;
                }
            }
            if (_dma.Finished(DmaChannel) || last)
            {
                Finish((h << 2) | drive, 0, 0, c, h, r);
                return;
            }
        }
    }
}
