// The port bus: ownership, offsets, unclaimed ports, and a port I/O instruction answered by it.
using System;
using System.Collections.Generic;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class PortBusTests
{
    private sealed class Latch : IPortHandler
    {
        public List<(ushort Offset, int Bytes, uint Value)> Writes { get; } = [];

        public uint Value { get; set; } = 0x1234_5678;

        public uint Read(ushort offset, int bytes) => Value >> (8 * offset);

        public void Write(ushort offset, int bytes, uint value) => Writes.Add((offset, bytes, value));
    }

    [Fact]
    public void DevicesSeeOffsetsIntoTheirRange()
    {
        var bus = new PortBus();
        var latch = new Latch();
        bus.Register(0xE0, 4, latch);
        Assert.Equal(new InoutAccess(0xE1, 1, true, 0x56), bus.Handle(new InoutAccess(0xE1, 1, true, 0)));
        Assert.Equal(new InoutAccess(0xE0, 2, true, 0x5678), bus.Handle(new InoutAccess(0xE0, 2, true, 0)));
        bus.Handle(new InoutAccess(0xE2, 2, false, 0xFFFF_ABCD));
        Assert.Equal([((ushort)2, 2, 0xABCDu)], latch.Writes); // masked to the size
        Assert.Equal(0, bus.UnclaimedReads + bus.UnclaimedWrites);
    }

    [Fact]
    public void PortsNobodyOwnsReadAllOnesAndDropWrites()
    {
        var bus = new PortBus();
        Assert.Equal(0xFFu, bus.Handle(new InoutAccess(0x80, 1, true, 0)).Eax);
        Assert.Equal(0xFFFFu, bus.Handle(new InoutAccess(0x80, 2, true, 0)).Eax);
        Assert.Equal(0xFFFF_FFFFu, bus.Handle(new InoutAccess(0xFFFF, 4, true, 0)).Eax);
        bus.Handle(new InoutAccess(0x80, 1, false, 1));
        Assert.Equal(3, bus.UnclaimedReads);
        Assert.Equal(1, bus.UnclaimedWrites);
    }

    [Fact]
    public void OverlappingOrOversizedRangesAreRefused()
    {
        var bus = new PortBus();
        bus.Register(0x3F8, 8, new Latch());
        Assert.Throws<InvalidOperationException>(() => bus.Register(0x3FF, 2, new Latch()));
        Assert.Throws<ArgumentOutOfRangeException>(() => bus.Register(0xFFFF, 2, new Latch()));
        Assert.Throws<ArgumentOutOfRangeException>(() => bus.Register(0, 0, new Latch()));
        bus.Register(0x400, 1, new Latch()); // the neighbour is free
    }

    [Fact]
    public void RepInsbFromAnUnownedPortFillsMemoryWithOnes()
    {
        var bus = new PortBus();
        var cpu = new MockCpu();
        cpu.Gpr[1] = 3;
        cpu.Gpr[2] = 0x300;
        cpu.Gpr[7] = 0x10;
        Decoder.Decode([0xF3, 0x6C], Bitness.Bits64, out Instruction insn);
        var vie = new Vie();
        vie.BeginIo(IoExit.FromInstruction(in insn, 0x300)!.Value, PagingState.Flat, cpu);
        var ram = new Ram();
        VieStatus st;
        while ((st = vie.Emulate(cpu, NoVmmDevices.Instance, ram)) is VieStatus.NeedsDevice or VieStatus.Repeat)
        {
            if (st == VieStatus.NeedsDevice)
                Assert.Equal(FulfillResult.Ok, vie.FulfillInout(bus.Handle(vie.PendingInout)));
        }
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(new byte[] { 0, 0xFF, 0xFF, 0xFF, 0 }, ram.Bytes.AsSpan(0xF, 5).ToArray());
        Assert.Equal(3, bus.UnclaimedReads);
    }


    private sealed class Ram : IGuestMemory
    {
        public byte[] Bytes { get; } = new byte[0x1000];

        public bool ReadRam(ulong gpa, Span<byte> data)
        {
            if (gpa + (ulong)data.Length > (ulong)Bytes.Length)
                return false;
            Bytes.AsSpan((int)gpa, data.Length).CopyTo(data);
            return true;
        }

        public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
        {
            if (gpa + (ulong)data.Length > (ulong)Bytes.Length)
                return false;
            data.CopyTo(Bytes.AsSpan((int)gpa));
            return true;
        }
    }
}
