// virtio-mmio and its devices against a driver written here: the transport's registers and
// feature negotiation, split virtqueues (chains, indirect tables, malformed chains), the block
// device's requests on a file, and the entropy device.
using System;
using System.Collections.Generic;
using System.IO;
using Hyve.Devices.Virtio;
using Hyve.Vmm;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class VirtioTests : IDisposable
{
    private const ulong Desc = 0x1000, Avail = 0x2000, Used = 0x3000, Data = 0x10000;
    private readonly GuestMemory _memory = new();
    private readonly List<bool> _irq = [];
    private readonly string _disk = Path.GetTempFileName();

    public VirtioTests()
    {
        _memory.AddRam(0, 0x10_0000);
        File.WriteAllBytes(_disk, new byte[16 * 512]);
    }

    public void Dispose()
    {
        _memory.Dispose();
        File.Delete(_disk);
    }

    private void Put(ulong gpa, ulong value, int bytes) => _memory.Put(gpa, value, bytes);

    private ulong Get(ulong gpa, int bytes) => _memory.Get(gpa, bytes);

    private void Descriptor(int i, ulong addr, uint len, ushort flags, ushort next)
    {
        Put(Desc + 16UL * (ulong)i, addr, 8);
        Put(Desc + 16UL * (ulong)i + 8, len, 4);
        Put(Desc + 16UL * (ulong)i + 12, flags, 2);
        Put(Desc + 16UL * (ulong)i + 14, next, 2);
    }

    // A driver's bring-up: reset, acknowledge, features (VERSION_1 and extra), queue (0 by default) of 8.
    private VirtioMmio Start(IVirtioDevice device, ulong extra = 0, uint queue = 0)
    {
        var t = new VirtioMmio(device, _memory, _irq.Add);
        Assert.Equal(0x7472_6976UL, t.Read(0, 4));
        Assert.Equal(2UL, t.Read(4, 4));
        Assert.Equal(device.DeviceId, (uint)t.Read(8, 4));
        t.Write(0x70, 4, 0);
        t.Write(0x70, 4, 3);
        t.Write(0x14, 4, 1);
        Assert.Equal(1UL, t.Read(0x10, 4) & 1); // VERSION_1 offered
        t.Write(0x24, 4, 0);
        t.Write(0x20, 4, (uint)extra);
        t.Write(0x24, 4, 1);
        t.Write(0x20, 4, 1);
        t.Write(0x70, 4, 11);
        Assert.Equal(11UL, t.Read(0x70, 4)); // FEATURES_OK kept
        t.Write(0x30, 4, queue);
        t.Write(0x38, 4, 8);
        t.Write(0x80, 4, (uint)Desc);
        t.Write(0x90, 4, (uint)Avail);
        t.Write(0xA0, 4, (uint)Used);
        t.Write(0x44, 4, 1);
        t.Write(0x70, 4, 15);
        return t;
    }

    private uint Submit(VirtioMmio t, ushort head)
    {
        ushort idx = (ushort)Get(Avail + 2, 2);
        Put(Avail + 4 + 2UL * (ulong)(idx % 8), head, 2);
        Put(Avail + 2, (ushort)(idx + 1), 2);
        ushort usedBefore = (ushort)Get(Used + 2, 2);
        t.Write(0x50, 4, 0);
        Assert.Equal((ushort)(usedBefore + 1), (ushort)Get(Used + 2, 2));
        Assert.Equal(head, (ushort)Get(Used + 4 + 8UL * (ulong)(usedBefore % 8), 4));
        return (uint)Get(Used + 8 + 8UL * (ulong)(usedBefore % 8), 4);
    }

    private void Request(uint type, ulong sector)
    {
        Put(Data, type, 4);
        Put(Data + 4, 0, 4);
        Put(Data + 8, sector, 8);
    }

    [Fact]
    public void BlockWritesFlushesAndReadsTheFile()
    {
        using var blk = new VirtioBlock(_memory, _disk);
        VirtioMmio t = Start(blk, VirtioBlock.FeatureFlush);
        Assert.Equal(16UL, t.Read(0x100, 4)); // capacity in sectors
        for (int i = 0; i < 512; i++)
            Put(Data + 0x100 + (ulong)i, (byte)(i ^ 0x5A), 1);
        Request(1, 3);                                             // OUT, sector 3
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, Data + 0x100, 512, 1, 2);
        Descriptor(2, Data + 0x800, 1, 2, 0);
        Assert.Equal(1u, Submit(t, 0));
        Assert.Equal(0UL, Get(Data + 0x800, 1));
        Assert.True(_irq[^1]);
        Assert.Equal(1UL, t.Read(0x60, 4));
        t.Write(0x64, 4, 1);
        Assert.False(_irq[^1]);

        Request(4, 0);                                             // FLUSH
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, Data + 0x800, 1, 2, 0);
        Assert.Equal(1u, Submit(t, 0));
        byte[] file = File.ReadAllBytes(_disk);
        for (int i = 0; i < 512; i++)
            Assert.Equal((byte)(i ^ 0x5A), file[3 * 512 + i]);
        Assert.Equal(0, file[2 * 512 + 511]);

        Request(0, 3);                                             // IN, sector 3, into two buffers
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, Data + 0x1000, 100, 3, 2);
        Descriptor(2, Data + 0x2000, 413, 2, 0);                   // 412 bytes of data and the status
        Assert.Equal(513u, Submit(t, 0));
        Assert.Equal((ulong)(99 ^ 0x5A), Get(Data + 0x1000 + 99, 1));
        Assert.Equal((ulong)(100 ^ 0x5A), Get(Data + 0x2000, 1));
        Assert.Equal(0UL, Get(Data + 0x2000 + 412, 1));
    }

    [Fact]
    public void AReadOnlyBlockDeviceSaysSoAndFailsWrites()
    {
        using var blk = new VirtioBlock(_memory, _disk, readOnly: true);
        VirtioMmio t = Start(blk, VirtioBlock.FeatureReadOnly);
        t.Write(0x14, 4, 0);
        Assert.Equal(VirtioBlock.FeatureReadOnly, t.Read(0x10, 4) & VirtioBlock.FeatureReadOnly); // VIRTIO_BLK_F_RO offered
        Put(Data + 0x100, 0xFF, 1);
        Request(1, 0);                                             // OUT, sector 0
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, Data + 0x100, 512, 1, 2);
        Descriptor(2, Data + 0x800, 1, 2, 0);
        Assert.Equal(1u, Submit(t, 0));
        Assert.Equal(1UL, Get(Data + 0x800, 1));                    // VIRTIO_BLK_S_IOERR
        Assert.Equal(1L, blk.Failed);
        Assert.All(File.ReadAllBytes(_disk), b => Assert.Equal(0, b));
    }

    [Fact]
    public void BlockRequestsOutsideTheDiskOrUnknownFailWithAStatus()
    {
        using var blk = new VirtioBlock(_memory, _disk);
        VirtioMmio t = Start(blk);
        Request(0, 16);                                            // past the last sector
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, Data + 0x1000, 512, 3, 2);
        Descriptor(2, Data + 0x800, 1, 2, 0);
        Submit(t, 0);
        Assert.Equal(1UL, Get(Data + 0x800, 1));                   // IOERR
        Request(99, 0);
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, Data + 0x800, 1, 2, 0);
        Submit(t, 0);
        Assert.Equal(2UL, Get(Data + 0x800, 1));                   // UNSUPP
        Request(1, 0);                                             // data outside RAM
        Descriptor(0, Data, 16, 1, 1);
        Descriptor(1, 0xF000_0000, 512, 1, 2);
        Descriptor(2, Data + 0x800, 1, 2, 0);
        Submit(t, 0);
        Assert.Equal(1UL, Get(Data + 0x800, 1));
        Assert.Equal(3, blk.Failed);
        Assert.Equal(new byte[16 * 512], File.ReadAllBytes(_disk)); // nothing was written
    }

    [Fact]
    public void MalformedChainsAreReturnedEmptyAndCounted()
    {
        var rng = new VirtioRng(_memory);
        VirtioMmio t = Start(rng);
        Descriptor(0, Data, 8, 3, 1);                              // 0 -> 1 -> 0: a loop
        Descriptor(1, Data + 8, 8, 3, 0);
        Assert.Equal(0u, Submit(t, 0));
        Put(Avail + 4 + 2UL * (Get(Avail + 2, 2) % 8), 9, 2);      // a head beyond the queue
        Put(Avail + 2, Get(Avail + 2, 2) + 1, 2);
        t.Write(0x50, 4, 0);
        Assert.Equal(2, t.Malformed);
    }

    [Fact]
    public void IndirectTablesAreFollowed()
    {
        var rng = new VirtioRng(_memory);
        VirtioMmio t = Start(rng);
        const ulong Table = 0x5000;
        Put(Table, Data, 8); Put(Table + 8, 16, 4); Put(Table + 12, 3, 2); Put(Table + 14, 1, 2);
        Put(Table + 16, Data + 64, 8); Put(Table + 24, 16, 4); Put(Table + 28, 2, 2); Put(Table + 30, 0, 2);
        Descriptor(0, Table, 32, 4, 0);
        Assert.Equal(32u, Submit(t, 0));
        Assert.NotEqual(0UL, Get(Data, 8) | Get(Data + 8, 8));
        Assert.NotEqual(0UL, Get(Data + 64, 8) | Get(Data + 72, 8));
    }

    [Fact]
    public void FeaturesOkIsRefusedWithoutVersion1OrWithUnofferedBits()
    {
        var t = new VirtioMmio(new VirtioRng(_memory), _memory, _irq.Add);
        t.Write(0x70, 4, 3);
        t.Write(0x24, 4, 0);
        t.Write(0x20, 4, 1 << 9);                                  // not offered by the entropy device
        t.Write(0x24, 4, 1);
        t.Write(0x20, 4, 1);
        t.Write(0x70, 4, 11);
        Assert.Equal(3UL, t.Read(0x70, 4));
        t.Write(0x24, 4, 0);
        t.Write(0x20, 4, 0);
        t.Write(0x24, 4, 1);
        t.Write(0x20, 4, 0);                                       // no VERSION_1
        t.Write(0x70, 4, 11);
        Assert.Equal(3UL, t.Read(0x70, 4));
        t.Write(0x50, 4, 0);                                       // notify before DRIVER_OK
        Assert.Equal(1, t.BadAccesses);
    }

    [Fact]
    public void ConsoleWritesTheTransmitQueueToItsOutput()
    {
        var output = new List<byte>();
        var con = new VirtioConsole(_memory, bytes => output.AddRange(bytes.ToArray()));
        VirtioMmio t = Start(con, queue: 1); // the transmit queue
        _memory.WriteRam(Data, "hi there"u8);
        Descriptor(0, Data, 8, 1, 1);
        Descriptor(1, Data + 3, 5, 0, 0);
        Put(Avail + 4, 0, 2);
        Put(Avail + 2, 1, 2);
        t.Write(0x50, 4, 1);
        Assert.Equal("hi therethere", System.Text.Encoding.ASCII.GetString([.. output]));
        Assert.Equal(1UL, Get(Used + 2, 2));
        Assert.Equal(13, con.Written);
    }
}
