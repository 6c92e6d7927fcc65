// The ATAPI side of an IDE channel: a CD/DVD drive answering the PACKET command. The 12-byte
// command packet arrives through the data register; data goes back in pieces no larger than the
// byte count the host put in the cylinder registers, each announced by an interrupt with the
// interrupt reason (sector count register: CoD, IO) and the piece's size, and the command ends
// with status and, on an error, a sense key the host reads with REQUEST SENSE. The MMC commands
// a BIOS, a boot loader and an operating system's CD driver issue are answered; others are
// ILLEGAL REQUEST.
using System;
using System.Buffers.Binary;

namespace Hyve.Devices.Storage;

public sealed partial class IdeChannel
{
    private const byte ReasonCoD = 0x01, ReasonIo = 0x02;
    private const byte NotReady = 2, IllegalRequest = 5;
    private const byte InvalidOpcode = 0x20, LbaOutOfRange = 0x21, InvalidField = 0x24;

    private readonly byte[] _reply = new byte[256];
    private byte _senseKey, _asc;
    private long _srcOffset;   // a medium read: the next byte of the image; -1: the reply buffer
    private int _srcAt;        // the next byte of the reply
    private long _srcLeft;     // bytes still to send
    private int _byteLimit;    // the host's byte count limit per piece

    // ATA commands an ATAPI device takes; false for those shared with disks (handled by Execute).
    private bool ExecuteAtapiDevice(byte command)
    {
        switch (command)
        {
            case 0xA1: // IDENTIFY PACKET DEVICE
                IdentifyPacket();
                StartDataIn(512);
                return true;
            case 0xA0: // PACKET: the 12 command bytes come next, without an interrupt
                if ((_feature & 1) != 0)
                {
                    Abort(); // DMA: no bus-master transfers
                    return true;
                }
                _byteLimit = (_lbaHigh << 8) | _lbaMid;
                _phase = Phase.Packet;
                _pos = 0;
                _end = 12;
                _count = ReasonCoD;
                _status[Selected] = Drdy | Drq;
                return true;
            case 0x08: // DEVICE RESET
                _phase = Phase.Idle;
                Signature();
                _status[Selected] = 0;
                _error[Selected] = 1;
                return true;
            case 0xEC or 0xEF or 0x90 or 0xE5 or 0x98 or 0xE0 or 0xE1 or 0xE2 or 0xE3 or 0xE6 or 0x94 or 0x95 or 0x96 or 0x97 or 0x99:
                return false;
            default:
                Abort();
                return true;
        }
    }

    private void ExecutePacket()
    {
        IdeDrive drive = Drive!;
        ReadOnlySpan<byte> cdb = _buffer.AsSpan(0, 12);
        byte op = cdb[0];
        Span<byte> r = _reply;
        r.Clear();
        switch (op)
        {
            case 0x00: // TEST UNIT READY
            case 0x1B: // START STOP UNIT
            case 0x1E: // PREVENT ALLOW MEDIUM REMOVAL
            case 0x2B: // SEEK
            case 0x35: // SYNCHRONIZE CACHE
            case 0xBB: // SET CD SPEED
                PacketDone();
                return;
            case 0x03: // REQUEST SENSE: fixed format, then the sense is cleared
                r[0] = 0x70;
                r[2] = _senseKey;
                r[7] = 10;
                r[12] = _asc;
                _senseKey = _asc = 0;
                Reply(18, cdb[4]);
                return;
            case 0x12: // INQUIRY
                if ((cdb[1] & 1) != 0)
                {
                    PacketError(IllegalRequest, InvalidField); // no vital product data pages
                    return;
                }
                r[0] = 0x05;  // CD/DVD device
                r[1] = 0x80;  // removable
                r[2] = 0x05;
                r[3] = 0x32;  // ATAPI, response format 2
                r[4] = 31;
                Ascii(r[8..16], "HYVE");
                Ascii(r[16..32], "HYVE DVD-ROM");
                Ascii(r[32..36], "1.0");
                Reply(36, BinaryPrimitives.ReadUInt16BigEndian(cdb[3..]));
                return;
            case 0x25: // READ CAPACITY: the last block and the block size
                BinaryPrimitives.WriteUInt32BigEndian(r, (uint)(drive.Sectors - 1));
                BinaryPrimitives.WriteUInt32BigEndian(r[4..], 2048);
                Reply(8, 8);
                return;
            case 0x28: // READ(10)
                ReadBlocks(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]));
                return;
            case 0xA8: // READ(12)
                ReadBlocks(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]));
                return;
            case 0xBE: // READ CD: user data only is what a data disc gives
                if ((cdb[9] & 0xF8) is not (0x10 or 0x00))
                {
                    PacketError(IllegalRequest, InvalidField);
                    return;
                }
                ReadBlocks(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), (uint)((cdb[6] << 16) | (cdb[7] << 8) | cdb[8]), (cdb[9] & 0xF8) == 0);
                return;
            case 0x43: // READ TOC/PMA/ATIP
                ReadToc(drive, cdb);
                return;
            case 0x1A or 0x5A: // MODE SENSE (6) and (10)
                ModeSense(cdb, op == 0x5A);
                return;
            case 0x46: // GET CONFIGURATION: the current profile only (DVD-ROM, or CD-ROM for a small image)
                r[3] = 4; // the header's length field: the 4 bytes after it
                BinaryPrimitives.WriteUInt16BigEndian(r[6..], Profile(drive));
                Reply(8, BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]));
                return;
            case 0x4A: // GET EVENT STATUS NOTIFICATION: polled media events, none pending
                if ((cdb[1] & 1) == 0)
                {
                    PacketError(IllegalRequest, InvalidField);
                    return;
                }
                BinaryPrimitives.WriteUInt16BigEndian(r, 6);
                r[2] = 4;        // media class
                r[3] = 1 << 4;   // supported: media
                r[5] = 0x02;     // media present, tray closed
                Reply(8, BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]));
                return;
            case 0x51: // READ DISC INFORMATION: a complete, finalised disc with one session and track
                BinaryPrimitives.WriteUInt16BigEndian(r, 32);
                r[2] = 0x0E;     // last session complete, disc finalised
                r[3] = r[4] = r[5] = r[6] = 1;
                Reply(34, BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]));
                return;
            case 0xBD: // MECHANISM STATUS: no changer, no slots
                BinaryPrimitives.WriteUInt16BigEndian(r[6..], 0);
                Reply(8, BinaryPrimitives.ReadUInt16BigEndian(cdb[8..]));
                return;
            default:
                PacketError(IllegalRequest, InvalidOpcode);
                return;
        }
    }

    private static ushort Profile(IdeDrive drive) => drive.Sectors > 333_000 ? (ushort)0x0010 : (ushort)0x0008;

    private static void Ascii(Span<byte> into, string text)
    {
        for (int i = 0; i < into.Length; i++)
            into[i] = (byte)(i < text.Length ? text[i] : ' ');
    }

    // READ TOC: format 0 (the track descriptors of the one data track and the lead-out) and
    // format 1 (the first session), in LBA or MSF form.
    private void ReadToc(IdeDrive drive, ReadOnlySpan<byte> cdb)
    {
        bool msf = (cdb[1] & 2) != 0;
        int format = cdb[9] >> 6 != 0 ? cdb[9] >> 6 : cdb[2] & 0x0F;
        Span<byte> r = _reply;
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        r[2] = r[3] = 1; // first and last track (or session)
        if (format == 1)
        {
            BinaryPrimitives.WriteUInt16BigEndian(r, 10);
            r[5] = 0x14; // data track, copy permitted
            r[6] = 1;
            TocAddress(r[8..], 0, msf);
            Reply(12, allocation);
            return;
        }
        if (format != 0 || cdb[6] > 1 && cdb[6] != 0xAA)
        {
            PacketError(IllegalRequest, InvalidField);
            return;
        }
        int at = 4;
        if (cdb[6] <= 1)
        {
            r[at + 1] = 0x14;
            r[at + 2] = 1;
            TocAddress(r[(at + 4)..], 0, msf);
            at += 8;
        }
        r[at + 1] = 0x14;
        r[at + 2] = 0xAA; // the lead-out
        TocAddress(r[(at + 4)..], drive.Sectors, msf);
        at += 8;
        BinaryPrimitives.WriteUInt16BigEndian(r, (ushort)(at - 2));
        Reply(at, allocation);
    }

    // A block address as LBA or as minutes, seconds, frames (75 per second, 150 before block 0).
    private static void TocAddress(Span<byte> into, long lba, bool msf)
    {
        if (!msf)
        {
            BinaryPrimitives.WriteUInt32BigEndian(into, (uint)lba);
            return;
        }
        long frames = lba + 150;
        into[0] = 0;
        into[1] = (byte)(frames / (75 * 60));
        into[2] = (byte)(frames / 75 % 60);
        into[3] = (byte)(frames % 75);
    }

    // MODE SENSE: the error recovery page (0x01) and the capabilities page (0x2A), or all pages.
    private void ModeSense(ReadOnlySpan<byte> cdb, bool ten)
    {
        int page = cdb[2] & 0x3F;
        if (page is not (0x01 or 0x2A or 0x3F) || (cdb[2] >> 6) == 3)
        {
            PacketError(IllegalRequest, InvalidField);
            return;
        }
        Span<byte> r = _reply;
        int header = ten ? 8 : 4, at = header;
        if (page is 0x01 or 0x3F)
        {
            r[at] = 0x01;
            r[at + 1] = 6;
            r[at + 3] = 5; // read retries
            at += 8;
        }
        if (page is 0x2A or 0x3F)
        {
            r[at] = 0x2A;
            r[at + 1] = 0x14;
            r[at + 2] = 0x3B;  // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
            r[at + 4] = 0x71;  // audio play, composite, digital ports, multi-session
            r[at + 5] = 0x60;  // CD-DA commands, accurate stream
            r[at + 6] = 0x29;  // tray loader, eject, lock
            BinaryPrimitives.WriteUInt16BigEndian(r[(at + 8)..], 706);  // maximum speed (4x), kB/s
            BinaryPrimitives.WriteUInt16BigEndian(r[(at + 10)..], 2);   // volume levels
            BinaryPrimitives.WriteUInt16BigEndian(r[(at + 12)..], 512); // buffer, KiB
            BinaryPrimitives.WriteUInt16BigEndian(r[(at + 14)..], 706);
            at += 22;
        }
        if (ten)
            BinaryPrimitives.WriteUInt16BigEndian(r, (ushort)(at - 2));
        else
            r[0] = (byte)(at - 1);
        r[ten ? 2 : 1] = 0x70; // medium type: door closed, no disc type given
        Reply(at, ten ? BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]) : cdb[4]);
    }

    private void ReadBlocks(uint lba, uint count, bool nothing = false)
    {
        IdeDrive drive = Drive!;
        if (lba + (long)count > drive.Sectors)
        {
            PacketError(IllegalRequest, LbaOutOfRange);
            return;
        }
        if (count == 0 || nothing)
        {
            PacketDone();
            return;
        }
        _srcOffset = lba * 2048L;
        _srcLeft = count * 2048L;
        StartPacketIn();
    }

    // Answers with the reply's first min(length, allocation) bytes.
    private void Reply(int length, int allocation)
    {
        int n = Math.Min(length, allocation);
        if (n == 0)
        {
            PacketDone();
            return;
        }
        _srcOffset = -1;
        _srcAt = 0;
        _srcLeft = n;
        StartPacketIn();
    }

    private void StartPacketIn()
    {
        // The byte count limit: 0 is taken as the largest even count, an odd one rounds down.
        int limit = _byteLimit & ~1;
        _byteLimit = limit == 0 ? 0xFFFE : limit;
        _phase = Phase.PacketIn;
        NextPacketChunk();
    }

    // The next piece of a data-in command, or the command's end when all has been read.
    private void NextPacketChunk()
    {
        if (_srcLeft == 0)
        {
            PacketDone();
            return;
        }
        int n = (int)Math.Min(_srcLeft, _byteLimit);
        if (_srcOffset >= 0)
        {
            Drive!.Read(_srcOffset, _buffer.AsSpan(0, n));
            _srcOffset += n;
        }
        else
        {
            _reply.AsSpan(_srcAt, n).CopyTo(_buffer);
            _srcAt += n;
        }
        _srcLeft -= n;
        _pos = 0;
        _end = n;
        _lbaMid = (byte)n;
        _lbaHigh = (byte)(n >> 8);
        _count = ReasonIo;
        _status[Selected] = Drdy | Drq;
        Interrupt();
    }

    private void PacketDone()
    {
        _count = ReasonIo | ReasonCoD;
        Done();
    }

    private void PacketError(byte key, byte asc)
    {
        _senseKey = key;
        _asc = asc;
        _count = ReasonIo | ReasonCoD;
        Abort((byte)(key << 4 | Abrt));
    }

    // IDENTIFY PACKET DEVICE: a removable CD/DVD drive with 12-byte packets, PIO 3 and 4.
    private void IdentifyPacket()
    {
        Span<byte> id = _buffer.AsSpan(0, 512);
        id.Clear();
        Word(id, 0, 0x85C0);                  // ATAPI, CD/DVD, removable, 12-byte packets
        Text(id, 10, 20, _serials[Selected]);
        Text(id, 23, 8, "1.0");
        Text(id, 27, 40, "HYVE DVD-ROM");
        Word(id, 49, 1 << 9);                 // LBA
        Word(id, 53, 0x03);
        Word(id, 64, 0x03);
        for (int w = 65; w <= 68; w++)
            Word(id, w, 180);
        Word(id, 71, 30);
        Word(id, 72, 30);
        Word(id, 80, 0x1E);                   // ATA/ATAPI-1 to 4
        Word(id, 82, (1 << 14) | (1 << 4));   // NOP, PACKET
        Word(id, 83, 1 << 14);
        Word(id, 84, 1 << 14);
        Word(id, 85, 1 << 4);
        Word(id, 87, 1 << 14);
        Word(id, 93, 0x6001);
    }
}
