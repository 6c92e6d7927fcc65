// One IDE channel (the primary at 0x1F0-0x1F7 and 0x3F6 on IRQ 14, the secondary at 0x170-0x177
// and 0x376 on IRQ 15) with up to two drives: the task-file registers with their LBA48 "previous
// content" copies (read back through the control register's HOB bit), the status and error
// registers, the device control register (nIEN, SRST), the interrupt line, and PIO transfers
// through the data register. The ATA command set runs here; the ATAPI packet commands of a CD
// drive are in IdeChannel.Atapi.cs. Commands complete at once (the drive is never seen busy).
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Storage;

/// <summary>An IDE channel: task file, control, PIO data and interrupt.</summary>
public sealed partial class IdeChannel : IPortHandler
{
    private const byte Bsy = 0x80, Drdy = 0x40, Dsc = 0x10, Drq = 0x08, Err = 0x01;
    private const byte Abrt = 0x04, Idnf = 0x10;
    private const byte Nien = 0x02, Srst = 0x04, Hob = 0x80;
    private const int MaxMultiple = 16;

    private enum Phase : byte { Idle, DataIn, AtaRead, AtaWrite, Packet, PacketIn }

    private readonly IdeDrive?[] _drives;
    private readonly Action<bool> _irq;
    private readonly byte[] _buffer = new byte[0x2_0000];
    private readonly int[] _multiple = new int[2];
    private readonly int[] _heads = new int[2], _sectorsPerTrack = new int[2];
    private readonly byte[] _status = new byte[2], _error = new byte[2];
    private readonly string[] _serials = ["", ""];
    private byte _feature, _count, _lbaLow, _lbaMid, _lbaHigh, _device = 0xA0;
    private byte _hobFeature, _hobCount, _hobLow, _hobMid, _hobHigh;
    private byte _control;
    private bool _intrq;
    private Phase _phase;
    private int _pos, _end;
    private long _lba, _left;      // ATA transfers: the next sector and the sectors still to go
    private int _block;            // sectors per DRQ block
    private bool _ext;             // the command is an LBA48 one

    /// <summary>A channel with <paramref name="master"/> and <paramref name="slave"/> (either may
    /// be absent) raising its interrupt through <paramref name="irq"/>.</summary>
    public IdeChannel(IdeDrive? master, IdeDrive? slave, Action<bool> irq)
    {
        ArgumentNullException.ThrowIfNull(irq);
        _drives = [master, slave];
        _irq = irq;
        ControlPort = new ControlRegister(this);
        for (int d = 0; d < 2; d++)
        {
            if (_drives[d] is { } drive)
            {
                _heads[d] = drive.Heads;
                _sectorsPerTrack[d] = drive.SectorsPerTrack;
                _serials[d] = $"HV{d:D2}{(int)(drive.Sectors & 0xFFFF):X4}";
            }
        }
        Reset();
    }

    /// <summary>Whether a drive is attached.</summary>
    public bool HasDrives => _drives[0] != null || _drives[1] != null;

    /// <summary>Commands completed without error.</summary>
    public long Completed { get; private set; }

    /// <summary>Commands aborted (unknown, malformed, or out of the medium's range).</summary>
    public long Aborted { get; private set; }

    /// <summary>Data-register accesses with no transfer in progress (answered with zero or dropped).</summary>
    public long StrayData { get; private set; }

    /// <summary>The interrupt line's level (INTRQ, unless nIEN masks it).</summary>
    public bool IrqLevel => _intrq && (_control & Nien) == 0;

    private int Selected => (_device >> 4) & 1;

    private IdeDrive? Drive => _drives[Selected];

    /// <summary>The control block's register (alternate status, device control).</summary>
    public IPortHandler ControlPort { get; }

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes)
    {
        if (!HasDrives)
            return 0; // an empty channel: every register reads 0, status included
        if (offset == 0)
            return ReadData(bytes);
        bool hob = (_control & Hob) != 0;
        return offset switch
        {
            1 => Drive == null ? 0u : _error[Selected],
            2 => hob ? _hobCount : _count,
            3 => hob ? _hobLow : _lbaLow,
            4 => hob ? _hobMid : _lbaMid,
            5 => hob ? _hobHigh : _lbaHigh,
            6 => _device,
            _ => ReadStatus(clear: true),
        };
    }

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        if (offset == 0)
        {
            WriteData(bytes, value);
            return;
        }
        byte v = (byte)value;
        if (offset != 7)
            _control &= unchecked((byte)~Hob); // a task-file write clears HOB
        switch (offset)
        {
            case 1: _hobFeature = _feature; _feature = v; break;
            case 2: _hobCount = _count; _count = v; break;
            case 3: _hobLow = _lbaLow; _lbaLow = v; break;
            case 4: _hobMid = _lbaMid; _lbaMid = v; break;
            case 5: _hobHigh = _lbaHigh; _lbaHigh = v; break;
            case 6: _device = (byte)(v | 0xA0); break;
            default: Execute(v); break;
        }
    }

    private byte ReadStatus(bool clear)
    {
        if (Drive == null)
            return 0; // an absent device (1 behind a present 0, or both)
        if (clear && _intrq)
        {
            _intrq = false;
            _irq(false);
        }
        return _status[Selected];
    }

    private void WriteControl(byte value)
    {
        bool wasReset = (_control & Srst) != 0;
        _control = value;
        if ((value & Srst) != 0 && !wasReset)
        {
            _status[0] = _status[1] = Bsy;
        }
        else if ((value & Srst) == 0 && wasReset)
        {
            Reset();
        }
        _irq(IrqLevel);
    }

    // Software or power-on reset: both drives show their signatures, diagnostics passed.
    private void Reset()
    {
        _phase = Phase.Idle;
        _device = 0xA0;
        for (int d = 0; d < 2; d++)
        {
            _error[d] = 1;
            _status[d] = _drives[d] is { Cdrom: false } ? (byte)(Drdy | Dsc) : (byte)0;
        }
        Signature();
        _intrq = false;
    }

    // The registers a drive leaves after a reset or diagnostics: count and sector 1, and in the
    // cylinder registers 0x0000 for an ATA device or 0xEB14 for an ATAPI one.
    private void Signature()
    {
        _count = _lbaLow = 1;
        bool atapi = Drive?.Cdrom == true;
        _lbaMid = atapi ? (byte)0x14 : (byte)0;
        _lbaHigh = atapi ? (byte)0xEB : (byte)0;
    }

    private void Interrupt()
    {
        _intrq = true;
        _irq(IrqLevel);
    }

    private void Done()
    {
        _phase = Phase.Idle;
        _status[Selected] = Drdy | Dsc;
        Completed++;
        Interrupt();
    }

    private void Abort(byte error = Abrt)
    {
        _phase = Phase.Idle;
        _error[Selected] = error;
        _status[Selected] = Drdy | Dsc | Err;
        Aborted++;
        Interrupt();
    }

    private void Execute(byte command)
    {
        IdeDrive? drive = Drive;
        if (drive == null)
            return; // commands to an absent device 1 are ignored
        if ((_status[Selected] & (Bsy | Drq)) != 0 && !(command == 0x08 && drive.Cdrom))
            return; // only DEVICE RESET (to an ATAPI device) is taken in the middle of a command
        _error[Selected] = 0;
        if (drive.Cdrom && ExecuteAtapiDevice(command))
            return;
        switch (command)
        {
            case 0xEC: // IDENTIFY DEVICE
                if (drive.Cdrom)
                {
                    Signature();
                    Abort();
                    return;
                }
                IdentifyDisk(drive);
                StartDataIn(512);
                return;
            case 0x20 or 0x21: StartRead(ext: false, 1); return;
            case 0x24: StartRead(ext: true, 1); return;
            case 0xC4: StartRead(ext: false, _multiple[Selected]); return;
            case 0x29: StartRead(ext: true, _multiple[Selected]); return;
            case 0x30 or 0x31: StartWrite(ext: false, 1); return;
            case 0x34: StartWrite(ext: true, 1); return;
            case 0xC5: StartWrite(ext: false, _multiple[Selected]); return;
            case 0x39: StartWrite(ext: true, _multiple[Selected]); return;
            case 0x40 or 0x41: Verify(ext: false); return;
            case 0x42: Verify(ext: true); return;
            case 0xC6: // SET MULTIPLE MODE: a power of two up to the maximum, or 0 to turn it off
                if (_count > MaxMultiple || (_count & (_count - 1)) != 0)
                {
                    Abort();
                    return;
                }
                _multiple[Selected] = _count;
                Done();
                return;
            case 0x91: // INITIALIZE DEVICE PARAMETERS: the CHS translation's heads and sectors
                _heads[Selected] = (_device & 0x0F) + 1;
                _sectorsPerTrack[Selected] = _count;
                Done();
                return;
            case 0xF8: // READ NATIVE MAX ADDRESS
                SetAddress(drive.Sectors - 1, ext: false);
                Done();
                return;
            case 0x27: // READ NATIVE MAX ADDRESS EXT
                SetAddress(drive.Sectors - 1, ext: true);
                Done();
                return;
            case 0xE7 or 0xEA: // FLUSH CACHE (EXT)
                drive.Flush();
                Done();
                return;
            case 0xE5 or 0x98: // CHECK POWER MODE: active
                _count = 0xFF;
                Done();
                return;
            case 0x90: // EXECUTE DEVICE DIAGNOSTIC: both devices pass
                _error[0] = _error[1] = 1;
                Signature();
                _status[Selected] = Drdy | Dsc;
                Completed++;
                Interrupt();
                return;
            case >= 0x10 and <= 0x1F: // RECALIBRATE
            case 0x70:                // SEEK
            case 0xEF:                // SET FEATURES (transfer modes, caching: accepted)
            case 0xE0 or 0xE1 or 0xE2 or 0xE3 or 0xE6 or 0x94 or 0x95 or 0x96 or 0x97 or 0x99: // power
                Done();
                return;
            default:
                Abort();
                return;
        }
    }

    // The command's first sector and count, from LBA48, LBA28 or CHS registers (count 0 means
    // 65,536 or 256); -1 when a CHS address lies outside the current geometry.
    private long Address(bool ext, out long count)
    {
        if (ext)
        {
            count = (_hobCount << 8) | _count;
            if (count == 0)
                count = 65536;
            return ((long)_hobHigh << 40) | ((long)_hobMid << 32) | ((long)_hobLow << 24) | ((long)_lbaHigh << 16) | ((long)_lbaMid << 8) | _lbaLow;
        }
        count = _count == 0 ? 256 : _count;
        if ((_device & 0x40) != 0)
            return ((long)(_device & 0x0F) << 24) | ((long)_lbaHigh << 16) | ((long)_lbaMid << 8) | _lbaLow;
        int heads = _heads[Selected], spt = _sectorsPerTrack[Selected];
        int cylinder = (_lbaHigh << 8) | _lbaMid, head = _device & 0x0F, sector = _lbaLow;
        if (sector == 0 || sector > spt || head >= heads)
            return -1;
        return ((long)cylinder * heads + head) * spt + sector - 1;
    }

    // Writes a sector address back into the registers, in the command's addressing form.
    private void SetAddress(long lba, bool ext)
    {
        if (ext)
        {
            (_lbaLow, _lbaMid, _lbaHigh) = ((byte)lba, (byte)(lba >> 8), (byte)(lba >> 16));
            (_hobLow, _hobMid, _hobHigh) = ((byte)(lba >> 24), (byte)(lba >> 32), (byte)(lba >> 40));
        }
        else if ((_device & 0x40) != 0 || _heads[Selected] * _sectorsPerTrack[Selected] == 0)
        {
            (_lbaLow, _lbaMid, _lbaHigh) = ((byte)lba, (byte)(lba >> 8), (byte)(lba >> 16));
            _device = (byte)((_device & 0xF0) | (int)((lba >> 24) & 0x0F));
        }
        else
        {
            int heads = _heads[Selected], spt = _sectorsPerTrack[Selected];
            long cylinder = lba / (heads * spt);
            int rest = (int)(lba % (heads * spt));
            (_lbaMid, _lbaHigh) = ((byte)cylinder, (byte)(cylinder >> 8));
            _device = (byte)((_device & 0xF0) | (rest / spt));
            _lbaLow = (byte)(rest % spt + 1);
        }
    }

    // Checks a transfer's range; false (and the command aborted with IDNF) when it leaves the medium.
    private bool InRange(long lba, long count, IdeDrive drive)
    {
        if (lba >= 0 && lba + count <= drive.Sectors)
            return true;
        Abort(Abrt | Idnf);
        return false;
    }

    private void StartRead(bool ext, int block)
    {
        IdeDrive drive = Drive!;
        long lba = Address(ext, out long count);
        if (block == 0 || !InRange(lba, count, drive))
        {
            if (block == 0)
                Abort();
            return;
        }
        (_lba, _left, _block, _ext) = (lba, count, block, ext);
        _phase = Phase.AtaRead;
        NextReadBlock();
    }

    // Reads the next DRQ block into the buffer and interrupts: the host then reads it out.
    private void NextReadBlock()
    {
        IdeDrive drive = Drive!;
        int n = (int)Math.Min(_left, _block);
        drive.Read(_lba * 512, _buffer.AsSpan(0, n * 512));
        _lba += n;
        _left -= n;
        _count = (byte)_left;
        SetAddress(_lba - 1, _ext);
        _pos = 0;
        _end = n * 512;
        _status[Selected] = Drdy | Dsc | Drq;
        Interrupt();
    }

    private void StartWrite(bool ext, int block)
    {
        IdeDrive drive = Drive!;
        long lba = Address(ext, out long count);
        if (block == 0 || drive.ReadOnly || !InRange(lba, count, drive))
        {
            if (block == 0 || drive.ReadOnly)
                Abort(); // a write-protected disk refuses the command, as a CD drive does
            return;
        }
        (_lba, _left, _block, _ext) = (lba, count, block, ext);
        _phase = Phase.AtaWrite;
        _pos = 0;
        _end = (int)Math.Min(_left, _block) * 512;
        _status[Selected] = Drdy | Dsc | Drq; // the first block is asked for without an interrupt
    }

    // A DRQ block of a write has arrived: it goes to the image, and the next is asked for (or the
    // command completes), with an interrupt either way.
    private void WriteBlock()
    {
        IdeDrive drive = Drive!;
        int n = _end / 512;
        drive.Write(_lba * 512, _buffer.AsSpan(0, _end));
        _lba += n;
        _left -= n;
        _count = (byte)_left;
        SetAddress(_lba - 1, _ext);
        if (_left == 0)
        {
            Done();
            return;
        }
        _pos = 0;
        _end = (int)Math.Min(_left, _block) * 512;
        _status[Selected] = Drdy | Dsc | Drq;
        Interrupt();
    }

    private void Verify(bool ext)
    {
        long lba = Address(ext, out long count);
        if (InRange(lba, count, Drive!))
        {
            SetAddress(lba + count - 1, ext);
            Done();
        }
    }

    // A data-in transfer of the buffer's first bytes, with an interrupt (IDENTIFY).
    private void StartDataIn(int length)
    {
        _phase = Phase.DataIn;
        _pos = 0;
        _end = length;
        _status[Selected] = Drdy | Dsc | Drq;
        Completed++;
        Interrupt();
    }

    private uint ReadData(int bytes)
    {
        if (_phase is not (Phase.DataIn or Phase.AtaRead or Phase.PacketIn) || Drive == null)
        {
            StrayData++;
            return 0;
        }
        uint v = 0;
        for (int i = 0; i < bytes && _pos < _end; i++)
            v |= (uint)_buffer[_pos++] << (8 * i);
        if (_pos >= _end)
            Drained();
        return v;
    }

    private void WriteData(int bytes, uint value)
    {
        if (_phase is not (Phase.AtaWrite or Phase.Packet) || Drive == null)
        {
            StrayData++;
            return;
        }
        for (int i = 0; i < bytes && _pos < _end; i++)
            _buffer[_pos++] = (byte)(value >> (8 * i));
        if (_pos >= _end)
            Drained();
    }

    // The host has moved the whole buffer: what comes next depends on the command.
    private void Drained()
    {
        switch (_phase)
        {
            case Phase.DataIn:
                _phase = Phase.Idle;
                _status[Selected] = Drdy | Dsc;
                break;
            case Phase.AtaRead:
                if (_left > 0)
                {
                    NextReadBlock();
                }
                else
                {
                    _phase = Phase.Idle;
                    _status[Selected] = Drdy | Dsc;
                    Completed++;
                }
                break;
            case Phase.AtaWrite:
                WriteBlock();
                break;
            case Phase.Packet:
                ExecutePacket();
                break;
            case Phase.PacketIn:
                NextPacketChunk();
                break;
        }
    }

    // IDENTIFY DEVICE's 256 words for a hard disk: PIO modes 3 and 4, LBA28 and LBA48, multiple
    // transfers up to 16 sectors, FLUSH CACHE (EXT), no DMA (no bus-master transfers yet).
    private void IdentifyDisk(IdeDrive drive)
    {
        Span<byte> id = _buffer.AsSpan(0, 512);
        id.Clear();
        int d = Selected;
        long chs = (long)drive.Cylinders * _heads[d] * _sectorsPerTrack[d];
        Word(id, 0, 0x0040);                  // fixed device
        Word(id, 1, drive.Cylinders);
        Word(id, 3, drive.Heads);
        Word(id, 6, drive.SectorsPerTrack);
        Text(id, 10, 20, _serials[d]);
        Text(id, 23, 8, "1.0");
        Text(id, 27, 40, "HYVE HARDDISK");
        Word(id, 47, 0x8000 | MaxMultiple);
        Word(id, 48, 1);                      // 32-bit PIO
        Word(id, 49, (1 << 11) | (1 << 9));   // IORDY, LBA
        Word(id, 51, 0x200);
        Word(id, 53, 0x03);                   // words 54-58 and 64-70 are valid
        Word(id, 54, drive.Cylinders);
        Word(id, 55, _heads[d]);
        Word(id, 56, _sectorsPerTrack[d]);
        Word(id, 57, (int)chs);
        Word(id, 58, (int)(chs >> 16));
        if (_multiple[d] != 0)
            Word(id, 59, 0x100 | _multiple[d]);
        long lba28 = Math.Min(drive.Sectors, 0x0FFF_FFFF);
        Word(id, 60, (int)lba28);
        Word(id, 61, (int)(lba28 >> 16));
        Word(id, 64, 0x03);                   // PIO 3 and 4
        for (int w = 65; w <= 68; w++)
            Word(id, w, 120);
        Word(id, 80, 0xF0);                   // ATA-4 to ATA-7
        Word(id, 81, 0x16);
        Word(id, 82, 1 << 14);                // NOP
        Word(id, 83, (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10)); // FLUSH EXT, FLUSH, LBA48
        Word(id, 84, 1 << 14);
        Word(id, 85, 1 << 14);
        Word(id, 86, (1 << 13) | (1 << 12) | (1 << 10));
        Word(id, 87, 1 << 14);
        Word(id, 93, 0x6001);                 // hardware reset result: device 0 passed
        for (int w = 0; w < 4; w++)
            Word(id, 100 + w, (int)(drive.Sectors >> (16 * w)));
    }

    private static void Word(Span<byte> id, int word, int value) => BinaryPrimitives.WriteUInt16LittleEndian(id[(2 * word)..], (ushort)value);

    // An ATA string: padded with spaces, the two characters of each word swapped.
    private static void Text(Span<byte> id, int word, int length, string text)
    {
        for (int i = 0; i < length; i++)
            id[2 * word + (i ^ 1)] = (byte)(i < text.Length ? text[i] : ' ');
    }

    private sealed class ControlRegister(IdeChannel channel) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => channel.ReadStatus(clear: false);

        public void Write(ushort offset, int bytes, uint value) => channel.WriteControl((byte)value);
    }
}
