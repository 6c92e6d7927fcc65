// The IDE controller's channels against the ATA/ATAPI-7 and MMC specifications, hand-derived:
// the signatures a reset leaves, IDENTIFY (DEVICE and PACKET DEVICE), PIO reads and writes in
// LBA28, LBA48 (with the HOB registers) and CHS form, one interrupt per DRQ block, multiple mode,
// the errors a bad address or command gets, nIEN, the interrupt cleared by reading status but not
// alternate status, an absent device 1, and ATAPI packets: the command phase, data in pieces no
// larger than the host's byte count, the interrupt reason, and sense data after an error.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Hyve.Devices.Storage;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class IdeTests : IDisposable
{
    private const ushort Cmd = 0x1F0, Ctl = 0x3F6, Cmd2 = 0x170, Ctl2 = 0x376;
    private readonly string _disk = Path.GetTempFileName(), _cd = Path.GetTempFileName();
    private readonly PortBus _bus = new();
    private readonly List<(int Irq, bool Level)> _irq = [];
    private readonly IdeController _ide;

    public IdeTests()
    {
        // A 2 MiB disk and a 40-block CD whose every 512-byte sector (2048-byte block) starts with its number.
        var disk = new byte[2 << 20];
        for (int s = 0; s < disk.Length / 512; s++)
            BinaryPrimitives.WriteInt32LittleEndian(disk.AsSpan(s * 512), s);
        File.WriteAllBytes(_disk, disk);
        var cd = new byte[40 * 2048];
        for (int b = 0; b < 40; b++)
            BinaryPrimitives.WriteInt32LittleEndian(cd.AsSpan(b * 2048), 1000 + b);
        File.WriteAllBytes(_cd, cd);
        _ide = new IdeController([new IdeDrive(_disk, cdrom: false), null, new IdeDrive(_cd, cdrom: true), null], (irq, level) => _irq.Add((irq, level)));
        _ide.Register(_bus);
    }

    public void Dispose()
    {
        _ide.Dispose();
        File.Delete(_disk);
        File.Delete(_cd);
    }

    private uint In(ushort port, byte bytes = 1) => _bus.Handle(new InoutAccess(port, bytes, true, 0)).Eax;

    private void Out(ushort port, uint value, byte bytes = 1) => _bus.Handle(new InoutAccess(port, bytes, false, value));

    private byte[] ReadData(ushort cmd, int bytes)
    {
        var data = new byte[bytes];
        for (int i = 0; i < bytes; i += 2)
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(i), (ushort)In(cmd, 2));
        return data;
    }

    // Writes the sector count and the three address registers (then the device register, when given).
    private void TaskFile(byte count, byte low, byte mid, byte high, byte? device = null)
    {
        Out(Cmd + 2, count);
        Out(Cmd + 3, low);
        Out(Cmd + 4, mid);
        Out(Cmd + 5, high);
        if (device is byte d)
            Out(Cmd + 6, d);
    }

    private bool Line(int irq) => _irq.FindLast(e => e.Irq == irq) is { } last && last.Irq == irq && last.Level;

    [Fact]
    public void ASoftwareResetLeavesEachDevicesSignature()
    {
        Out(Ctl, 0x04);
        Assert.Equal(0x80u, In(Ctl));               // busy while SRST is held
        Out(Ctl, 0x00);
        Assert.Equal(0x50u, In(Cmd + 7));           // a disk: DRDY, DSC
        Assert.Equal((1u, 1u, 0u, 0u), (In(Cmd + 2), In(Cmd + 3), In(Cmd + 4), In(Cmd + 5)));
        Assert.Equal(1u, In(Cmd + 1));             // diagnostics passed
        Out(Ctl2, 0x04);
        Out(Ctl2, 0x00);
        Assert.Equal(0x00u, In(Cmd2 + 7));         // an ATAPI device shows no DRDY
        Assert.Equal((0x14u, 0xEBu), (In(Cmd2 + 4), In(Cmd2 + 5)));
        // Device 1 is absent: its status reads 0 and commands to it are ignored.
        Out(Cmd + 6, 0xB0);
        Assert.Equal(0u, In(Cmd + 7));
        Out(Cmd + 7, 0xEC);
        Assert.Equal(0u, In(Cmd + 7));
        Assert.Equal(0xB0u, In(Cmd + 6));
    }

    [Fact]
    public void AChannelWithoutDrivesReadsZeros()
    {
        using var empty = new IdeController([null, null, null, null], (_, _) => { });
        var bus = new PortBus();
        empty.Register(bus);
        bus.Handle(new InoutAccess(Cmd + 2, 1, false, 0x55));
        foreach (ushort port in new ushort[] { Cmd, Cmd + 1, Cmd + 2, Cmd + 7, Ctl, Cmd2 + 7, Ctl2 })
            Assert.Equal(0u, bus.Handle(new InoutAccess(port, 1, true, 0)).Eax);
        Assert.Equal(0, bus.UnclaimedReads);
    }

    [Fact]
    public void IdentifyDescribesTheDisk()
    {
        Out(Cmd + 6, 0xA0);
        Out(Cmd + 7, 0xEC);
        Assert.True(Line(14));
        Assert.Equal(0x58u, In(Cmd + 7));            // DRDY, DSC, DRQ; reading status drops INTRQ
        Assert.False(Line(14));
        byte[] id = ReadData(Cmd, 512);
        Assert.Equal(0x50u, In(Cmd + 7));
        ushort W(int w) => BinaryPrimitives.ReadUInt16LittleEndian(id.AsSpan(2 * w));
        Assert.Equal(0x0040, W(0));
        Assert.Equal(4096, W(60) | (W(61) << 16));   // LBA28 sectors
        Assert.Equal(4096, W(100));                  // LBA48 sectors
        Assert.Equal(1 << 9, W(49) & (1 << 9));      // LBA
        Assert.Equal(0, W(49) & (1 << 8));           // no DMA offered
        Assert.Equal(1 << 10, W(83) & (1 << 10));    // LBA48
        Assert.Equal((4, 16, 63), (W(1), W(3), W(6)));
        Assert.Equal("HYVE HARDDISK", SwappedText(id, 27, 40).TrimEnd());
        // IDENTIFY PACKET DEVICE is not for a disk.
        Out(Cmd + 7, 0xA1);
        Assert.Equal(0x51u, In(Cmd + 7));
        Assert.Equal(0x04u, In(Cmd + 1));
    }

    private static string SwappedText(byte[] id, int word, int length)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < length; i++)
            sb.Append((char)id[2 * word + (i ^ 1)]);
        return sb.ToString();
    }

    [Fact]
    public void PioReadsInLba28Lba48AndChsForm()
    {
        // READ SECTORS, LBA 0x000101, 2 sectors: one interrupt per sector, none after the last.
        TaskFile(2, 0x01, 0x01, 0x00, 0xE0);
        int before = _irq.Count;
        Out(Cmd + 7, 0x20);
        Assert.Equal(0x58u, In(Cmd + 7));
        Assert.Equal(0x101, BinaryPrimitives.ReadInt32LittleEndian(ReadData(Cmd, 512)));
        Assert.True(Line(14));
        Assert.Equal(0x58u, In(Cmd + 7));
        Assert.Equal(0x102, BinaryPrimitives.ReadInt32LittleEndian(ReadData(Cmd, 512)));
        Assert.Equal(0x50u, In(Cmd + 7));
        Assert.Equal(2, _irq.FindAll(e => e.Level).Count - _irq.GetRange(0, before).FindAll(e => e.Level).Count);
        // READ SECTORS EXT: the high bytes are written first and read back through HOB.
        TaskFile(0, 0x00, 0, 0);
        TaskFile(1, 0xFF, 0x0F, 0, 0x40);
        Out(Cmd + 7, 0x24);
        Assert.Equal(0x58u, In(Cmd + 7));
        Assert.Equal(0xFFF, BinaryPrimitives.ReadInt32LittleEndian(ReadData(Cmd, 512)));
        Out(Ctl, 0x80);
        Assert.Equal(0u, In(Cmd + 2));              // the HOB count
        Out(Ctl, 0x00);
        // CHS: cylinder 1, head 2, sector 3 with 16 heads and 63 sectors: LBA (1*16+2)*63+2.
        TaskFile(1, 3, 1, 0, 0xA2);
        Out(Cmd + 7, 0x20);
        Assert.Equal((1 * 16 + 2) * 63 + 2, BinaryPrimitives.ReadInt32LittleEndian(ReadData(Cmd, 512)));
        // Sector 0 does not exist in CHS form: aborted with IDNF.
        Out(Cmd + 3, 0);
        Out(Cmd + 7, 0x20);
        Assert.Equal(0x51u, In(Cmd + 7));
        Assert.Equal(0x14u, In(Cmd + 1));
    }

    [Fact]
    public void WritesReachTheImageAndLeavingTheDiskIsRefused()
    {
        TaskFile(2, 10, 0, 0, 0xE0);
        int before = _irq.Count;
        Out(Cmd + 7, 0x30);
        Assert.Equal(0x58u, In(Ctl));               // DRQ for the first sector, without an interrupt
        Assert.Equal(before, _irq.Count);
        for (int i = 0; i < 256; i++)
            Out(Cmd, 0xA5A5, 2);
        Assert.True(Line(14));
        Assert.Equal(0x58u, In(Cmd + 7));
        for (int i = 0; i < 128; i++)
            Out(Cmd, 0x1234_5678, 4);                // 32-bit PIO
        Assert.True(Line(14));
        Assert.Equal(0x50u, In(Cmd + 7));
        _ide.Dispose();
        byte[] image = File.ReadAllBytes(_disk);
        Assert.Equal(0xA5A5, BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(10 * 512 + 100)));
        Assert.Equal(0x1234_5678u, BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(11 * 512 + 508)));
        Assert.Equal(12, BinaryPrimitives.ReadInt32LittleEndian(image.AsSpan(12 * 512)));
    }

    [Fact]
    public void AReadOnlyDiskAbortsWritesAndReads()
    {
        // A write-protected fixed disk refuses WRITE SECTORS: ERR with ABRT, no DRQ; reads work.
        _ide.Dispose();
        using var ide = new IdeController([new IdeDrive(_disk, cdrom: false, readOnly: true), null, null, null], (irq, level) => _irq.Add((irq, level)));
        var bus = new PortBus();
        ide.Register(bus);
        void Write(ushort port, uint value) => bus.Handle(new InoutAccess(port, 1, false, value));
        uint Read(ushort port) => bus.Handle(new InoutAccess(port, 1, true, 0)).Eax;
        foreach (var (reg, v) in new (int, uint)[] { (2, 1), (3, 10), (4, 0), (5, 0), (6, 0xE0) })
            Write((ushort)(Cmd + reg), v);
        Write(Cmd + 7, 0x30);
        Assert.Equal(0x51u, Read(Cmd + 7));             // DRDY, DSC, ERR
        Assert.Equal(0x04u, Read(Cmd + 1));             // ABRT
        Write(Cmd + 7, 0x20);                           // READ SECTORS still works
        Assert.Equal(0x58u, Read(Cmd + 7));
        Assert.Equal(10u, bus.Handle(new InoutAccess(Cmd, 2, true, 0)).Eax);
        byte[] image = File.ReadAllBytes(_disk);
        Assert.Equal(10, BinaryPrimitives.ReadInt32LittleEndian(image.AsSpan(10 * 512)));
    }

    [Fact]
    public void MultipleModeErrorsAndInterruptMasking()
    {
        Out(Cmd + 6, 0xE0);
        Out(Cmd + 2, 3);
        Out(Cmd + 7, 0xC6);                          // SET MULTIPLE 3: not a power of two
        Assert.Equal(0x51u, In(Cmd + 7));
        Out(Cmd + 7, 0xC4);                          // READ MULTIPLE before multiple mode is on
        Assert.Equal(0x51u, In(Cmd + 7));
        Out(Cmd + 2, 4);
        Out(Cmd + 7, 0xC6);
        Assert.Equal(0x50u, In(Cmd + 7));
        Out(Cmd + 2, 6);                             // 6 sectors in blocks of 4 and 2
        Out(Cmd + 3, 0);
        Out(Cmd + 7, 0xC4);
        Assert.Equal(0x58u, In(Cmd + 7));
        byte[] first = ReadData(Cmd, 4 * 512);
        Assert.Equal(3, BinaryPrimitives.ReadInt32LittleEndian(first.AsSpan(3 * 512)));
        Assert.Equal(0x58u, In(Cmd + 7));
        Assert.Equal(5, BinaryPrimitives.ReadInt32LittleEndian(ReadData(Cmd, 2 * 512).AsSpan(512)));
        Assert.Equal(0x50u, In(Cmd + 7));
        // Past the end of the disk: IDNF.
        Out(Cmd + 2, 2);
        Out(Cmd + 3, 0xFF);
        Out(Cmd + 4, 0x0F);
        Out(Cmd + 7, 0x20);
        Assert.Equal(0x51u, In(Cmd + 7));
        Assert.Equal(0x14u, In(Cmd + 1));
        // An unknown command: ABRT. With nIEN the line stays low, and alternate status leaves INTRQ alone.
        Out(Ctl, 0x02);
        Out(Cmd + 7, 0x00);
        Assert.False(Line(14));
        Assert.Equal(0x51u, In(Ctl));
        Out(Ctl, 0x00);
        Assert.True(Line(14));                       // INTRQ was still pending
        Assert.Equal(0x04u, In(Cmd + 1));
        In(Cmd + 7);
        Assert.False(Line(14));
    }

    // Sends a 12-byte packet with a byte count limit; returns the status after the command phase.
    private void Packet(ushort limit, params byte[] cdb)
    {
        Out(Cmd2 + 6, 0xA0);
        Out(Cmd2 + 1, 0);
        Out(Cmd2 + 4, (byte)limit);
        Out(Cmd2 + 5, (byte)(limit >> 8));
        Out(Cmd2 + 7, 0xA0);
        Assert.Equal(0x48u, In(Ctl2));               // DRDY, DRQ: the packet is asked for
        Assert.Equal(0x01u, In(Cmd2 + 2));          // CoD
        var packet = new byte[12];
        cdb.CopyTo(packet, 0);
        for (int i = 0; i < 12; i += 2)
            Out(Cmd2, BinaryPrimitives.ReadUInt16LittleEndian(packet.AsSpan(i)), 2);
    }

    // One data piece: its size from the cylinder registers, the IO reason, then the bytes.
    private byte[] Piece()
    {
        Assert.True(Line(15));
        Assert.Equal(0x48u, In(Cmd2 + 7));
        Assert.Equal(0x02u, In(Cmd2 + 2));          // IO, data
        int n = (int)(In(Cmd2 + 4) | (In(Cmd2 + 5) << 8));
        return ReadData(Cmd2, n);
    }

    private void PacketEnd(byte status = 0x50)
    {
        Assert.True(Line(15));
        Assert.Equal(status, (byte)In(Cmd2 + 7));
        Assert.Equal(0x03u, In(Cmd2 + 2));          // IO, CoD: status
    }

    [Fact]
    public void AtapiAnswersIdentifyAndInquiry()
    {
        Out(Cmd2 + 6, 0xA0);
        Out(Cmd2 + 7, 0xEC);                         // IDENTIFY DEVICE: aborted, with the signature
        Assert.Equal(0x51u, In(Cmd2 + 7));
        Assert.Equal((0x14u, 0xEBu), (In(Cmd2 + 4), In(Cmd2 + 5)));
        Out(Cmd2 + 7, 0xA1);
        Assert.Equal(0x58u, In(Cmd2 + 7));
        byte[] id = ReadData(Cmd2, 512);
        Assert.Equal(0x85C0, BinaryPrimitives.ReadUInt16LittleEndian(id));
        Assert.Equal("HYVE DVD-ROM", SwappedText(id, 27, 40).TrimEnd());
        Packet(0xFFFF, 0x12, 0, 0, 0, 36, 0);
        byte[] inquiry = Piece();
        Assert.Equal(36, inquiry.Length);
        Assert.Equal(0x05, inquiry[0]);              // a CD/DVD device
        Assert.Equal(0x80, inquiry[1]);              // removable
        Assert.Equal("HYVE DVD-ROM    ", Encoding.ASCII.GetString(inquiry, 16, 16));
        PacketEnd();
    }

    [Fact]
    public void AtapiReadsComeInPiecesOfTheByteCount()
    {
        Packet(8, 0x25);                             // READ CAPACITY
        byte[] capacity = Piece();
        Assert.Equal(39u, BinaryPrimitives.ReadUInt32BigEndian(capacity));
        Assert.Equal(2048u, BinaryPrimitives.ReadUInt32BigEndian(capacity.AsSpan(4)));
        PacketEnd();
        // READ(10) of blocks 5 and 6 with a limit of 3000 bytes: pieces of 3000, then 1096.
        Packet(3000, 0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0);
        byte[] a = Piece(), b = Piece();
        Assert.Equal((3000, 1096), (a.Length, b.Length));
        Assert.Equal(1005, BinaryPrimitives.ReadInt32LittleEndian(a));
        Assert.Equal(1006, BinaryPrimitives.ReadInt32LittleEndian(a.AsSpan(2048)));
        PacketEnd();
        // READ(12) of the last block with an odd limit, rounded down to even.
        Packet(2049, 0xA8, 0, 0, 0, 0, 39, 0, 0, 0, 1);
        byte[] last = Piece();
        Assert.Equal(2048, last.Length);
        Assert.Equal(1039, BinaryPrimitives.ReadInt32LittleEndian(last));
        PacketEnd();
    }

    [Fact]
    public void AtapiErrorsLeaveSenseData()
    {
        Packet(0xFFFF, 0x28, 0, 0, 0, 0, 40, 0, 0, 1, 0); // READ past the last block
        PacketEnd(0x51);
        Assert.Equal(0x54u, In(Cmd2 + 1));          // ILLEGAL REQUEST in the sense key bits, ABRT
        Packet(18, 0x03, 0, 0, 0, 18, 0);             // REQUEST SENSE
        byte[] sense = Piece();
        Assert.Equal((0x70, 5, 0x21), (sense[0], sense[2], sense[12])); // LBA out of range
        PacketEnd();
        Packet(0xFFFF, 0xFF);                          // an unknown opcode
        PacketEnd(0x51);
        Packet(18, 0x03, 0, 0, 0, 18, 0);
        sense = Piece();
        Assert.Equal((5, 0x20), (sense[2], sense[12])); // invalid command operation code
        PacketEnd();
        Packet(18, 0x03, 0, 0, 0, 18, 0);             // the sense was cleared by reading it
        Assert.Equal(0, Piece()[2]);
        PacketEnd();
        Packet(0xFFFF, 0x00);                          // TEST UNIT READY: no data, good status
        PacketEnd();
    }
}
