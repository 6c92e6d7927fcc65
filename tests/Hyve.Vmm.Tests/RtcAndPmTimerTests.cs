// The MC146818 RTC/CMOS and the ACPI PM timer in virtual time.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Devices;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class RtcAndPmTimerTests
{
    private readonly VmClock _clock = new();
    private readonly PortHooks _ports = new();
    private readonly Rtc146818 _rtc;
    private readonly List<(long At, bool Level)> _irq8 = [];

    public RtcAndPmTimerTests()
    {
        _rtc = new Rtc146818(_clock, new DateTime(2026, 11, 22, 23, 59, 58, DateTimeKind.Utc), l => _irq8.Add((_clock.Now, l)));
        _rtc.Register(_ports);
    }

    private byte Cmos(int index)
    {
        _ports.Out(0x70, (byte)index);
        return _ports.In(0x71);
    }

    private void SetCmos(int index, byte v)
    {
        _ports.Out(0x70, (byte)index);
        _ports.Out(0x71, v);
    }

    [Fact]
    public void TimeRunsWithTheVmClockInBcd()
    {
        Assert.Equal(0x58, Cmos(0));
        Assert.Equal(0x59, Cmos(2));
        Assert.Equal(0x23, Cmos(4));
        Assert.Equal(0x22, Cmos(7));
        Assert.Equal(0x11, Cmos(8));
        Assert.Equal(0x26, Cmos(9));
        Assert.Equal(0x20, Cmos(0x32));
        _clock.Advance(3_000_000_000);
        Assert.Equal(0x01, Cmos(0));
        Assert.Equal(0x00, Cmos(4));
        Assert.Equal(0x23, Cmos(7)); // midnight passed
        Assert.Equal(0x80, Cmos(0x0D)); // valid
    }

    [Fact]
    public void BinaryAnd12HourFormats()
    {
        SetCmos(0x0B, 0x04);                  // binary, 12-hour
        Assert.Equal(58, Cmos(0));
        Assert.Equal(0x80 | 11, Cmos(4));     // 11 PM
        SetCmos(0x0B, 0x00);                  // BCD, 12-hour
        Assert.Equal(0x91, Cmos(4));
    }

    [Fact]
    public void SettingTheClock()
    {
        SetCmos(0x0B, 0x82);                  // SET, 24-hour, BCD
        SetCmos(4, 0x08);
        SetCmos(2, 0x30);
        SetCmos(0, 0x00);
        SetCmos(9, 0x27);
        SetCmos(0x0B, 0x02);
        Assert.Equal(0x08, Cmos(4));
        Assert.Equal(0x30, Cmos(2));
        Assert.Equal(0x27, Cmos(9));
        Assert.Equal(new DateTime(2027, 11, 22, 8, 30, 0), _rtc.Now);
    }

    [Fact]
    public void UpdateInProgressAtTheEndOfEachSecond()
    {
        Assert.Equal(0, Cmos(0x0A) & 0x80);
        _clock.Advance(1_000_000_000 - 100_000);
        Assert.Equal(0x80, Cmos(0x0A) & 0x80);
        Assert.Equal(0x26, Cmos(0x0A) & 0x7F);
    }

    [Fact]
    public void PeriodicUpdateAndAlarmInterrupts()
    {
        SetCmos(0x0A, 0x2F);                  // rate 15: 2 Hz
        SetCmos(0x0B, 0x42);                  // periodic interrupts on
        _clock.SkipToNextDeadline();
        Assert.Equal([(500_000_000L, true)], _irq8);
        Assert.Equal(0xC0, Cmos(0x0C));       // IRQF and PF; reading clears and lowers the line
        Assert.Equal((500_000_000L, false), _irq8[^1]);
        Assert.Equal(0, Cmos(0x0C));

        _irq8.Clear();
        SetCmos(0x0B, 0x12);                  // update-ended interrupts only
        _clock.Advance(1_000_000_000);
        Assert.Equal(0x90, Cmos(0x0C) & 0xF0);

        SetCmos(1, 0x05); SetCmos(3, 0xC0); SetCmos(5, 0xC0); // alarm at second 5 of any minute and hour
        SetCmos(0x0B, 0x22);                  // alarm interrupts only
        _irq8.Clear();
        while (_rtc.Now.Second != 5)
        {
            _clock.Advance(1_000_000_000);
            if (_rtc.Now.Second != 5)
                Cmos(0x0C);
        }
        Assert.Contains(_irq8, e => e.Level);
        Assert.Equal(0xB0, Cmos(0x0C) & 0xF0); // IRQF, AF and the update flag
    }

    [Fact]
    public void CmosRamKeepsItsBytes()
    {
        SetCmos(0x10, 0xAB);
        SetCmos(0x7F, 0x12);
        Assert.Equal(0xAB, Cmos(0x10));
        Assert.Equal(0x12, Cmos(0x7F));
        Assert.Equal(0xAB, _rtc.Cmos[2]);
        SetCmos(0x0D, 0);
        Assert.Equal(0x80, Cmos(0x0D));       // read-only
    }

    [Fact]
    public void PmTimerCountsAt3579545HzIn24Bits()
    {
        var pm = new PmTimer(_clock);
        Assert.Equal(0u, pm.Value);
        _clock.Advance(1_000_000_000);
        Assert.Equal(3_579_545u, pm.Value);
        _clock.Advance(4_000_000_000);
        Assert.Equal((uint)(5L * 3_579_545 & 0xFF_FFFF), pm.Value); // wrapped
        var ports = new PortHooks();
        ports.Register(PmTimer.DefaultPort, 4, pm);
        Assert.True(ports.TryIn(PmTimer.DefaultPort, 4, out uint v));
        Assert.Equal(pm.Value, v);
    }
}
