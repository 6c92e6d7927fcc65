// The 8254 programmable interval timer at 0x40-0x43 (1.193182 MHz input), with channel 0 on
// IRQ 0 and channel 2's gate and output in port 0x61. Counts derive from the VM clock, so they
// are exact in virtual time; modes 0-5, the four access modes, counter latch and read-back.
using System;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm.Devices;

/// <summary>The PC's interval timer and port 0x61.</summary>
public sealed class Pit8254
{
    /// <summary>Input frequency in Hz.</summary>
    public const long Frequency = 1_193_182;

    private readonly VmClock _clock;
    private readonly Channel[] _channels;
    private readonly Action<bool> _irq0;
    private readonly ClockTimer _irqTimer;
    private bool _speakerData;

    /// <summary>A PIT on <paramref name="clock"/> raising ISA IRQ 0 through <paramref name="irq0"/>.</summary>
    public Pit8254(VmClock clock, Action<bool> irq0)
    {
        _clock = clock;
        _irq0 = irq0;
        _channels = [new Channel(gate: true), new Channel(gate: true), new Channel(gate: false)];
        _irqTimer = new ClockTimer(Channel0Edge);
        clock.Add(_irqTimer);
    }

    /// <summary>Registers ports 0x40-0x43 and 0x61.</summary>
    public void Register(PortHooks ports)
    {
        ports.Register(0x40, 4, new Ports(this));
        ports.Register(0x61, 1, new PortB(this));
    }

    /// <summary>Ticks of the 1.193182 MHz input since the VM started.</summary>
    private long Ticks => (long)((Int128)_clock.Now * Frequency / 1_000_000_000);

    private long NsAt(long ticks) => (long)(((Int128)ticks * 1_000_000_000 + Frequency - 1) / Frequency);

    /// <summary>Channel <paramref name="n"/>'s current count (what a latch would capture).</summary>
    public int Count(int n) => _channels[n].CurrentCount(Ticks);

    /// <summary>Channel <paramref name="n"/>'s output.</summary>
    public bool Output(int n) => _channels[n].Output(Ticks);

    // Channel 0 drives IRQ 0: each rising edge of its output pulses the line.
    private void ScheduleIrq()
    {
        long next = _channels[0].NextRisingEdge(Ticks);
        if (next < 0)
            VmClock.Disarm(_irqTimer);
        else
            VmClock.Arm(_irqTimer, NsAt(next));
    }

    private void Channel0Edge()
    {
        _irq0(true);
        _irq0(false);
        ScheduleIrq();
    }

    // One counter. The gate only triggers (modes 1, 2, 3, 5 restart on a rising edge); a low gate
    // does not suspend counting in modes 0, 2, 3 and 4 as it does on the part.
    private sealed class Channel(bool gate)
    {
        public int Mode;
        public int Access = 3;               // 1 LSB, 2 MSB, 3 LSB then MSB
        public int Reload = 0x1_0000;        // 0 written means 65536
        public long LoadTicks = -1;          // when counting started; -1 before the first count
        public bool Gate = gate;
        private int _writeLow = -1;
        private bool _readHigh;
        private int _latched = -1;           // latched count, or -1
        private int _status = -1;            // latched read-back status, or -1
        private bool _nullCount = true;

        private long Elapsed(long now) => LoadTicks < 0 ? 0 : now - LoadTicks;

        public int CurrentCount(long now)
        {
            if (LoadTicks < 0)
                return 0;
            long d = Elapsed(now);
            return Mode switch
            {
                2 => Reload - (int)(d % Reload),
                3 => Reload - (int)(2 * d % Reload),
                _ => (int)((Reload - d) & 0xFFFF),
            };
        }

        public bool Output(long now)
        {
            if (LoadTicks < 0)
                return Mode != 0;
            long d = Elapsed(now);
            return Mode switch
            {
                0 or 1 => d >= Reload,
                2 => d % Reload != Reload - 1,       // low for one tick before the reload
                3 => d % Reload < (Reload + 1) / 2,  // high for the first half
                _ => d != Reload,                    // 4, 5: a one-tick low strobe
            };
        }

        // The tick of the next low-to-high transition of the output, or -1 for none.
        public long NextRisingEdge(long now)
        {
            if (LoadTicks < 0 || !Gate)
                return -1;
            long d = Elapsed(now);
            switch (Mode)
            {
                case 0 or 1:
                    return d < Reload ? LoadTicks + Reload : -1;
                case 2 or 3:
                    {
                        long period = d / Reload;
                        return LoadTicks + (period + 1) * Reload; // the reload point
                    }
                default:
                    return d < Reload + 1 ? LoadTicks + Reload + 1 : -1;
            }
        }

        public void Control(int access, int mode, long now)
        {
            if (access == 0)
            {
                if (_latched < 0)
                    _latched = CurrentCount(now); // counter latch command
                return;
            }
            Access = access;
            Mode = mode > 5 ? mode - 4 : mode;   // 6 and 7 are aliases of 2 and 3
            LoadTicks = -1;                      // the counter waits for its count
            _nullCount = true;
            _writeLow = -1;
            _readHigh = false;
        }

        public void WriteCount(byte v, long now)
        {
            int value;
            switch (Access)
            {
                case 1: value = v; break;
                case 2: value = v << 8; break;
                default:
                    if (_writeLow < 0)
                    {
                        _writeLow = v;
                        return;
                    }
                    value = _writeLow | (v << 8);
                    _writeLow = -1;
                    break;
            }
            Reload = value == 0 ? 0x1_0000 : value;
            _nullCount = false;
            // Modes 1 and 5 wait for a gate trigger; the others start counting now.
            if (Mode is not (1 or 5))
                LoadTicks = now;
        }

        public byte Read(long now)
        {
            if (_status >= 0)
            {
                byte s = (byte)_status;
                _status = -1;
                return s;
            }
            int count = _latched >= 0 ? _latched : CurrentCount(now);
            if (Access == 1 || (Access == 3 && !_readHigh))
            {
                if (Access == 3)
                    _readHigh = true;
                else if (_latched >= 0)
                    _latched = -1;
                return (byte)count;
            }
            _readHigh = false;
            _latched = -1;
            return (byte)(count >> 8);
        }

        public void LatchStatus(long now)
        {
            if (_status < 0)
                _status = (Output(now) ? 0x80 : 0) | (_nullCount ? 0x40 : 0) | (Access << 4) | (Mode << 1);
        }

        public void SetGate(bool level, long now)
        {
            bool rising = level && !Gate;
            Gate = level;
            if (rising && Mode is 1 or 2 or 3 or 5 && !_nullCount)
                LoadTicks = now; // a trigger restarts the count
        }
    }

    private sealed class Ports(Pit8254 pit) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => offset == 3 ? 0xFFu : pit._channels[offset].Read(pit.Ticks);

        public void Write(ushort offset, int bytes, uint value)
        {
            long now = pit.Ticks;
            byte v = (byte)value;
            if (offset < 3)
            {
                pit._channels[offset].WriteCount(v, now);
            }
            else
            {
                int select = v >> 6;
                if (select == 3)
                {
                    // Read-back: bit 5 clear latches counts, bit 4 clear latches status.
                    for (int c = 0; c < 3; c++)
                    {
                        if ((v & (2 << c)) == 0)
                            continue;
                        if ((v & 0x20) == 0)
                            pit._channels[c].Control(0, 0, now);
                        if ((v & 0x10) == 0)
                            pit._channels[c].LatchStatus(now);
                    }
                }
                else
                {
                    pit._channels[select].Control((v >> 4) & 3, (v >> 1) & 7, now);
                }
            }
            pit.ScheduleIrq();
        }
    }

    // Port 0x61: bit 0 channel 2 gate, bit 1 speaker data, bit 4 refresh toggle (every 15 µs),
    // bit 5 channel 2 output.
    private sealed class PortB(Pit8254 pit) : IPortHandler
    {
        public uint Read(ushort offset, int bytes)
        {
            long now = pit.Ticks;
            bool refresh = pit._clock.Now / 15_000 % 2 == 1;
            return (pit._channels[2].Gate ? 1u : 0) | (pit._speakerData ? 2u : 0) | (refresh ? 0x10u : 0)
                | (pit._channels[2].Output(now) ? 0x20u : 0);
        }

        public void Write(ushort offset, int bytes, uint value)
        {
            pit._channels[2].SetGate((value & 1) != 0, pit.Ticks);
            pit._speakerData = (value & 2) != 0;
        }
    }
}
