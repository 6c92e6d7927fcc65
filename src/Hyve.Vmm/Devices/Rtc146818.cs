// The MC146818 real-time clock and CMOS RAM at 0x70/0x71: date and time from the VM clock (a
// fixed start in virtual time, so runs repeat), BCD or binary, 12- or 24-hour, the SET bit, the
// periodic, alarm and update-ended interrupts on IRQ 8, and 114 bytes of CMOS RAM.
using System;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm.Devices;

/// <summary>The PC's RTC/CMOS.</summary>
public sealed class Rtc146818 : IPortHandler
{
    private const int A = 0x0A, B = 0x0B, C = 0x0C, D = 0x0D;
    private const byte Set = 0x80, Pie = 0x40, Aie = 0x20, Uie = 0x10, Binary = 0x04, Hours24 = 0x02;

    private readonly VmClock _clock;
    private readonly Action<bool> _irq8;
    private readonly byte[] _cmos = new byte[128];
    private readonly ClockTimer _periodic;
    private readonly ClockTimer _second;
    private long _baseNs;          // VM time at which _baseTime was true
    private DateTime _baseTime;
    private int _index;

    /// <summary>An RTC whose date and time is <paramref name="start"/> at VM time zero; it raises
    /// ISA IRQ 8 through <paramref name="irq8"/>.</summary>
    public Rtc146818(VmClock clock, DateTime start, Action<bool> irq8)
    {
        _clock = clock;
        _irq8 = irq8;
        _baseTime = start;
        _cmos[A] = 0x26;           // 32.768 kHz divider, 1024 Hz periodic rate
        _cmos[B] = Hours24;
        _cmos[D] = 0x80;           // valid RAM and time
        _periodic = new ClockTimer(PeriodicTick);
        _second = new ClockTimer(SecondTick);
        clock.Add(_periodic);
        clock.Add(_second);
        VmClock.Arm(_second, NextSecond());
    }

    /// <summary>CMOS RAM, for the machine to fill in (memory sizes, boot order).</summary>
    public Span<byte> Cmos => _cmos.AsSpan(0x0E);

    /// <summary>Registers ports 0x70-0x71.</summary>
    public void Register(PortHooks ports) => ports.Register(0x70, 2, this);

    /// <summary>The date and time now.</summary>
    public DateTime Now => _baseTime.AddTicks((_clock.Now - _baseNs) / 100);

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes)
    {
        if (offset == 0)
            return 0xFF; // the index register is write-only
        return _index switch
        {
            0 => Bcd(Now.Second),
            2 => Bcd(Now.Minute),
            4 => Hour(Now.Hour),
            6 => Bcd((int)Now.DayOfWeek + 1),
            7 => Bcd(Now.Day),
            8 => Bcd(Now.Month),
            9 => Bcd(Now.Year % 100),
            0x32 => Bcd(Now.Year / 100),
            A => (uint)(_cmos[A] & 0x7F) | (UpdateInProgress() ? 0x80u : 0),
            C => ReadC(),
            _ => _cmos[_index],
        };
    }

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        byte v = (byte)value;
        if (offset == 0)
        {
            _index = v & 0x7F; // bit 7 gates NMI on the PC: not modelled
            return;
        }
        switch (_index)
        {
            case 0 or 2 or 4 or 6 or 7 or 8 or 9 or 0x32:
                SetField(_index, v);
                break;
            case A:
                _cmos[A] = (byte)(v & 0x7F);
                SchedulePeriodic();
                break;
            case B:
                bool wasSet = (_cmos[B] & Set) != 0;
                _cmos[B] = v;
                if (wasSet && (v & Set) == 0)
                    VmClock.Arm(_second, NextSecond()); // the clock runs again
                SchedulePeriodic();
                break;
            case C or D:
                break; // read-only
            default:
                _cmos[_index] = v;
                break;
        }
    }

    private uint ReadC()
    {
        byte c = _cmos[C];
        _cmos[C] = 0;
        _irq8(false);
        return c;
    }

    private bool BinaryMode => (_cmos[B] & Binary) != 0;

    private uint Bcd(int v) => BinaryMode ? (uint)v : (uint)(((v / 10) << 4) | (v % 10));

    private int FromBcd(byte v) => BinaryMode ? v : ((v >> 4) * 10) + (v & 0xF);

    private uint Hour(int h)
    {
        if ((_cmos[B] & Hours24) != 0)
            return Bcd(h);
        int h12 = h % 12 == 0 ? 12 : h % 12;
        return Bcd(h12) | (h >= 12 ? 0x80u : 0);
    }

    // A write to a time register moves the clock to the new value from now on.
    private void SetField(int index, byte v)
    {
        DateTime t = Now;
        int value = FromBcd((byte)(index == 4 ? v & 0x7F : v));
        try
        {
            t = index switch
            {
                0 => t.AddSeconds(value - t.Second),
                2 => t.AddMinutes(value - t.Minute),
                4 => t.AddHours(Hour24(value, v) - t.Hour),
                7 => t.AddDays(value - t.Day),
                8 => t.AddMonths(value - t.Month),
                9 => t.AddYears(t.Year / 100 * 100 + value - t.Year),
                0x32 => t.AddYears(value * 100 + t.Year % 100 - t.Year),
                _ => t,
            };
        }
        catch (ArgumentOutOfRangeException)
        {
            return; // a date the calendar does not have: ignored, as the chip would roll oddly
        }
        _baseTime = t;
        _baseNs = _clock.Now;
    }

    private int Hour24(int value, byte raw)
    {
        if ((_cmos[B] & Hours24) != 0)
            return value;
        bool pm = (raw & 0x80) != 0;
        return value % 12 + (pm ? 12 : 0);
    }

    // The update cycle: the last 244 µs before each second.
    private bool UpdateInProgress()
    {
        if ((_cmos[B] & Set) != 0)
            return false;
        long intoSecond = (_clock.Now - _baseNs + _baseTime.Ticks % TimeSpan.TicksPerSecond * 100) % 1_000_000_000;
        return intoSecond >= 1_000_000_000 - 244_000;
    }

    private long NextSecond()
    {
        long intoSecond = (_clock.Now - _baseNs + _baseTime.Ticks % TimeSpan.TicksPerSecond * 100) % 1_000_000_000;
        return _clock.Now + 1_000_000_000 - intoSecond;
    }

    private void SecondTick()
    {
        if ((_cmos[B] & Set) != 0)
            return; // stopped while being set
        byte flags = 0x10; // update ended
        DateTime t = Now;
        if (Matches(1, t.Second) && Matches(3, t.Minute) && Matches(5, t.Hour))
            flags |= 0x20; // alarm
        Raise(flags);
        VmClock.Arm(_second, NextSecond());
    }

    // An alarm byte with the two top bits set matches anything.
    private bool Matches(int index, int value) => (_cmos[index] & 0xC0) == 0xC0 || FromBcd(_cmos[index]) == value;

    private void SchedulePeriodic()
    {
        int rate = _cmos[A] & 0xF;
        if ((_cmos[B] & Pie) == 0 || rate == 0)
        {
            VmClock.Disarm(_periodic);
            return;
        }
        VmClock.Arm(_periodic, _clock.Now + PeriodNs(rate));
    }

    // Rates 1 and 2 behave as 8 and 9; otherwise 32768 >> (rate - 1) Hz.
    private static long PeriodNs(int rate) => 1_000_000_000L * (1L << ((rate <= 2 ? rate + 7 : rate) - 1)) / 32768;

    private void PeriodicTick()
    {
        Raise(0x40);
        SchedulePeriodic();
    }

    private void Raise(byte flags)
    {
        _cmos[C] |= flags;
        byte enabled = (byte)(_cmos[B] & (Pie | Aie | Uie));
        if ((_cmos[C] & enabled) != 0 && (_cmos[C] & 0x80) == 0)
        {
            _cmos[C] |= 0x80; // IRQF: the line goes high until register C is read
            _irq8(true);
        }
    }
}
