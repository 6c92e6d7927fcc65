// The 8254 against the datasheet, in virtual time: rate generator and square wave periods, the
// one-shot terminal count, latches and access modes, read-back status, channel 2 through port
// 0x61 the way firmware and Linux calibrate with it, and IRQ 0 through the PC wiring.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Devices;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class Pit8254Tests
{
    private readonly VmClock _clock = new();
    private readonly PortHooks _ports = new();
    private readonly Pit8254 _pit;
    private readonly List<long> _irqs = [];

    public Pit8254Tests()
    {
        _pit = new Pit8254(_clock, level => { if (level) _irqs.Add(_clock.Now); });
        _pit.Register(_ports);
    }

    private static long Ns(long ticks) => (long)Math.Ceiling(ticks * 1e9 / Pit8254.Frequency);

    [Fact]
    public void RateGeneratorInterruptsOncePerPeriod()
    {
        _ports.Out(0x43, 0x34);                 // channel 0, LSB then MSB, mode 2
        _ports.Out(0x40, 0xA9); _ports.Out(0x40, 0x04); // 1193 ticks: about 1 ms
        for (int i = 0; i < 5; i++)
            _clock.SkipToNextDeadline();
        Assert.Equal(5, _irqs.Count);
        for (int i = 0; i < 5; i++)
            Assert.Equal(Ns(1193L * (i + 1)), _irqs[i]);
        _clock.Advance(Ns(100));
        _ports.Out(0x43, 0x00);                 // latch channel 0
        int count = _ports.In(0x40) | (_ports.In(0x40) << 8);
        Assert.InRange(count, 1093 - 1, 1093);
    }

    [Fact]
    public void OneShotReachesTerminalCountOnce()
    {
        _ports.Out(0x43, 0x30);                 // channel 0, mode 0
        _ports.Out(0x40, 0x00); _ports.Out(0x40, 0x10); // 4096 ticks
        Assert.False(_pit.Output(0));
        _clock.Advance(Ns(4095));
        Assert.False(_pit.Output(0));
        Assert.Empty(_irqs);
        _clock.Advance(Ns(4096) - Ns(4095));
        Assert.True(_pit.Output(0));
        Assert.Single(_irqs);
        _clock.Advance(Ns(100_000));
        Assert.Single(_irqs);
        Assert.False(_clock.SkipToNextDeadline()); // nothing stays armed after the terminal count
    }

    [Fact]
    public void SquareWaveIsHighForHalfThePeriod()
    {
        _ports.Out(0x43, 0x36);                 // channel 0, mode 3
        _ports.Out(0x40, 100); _ports.Out(0x40, 0);
        _clock.Advance(Ns(10));
        Assert.True(_pit.Output(0));
        Assert.Equal(80, _pit.Count(0)); // counts down by two
        _clock.Advance(Ns(50) - Ns(10));
        Assert.False(_pit.Output(0));
        _clock.Advance(Ns(100) - Ns(50));
        Assert.True(_pit.Output(0));
        Assert.Single(_irqs);            // one rising edge per period
    }

    [Fact]
    public void AccessModesAndReadBack()
    {
        _ports.Out(0x43, 0x54);                 // channel 1, LSB only, mode 2
        _ports.Out(0x41, 0x80);
        Assert.Equal(0x80, _pit.Count(1));
        _ports.Out(0x43, 0x64);                 // channel 1, MSB only
        _ports.Out(0x41, 0x02);
        Assert.Equal(0x200, _pit.Count(1));
        _ports.Out(0x43, 0xE4);                 // read-back: status only, channel 1
        byte status = _ports.In(0x41);
        Assert.Equal(0x80 | (2 << 4) | (2 << 1), status); // output high, MSB access, mode 2, count loaded
        _ports.Out(0x43, 0x76);                 // channel 1 reprogrammed: null count until written
        _ports.Out(0x43, 0xE4);
        Assert.Equal(0x40, _ports.In(0x41) & 0x40);
    }

    [Fact]
    public void ChannelTwoThroughPort61()
    {
        // The calibration pattern: gate on, speaker off, mode 0 with 0xFFFF, poll OUT2.
        _ports.Out(0x61, (byte)((_ports.In(0x61) & ~0x02) | 0x01));
        _ports.Out(0x43, 0xB0);
        _ports.Out(0x42, 0xFF); _ports.Out(0x42, 0xFF);
        Assert.Equal(0, _ports.In(0x61) & 0x20);
        _clock.Advance(Ns(0xFFFF));
        Assert.Equal(0x20, _ports.In(0x61) & 0x20);
        Assert.Equal(1, _ports.In(0x61) & 1);
        Assert.Empty(_irqs);             // channel 2 has no interrupt
        _clock.Advance(15_000);
        byte a = _ports.In(0x61);
        _clock.Advance(15_000);
        Assert.NotEqual(a & 0x10, _ports.In(0x61) & 0x10); // the refresh bit toggles
    }

    [Fact]
    public void Irq0ReachesTheInterruptControllers()
    {
        using Vm vm = new FakeBackend().NewVm(1, enableApics: true);
        vm.IoApic.Write(0, 1, 0x14);
        vm.IoApic.Write(0x10, 4, 0x20); // pin 2: vector 0x20, edge, to APIC 0
        Assert.True(vm.Devices.TryOut(0x43, 1, 0x34));
        Assert.True(vm.Devices.TryOut(0x40, 1, 0x9C));
        Assert.True(vm.Devices.TryOut(0x40, 1, 0x2E)); // 11932 ticks: 10 ms
        Assert.True(vm.Clock.SkipToNextDeadline());
        Assert.Equal(0x20, vm.Vcpus[0].Apic.PendingInterrupt);
    }
}
