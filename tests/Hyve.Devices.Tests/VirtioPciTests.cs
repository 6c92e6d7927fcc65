// The modern virtio PCI function against the virtio 1.x specification (section 4.1) and the PCI
// specification's MSI-X chapter, hand-derived: the identity and capability list a driver walks,
// BAR sizing and placement (64-bit, above 4 GiB too), a block request through the common
// configuration and the notification area, MSI-X messages with entry and function masks and
// their pending bits, INTA with the ISR byte and the command register's INTx disable, the PCI
// configuration access window; the PIIX3 routing INTA onto shared ISA lines; and 200,000 random
// guest accesses to the function and a flash, each answered without a host exception.
using System;
using System.Collections.Generic;
using System.IO;
using Hyve.Devices.Chipset;
using Hyve.Devices.Pci;
using Hyve.Devices.Virtio;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class VirtioPciTests : IDisposable
{
    private const ulong Desc = 0x1000, Avail = 0x2000, Used = 0x3000, Data = 0x10000;
    private const ulong Bar4 = 0xFEBF_8000, Bar1 = 0xFEBF_F000;
    private readonly GuestMemory _memory = new();
    private readonly string _disk = Path.GetTempFileName();
    private readonly MmioBus _mmio = new();
    private readonly List<(ulong Address, uint Data)> _msis = [];
    private readonly List<bool> _intx = [];
    private readonly VirtioBlock _blk;
    private readonly VirtioPci _f;
    private readonly Xunit.Abstractions.ITestOutputHelper _output;

    public VirtioPciTests(Xunit.Abstractions.ITestOutputHelper output)
    {
        _output = output;
        _memory.AddRam(0, 0x10_0000);
        File.WriteAllBytes(_disk, new byte[16 * 512]);
        _blk = new VirtioBlock(_memory, _disk);
        _f = new VirtioPci(_blk, _memory, (a, d) => _msis.Add((a, d)), _intx.Add);
        _f.Attach(new PortBus(), _mmio);
    }


    public void Dispose()
    {
        _blk.Dispose();
        _memory.Dispose();
        File.Delete(_disk);
    }

    private ulong Mem(ulong gpa, int bytes) => _mmio.Handle(new MmioAccess(gpa, (byte)bytes, false, 0)).Data;

    private void SetMem(ulong gpa, int bytes, ulong value) => _mmio.Handle(new MmioAccess(gpa, (byte)bytes, true, value));

    private void Put(ulong gpa, ulong value, int bytes) => _memory.Put(gpa, value, bytes);

    private ulong Get(ulong gpa, int bytes) => _memory.Get(gpa, bytes);

    // The capabilities as a driver finds them: (ID, offset) from the pointer at 0x34.
    private List<(byte Id, int At)> Capabilities()
    {
        var caps = new List<(byte, int)>();
        for (int at = (int)_f.Read(0x34, 1); at != 0; at = (int)_f.Read(at + 1, 1))
            caps.Add(((byte)_f.Read(at, 1), at));
        return caps;
    }

    private void Place(ulong bar4 = Bar4)
    {
        _f.Write(0x20, 4, (uint)bar4 | 0xC);
        _f.Write(0x24, 4, (uint)(bar4 >> 32));
        _f.Write(0x14, 4, (uint)Bar1);
        _f.Write(4, 2, PciFunction.CommandMemory | PciFunction.CommandBusMaster);
    }

    // A driver's bring-up through the common configuration: reset, features, queue 0 of 8.
    private void Start(ushort queueVector = 1, ushort configVector = 0)
    {
        Place();
        SetMem(Bar4 + 0x14, 1, 0);
        SetMem(Bar4 + 0x14, 1, 3);
        SetMem(Bar4 + 0x00, 4, 1);
        Assert.Equal(1UL, Mem(Bar4 + 0x04, 4) & 1);   // VERSION_1 offered
        SetMem(Bar4 + 0x08, 4, 1);
        SetMem(Bar4 + 0x0C, 4, 1);
        SetMem(Bar4 + 0x14, 1, 11);
        Assert.Equal(11UL, Mem(Bar4 + 0x14, 1));      // FEATURES_OK kept
        SetMem(Bar4 + 0x10, 2, configVector);
        SetMem(Bar4 + 0x16, 2, 0);
        Assert.Equal(256UL, Mem(Bar4 + 0x18, 2));     // the largest queue
        SetMem(Bar4 + 0x18, 2, 8);
        SetMem(Bar4 + 0x1A, 2, queueVector);
        SetMem(Bar4 + 0x20, 4, Desc);                 // 64-bit fields as two halves, as Linux writes them
        SetMem(Bar4 + 0x24, 4, 0);
        SetMem(Bar4 + 0x28, 8, Avail);
        SetMem(Bar4 + 0x30, 4, Used);
        SetMem(Bar4 + 0x34, 4, 0);
        SetMem(Bar4 + 0x1C, 2, 1);
        SetMem(Bar4 + 0x14, 1, 15);
    }

    // One FLUSH request on queue 0, notified at the queue's notification address.
    private void Flush()
    {
        Put(Data, 4, 4);
        Put(Data + 4, 0, 4);
        Put(Data + 8, 0, 8);
        Put(Desc, Data, 8);
        Put(Desc + 8, 16, 4);
        Put(Desc + 12, 1, 2);
        Put(Desc + 14, 1, 2);
        Put(Desc + 16, Data + 0x800, 8);
        Put(Desc + 24, 1, 4);
        Put(Desc + 28, 2, 2);
        ushort idx = (ushort)Get(Avail + 2, 2);
        Put(Avail + 4 + 2UL * (ulong)(idx % 8), 0, 2);
        Put(Avail + 2, (ushort)(idx + 1), 2);
        ushort used = (ushort)Get(Used + 2, 2);
        ulong notifyOff = Mem(Bar4 + 0x1E, 2);
        SetMem(Bar4 + VirtioPci.NotifyAt + VirtioPci.NotifyMultiplier * notifyOff, 2, 0);
        Assert.Equal((ushort)(used + 1), (ushort)Get(Used + 2, 2));
        Assert.Equal(0UL, Get(Data + 0x800, 1));      // VIRTIO_BLK_S_OK
    }

    [Fact]
    public void ADriverFindsTheStructuresThroughTheCapabilities()
    {
        Assert.Equal(0x1042_1AF4u, _f.Read(0, 4));      // Red Hat, 0x1040 + block
        Assert.Equal(0x0100_0001u, _f.Read(8, 4));      // SCSI storage class, revision 1: modern only
        Assert.Equal(0x10u, _f.Read(6, 2) & 0x10);       // a capability list
        Assert.Equal(1u, _f.Read(0x3D, 1));              // INTA
        Assert.True(_f.Read(0x2E, 2) >= 0x40);           // a modern device's subsystem ID
        List<(byte Id, int At)> caps = Capabilities();
        Assert.Equal([0x11, 9, 9, 9, 9, 9], caps.ConvertAll(c => c.Id));
        int msix = caps[0].At;
        Assert.Equal(1u, _f.Read(msix + 2, 2));          // table size - 1: the config vector and one queue
        Assert.Equal(0u | VirtioPci.MsixBar, _f.Read(msix + 4, 4));
        Assert.Equal(0x800u | VirtioPci.MsixBar, _f.Read(msix + 8, 4));
        var seen = new Dictionary<uint, (uint Bar, uint Offset, uint Length)>();
        foreach ((byte _, int at) in caps.GetRange(1, 5))
        {
            uint type = _f.Read(at + 3, 1);
            seen[type] = (_f.Read(at + 4, 1), _f.Read(at + 8, 4), _f.Read(at + 12, 4));
            if (type == 2)
            {
                Assert.Equal(20u, _f.Read(at + 2, 1));
                Assert.Equal((uint)VirtioPci.NotifyMultiplier, _f.Read(at + 16, 4));
            }
        }
        Assert.Equal((4u, 0x0000u, 0x1000u), seen[1]);   // common
        Assert.Equal((4u, 0x3000u, 0x1000u), seen[2]);   // notifications
        Assert.Equal((4u, 0x1000u, 0x1000u), seen[3]);   // ISR
        Assert.Equal((4u, 0x2000u, 0x1000u), seen[4]);   // device configuration
        Assert.True(seen.ContainsKey(5));                 // PCI configuration access
    }

    [Fact]
    public void BarsAreSizedAndFollowTheirAddressAndTheMemoryEnable()
    {
        foreach (int r in new[] { 0x14, 0x20, 0x24 })
            _f.Write(r, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F000u, _f.Read(0x14, 4));   // BAR 1: 4 KiB, 32-bit memory
        Assert.Equal(0xFFFF_C00Cu, _f.Read(0x20, 4));   // BAR 4: 16 KiB, 64-bit, prefetchable
        Assert.Equal(0xFFFF_FFFFu, _f.Read(0x24, 4));   // its upper half
        Assert.Equal(0u, _f.Read(0x10, 4));              // no I/O BAR: modern only
        _f.Write(0x20, 4, (uint)Bar4);
        _f.Write(0x24, 4, 0);
        _f.Write(0x14, 4, (uint)Bar1);
        Assert.Equal(ulong.MaxValue >> 32, Mem(Bar4 + 0x12, 4)); // not decoded yet: all ones
        _f.Write(4, 2, PciFunction.CommandMemory);
        Assert.Equal((long)Bar4, _f.BarAddress(VirtioPci.ConfigBar));
        Assert.Equal(1UL, Mem(Bar4 + 0x12, 2));          // num_queues
        Assert.Equal(1UL, Mem(Bar1 + 12, 4));            // table entries start masked
        _f.Write(0x24, 4, 1);                            // moved above 4 GiB
        Assert.Equal(0x1_0000_0000L + (long)Bar4, _f.BarAddress(VirtioPci.ConfigBar));
        Assert.Equal(1UL, Mem(0x1_0000_0000UL + Bar4 + 0x12, 2));
        Assert.Equal(0xFFFFUL, Mem(Bar4 + 0x12, 2));
        _f.Write(4, 2, 0);
        Assert.Equal(-1L, _f.BarAddress(VirtioPci.ConfigBar));
        // A place another device owns is refused and counted.
        _mmio.Register(0xFEB0_0000, 0x1000, new OtherDevice());
        _f.Write(0x24, 4, 0);
        _f.Write(0x20, 4, 0xFEB0_0000);
        _f.Write(4, 2, PciFunction.CommandMemory);
        Assert.Equal(-1L, _f.BarAddress(VirtioPci.ConfigBar));
        Assert.Equal(1L, _f.BarConflicts);
    }

    [Fact]
    public void UsedBuffersSendTheQueuesMsixMessageUnlessMasked()
    {
        Start();
        int msix = Capabilities()[0].At;
        SetMem(Bar1 + 16, 4, 0xFEE0_1000);              // entry 1: APIC 1, vector 0x41
        SetMem(Bar1 + 20, 4, 0);
        SetMem(Bar1 + 24, 4, 0x41);
        SetMem(Bar1 + 28, 4, 0);                         // unmasked
        Flush();
        Assert.Empty(_msis);                             // MSI-X is not enabled: INTA instead
        Assert.Equal([true], _intx);
        Assert.Equal(1UL, Mem(Bar4 + VirtioPci.IsrAt, 1));
        Assert.False(_intx[^1]);                         // reading the ISR byte clears it and the line
        Assert.Equal(0UL, Mem(Bar4 + VirtioPci.IsrAt, 1));

        _f.Write(msix + 2, 2, 0x8000);                   // MSI-X on
        Flush();
        Assert.Equal([(0xFEE0_1000UL, 0x41u)], _msis);
        Assert.Equal(2, _intx.Count);                    // INTA stays quiet
        SetMem(Bar1 + 28, 4, 1);                         // the entry masked: the bit waits in the PBA
        Flush();
        Assert.Single(_msis);
        Assert.Equal(2UL, Mem(Bar1 + 0x800, 8));
        SetMem(Bar1 + 28, 4, 0);                         // unmasked: sent, and the bit clears
        Assert.Equal(2, _msis.Count);
        Assert.Equal(0UL, Mem(Bar1 + 0x800, 8));
        _f.Write(msix + 2, 2, 0xC000);                   // the function masked
        Flush();
        Assert.Equal(2, _msis.Count);
        _f.Write(msix + 2, 2, 0x8000);
        Assert.Equal(3, _msis.Count);
        SetMem(Bar4 + 0x16, 2, 0);
        SetMem(Bar4 + 0x1A, 2, VirtioPci.NoVector);      // no vector for the queue: no interrupt
        Flush();
        Assert.Equal(3, _msis.Count);
        SetMem(Bar4 + 0x1A, 2, 7);                       // a vector the table lacks reads back as none
        Assert.Equal((ulong)VirtioPci.NoVector, Mem(Bar4 + 0x1A, 2));
    }

    [Fact]
    public void IntxDisableKeepsTheLineLowAndResetClearsTheDevice()
    {
        Start();
        _f.Write(4, 2, PciFunction.CommandMemory | PciFunction.CommandBusMaster | PciFunction.CommandIntxDisable);
        _intx.Clear();
        Flush();
        Assert.DoesNotContain(true, _intx);
        Assert.Equal(1UL, Mem(Bar4 + VirtioPci.IsrAt, 1)); // still recorded in the ISR byte
        SetMem(Bar4 + 0x14, 1, 0);                        // reset
        Assert.Equal(0UL, Mem(Bar4 + 0x14, 1));
        Assert.Equal(0UL, Mem(Bar4 + 0x1C, 2));           // queue disabled
        Assert.Equal((ulong)VirtioPci.NoVector, Mem(Bar4 + 0x1A, 2));
        SetMem(Bar4 + VirtioPci.NotifyAt, 2, 0);         // a notification before DRIVER_OK is a bad access
        Assert.Equal(1L, _f.BadAccesses);
    }

    [Fact]
    public void TheConfigurationAccessWindowReadsAndWritesTheBar()
    {
        Place();
        int cfg = Capabilities()[5].At;
        Assert.Equal(5u, _f.Read(cfg + 3, 1));
        _f.Write(cfg + 4, 1, VirtioPci.ConfigBar);
        _f.Write(cfg + 8, 4, 0x12);                      // num_queues
        _f.Write(cfg + 12, 4, 2);
        Assert.Equal(1u, _f.Read(cfg + 16, 2));
        _f.Write(cfg + 8, 4, 0x14);                      // device_status, written through the window
        _f.Write(cfg + 12, 4, 1);
        _f.Write(cfg + 16, 1, 3);
        Assert.Equal(3UL, Mem(Bar4 + 0x14, 1));
        _f.Write(cfg + 8, 4, VirtioPci.DeviceAt);        // the block device's capacity
        _f.Write(cfg + 12, 4, 4);
        Assert.Equal(16u, _f.Read(cfg + 16, 4));
        _f.Write(cfg + 12, 4, 3);                        // a length other than 1, 2 or 4
        _f.Read(cfg + 16, 4);
        Assert.Equal(1L, _f.BadAccesses);
    }

    [Fact]
    public void Piix3RoutesPciInterruptsOntoSharedIsaLines()
    {
        var levels = new List<(int Irq, bool Level)>();
        var lines = new IsaIrqLines((irq, level) => levels.Add((irq, level)));
        var isa = new Piix3IsaBridge(lines);
        Assert.Equal(2, Piix3IsaBridge.PirqOf(3, 1));    // slot 3's INTA is PIRQ C, as on QEMU
        Assert.Equal(0, Piix3IsaBridge.PirqOf(1, 1));
        Assert.Equal(3, Piix3IsaBridge.PirqOf(3, 2));
        Action<bool> other = lines.Source(11);           // another device on IRQ 11
        isa.SetPirq(2, true);                            // the route is disabled: nothing
        Assert.Empty(levels);
        isa.Write(Piix3IsaBridge.Pirq + 2, 1, 11);       // PIRQ C -> IRQ 11: the held line arrives
        Assert.Equal((11, true), levels[^1]);
        other(true);
        other(false);                                    // the other source lets go; the line stays high
        Assert.True(lines.IsHigh(11));
        Assert.DoesNotContain((11, false), levels);
        isa.Write(Piix3IsaBridge.Pirq + 2, 1, 10);       // re-routed while asserted
        Assert.Equal([(11, false), (10, true)], levels.GetRange(levels.Count - 2, 2));
        isa.SetPirq(2, false);
        Assert.Equal((10, false), levels[^1]);
    }

    [Fact]
    public void RandomAccessesFromAGuestNeverFailTheHost()
    {
        // Configuration space, both BARs (the structures, the table, the gaps) and the flash,
        // with random offsets, widths and values: each access is answered; nothing throws.
        int seed = Environment.TickCount;
        _output.WriteLine($"seed {seed} (random accesses)");
        var rng = new Random(seed);
        Place();
        string flashPath = Path.GetTempFileName();
        File.WriteAllBytes(flashPath, new byte[2 * Storage.CfiFlash.BlockSize]);
        try
        {
            using var flash = new Storage.CfiFlash(flashPath);
            for (int i = 0; i < 200_000; i++)
            {
                int bytes = 1 << rng.Next(4);
                ulong value = (ulong)rng.NextInt64();
                switch (rng.Next(5))
                {
                    case 0:
                        int at = rng.Next(256);
                        if (rng.Next(2) == 0)
                            _f.Write(at, Math.Min(bytes, 4), (uint)value);
                        else
                            _f.Read(at, Math.Min(bytes, 4));
                        break;
                    case 1 or 2:
                        ulong where = (rng.Next(2) == 0 ? Bar4 + (ulong)rng.Next(0x4000) : Bar1 + (ulong)rng.Next(0x1000)) & ~(ulong)(bytes - 1);
                        if (rng.Next(2) == 0)
                            SetMem(where, bytes, value);
                        else
                            Mem(where, bytes);
                        break;
                    case 3:
                        flash.Write((ulong)rng.Next(flash.Size), bytes, value);
                        break;
                    default:
                        flash.Read((ulong)rng.Next(flash.Size + 16), bytes);
                        break;
                }
                if (rng.Next(1000) == 0)
                    Place(); // the guest may have moved or disabled the BARs
            }
            Assert.True(_f.BadAccesses > 0, $"seed {seed}: random accesses should include undefined ones");
        }
        finally
        {
            File.Delete(flashPath);
        }
    }

    private sealed class OtherDevice : IMmioHandler
    {
        public ulong Read(ulong offset, int bytes) => 0;

        public void Write(ulong offset, int bytes, ulong value)
        {
        }
    }
}
