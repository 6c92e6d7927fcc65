// The I/O APIC: register window, edge and level pins, remote IRR and EOI redelivery, masking,
// polarity; and the PC wiring from an ISA line through the I/O APIC or the 8259 pair to a vCPU.
using System;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Devices;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class IoApicTests : IDisposable
{
    private readonly FakeBackend _backend = new();
    private readonly Vm _vm;

    public IoApicTests()
    {
        _vm = _backend.NewVm(2, enableApics: true);
    }

    public void Dispose() => _vm.Dispose();

    private IoApic Io => _vm.IoApic;

    private void Program(int pin, ulong entry)
    {
        Io.Write(0, 1, (ulong)(0x10 + 2 * pin));
        Io.Write(0x10, 4, entry & 0xFFFF_FFFF);
        Io.Write(0, 1, (ulong)(0x11 + 2 * pin));
        Io.Write(0x10, 4, entry >> 32);
    }

    [Fact]
    public void VersionAndRedirectionRegisters()
    {
        Io.Write(0, 1, 1);
        Assert.Equal(0x17_0011UL, Io.Read(0x10, 4));
        Program(5, (1UL << 56) | 0x0935); // lowest priority, logical, edge
        Io.Write(0, 1, 0x1A);
        Assert.Equal(0x0935UL, Io.Read(0x10, 4));
        Io.Write(0, 1, 0x1B);
        Assert.Equal(1UL << 24, Io.Read(0x10, 4));
        Assert.NotEqual(0UL, Io.Entry(0) & (1UL << 16)); // pins start masked
    }

    [Fact]
    public void EdgePinsSendOnRisingEdges()
    {
        Program(4, (1UL << 56) | 0x41); // edge, fixed, physical destination APIC 1
        Io.SetPin(4, true);
        Assert.Equal(0x41, _vm.Vcpus[1].Apic.PendingInterrupt);
        _vm.Vcpus[1].Apic.AcceptInterrupt(0x41);
        Io.SetPin(4, true);              // no new edge
        _vm.Vcpus[1].Apic.WriteRegister(0xB0, 0);
        Assert.Equal(-1, _vm.Vcpus[1].Apic.PendingInterrupt);
        Io.SetPin(4, false);
        Io.SetPin(4, true);
        Assert.Equal(0x41, _vm.Vcpus[1].Apic.PendingInterrupt);
    }

    [Fact]
    public void LevelPinsWaitForEoiAndRedeliverWhileAsserted()
    {
        LocalApic bsp = _vm.Vcpus[0].Apic;
        Program(10, 0xA050);              // level, active low, vector 0x50 to APIC 0
        Io.SetPin(10, false);             // active low: asserted
        Assert.NotEqual(0UL, Io.Entry(10) & (1UL << 14)); // remote IRR
        Assert.Equal(0x50, bsp.PendingInterrupt);
        bsp.AcceptInterrupt(0x50);
        bsp.WriteRegister(0xB0, 0);       // EOI with the line still asserted: sent again
        Assert.Equal(0x50, bsp.PendingInterrupt);
        bsp.AcceptInterrupt(0x50);
        Io.SetPin(10, true);              // deasserted
        bsp.WriteRegister(0xB0, 0);
        Assert.Equal(-1, bsp.PendingInterrupt);
        Assert.Equal(0UL, Io.Entry(10) & (1UL << 14));
    }

    [Fact]
    public void UnmaskingAnAssertedLevelPinDelivers()
    {
        Program(11, 0x1_8060);            // level, masked
        Io.SetPin(11, true);
        Assert.Equal(-1, _vm.Vcpus[0].Apic.PendingInterrupt);
        Program(11, 0x8060);
        Assert.Equal(0x60, _vm.Vcpus[0].Apic.PendingInterrupt);
    }

    [Fact]
    public void IsaIrqZeroReachesTheGuestThroughPinTwo()
    {
        Program(2, 0x30);                 // IRQ 0 (the PIT) arrives on pin 2
        FakeVcpu cpu = _backend.Vcpus[0];
        cpu.Script.Enqueue(v => { _vm.SetIsaIrq(0, true); return new BackendExit { Kind = BackendExitKind.Interrupted }; });
        cpu.Script.Enqueue(v => { Assert.Equal(new Event(0x30, EventType.External), v.Injected[^1]); return new BackendExit { Kind = BackendExitKind.TripleFault }; });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Empty(cpu.Script);
    }

    [Fact]
    public void LegacyModeDeliversThe8259ThroughLintZero()
    {
        var ports = _vm.Devices.Ports;
        foreach (var (port, value) in new (ushort, uint)[] { (0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01) })
            Assert.True(ports.TryOut(port, 1, value));
        _vm.Vcpus[0].Apic.WriteRegister(0x350, 0x700); // LINT0: ExtINT
        _vm.SetIsaIrq(1, true);
        FakeVcpu cpu = _backend.Vcpus[0];
        cpu.Script.Enqueue(v => { Assert.Equal(new Event(0x09, EventType.External), v.Injected[^1]); return new BackendExit { Kind = BackendExitKind.TripleFault }; });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.True(ports.TryOut(0x20, 1, 0x0B));
        Assert.True(ports.TryIn(0x20, 1, out uint isr));
        Assert.Equal(0x02u, isr); // IRQ 1 in service in the 8259
    }
}
