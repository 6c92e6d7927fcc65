// The local APIC of one vCPU: the xAPIC register page and the x2APIC MSRs, IRR/ISR/TMR with
// TPR/PPR priorities, EOI, the ICR (fixed, lowest-priority, NMI, INIT, SIPI, shorthands), the
// LVTs and the timer (one-shot, periodic, TSC-deadline) on the VM clock. An ICR write only
// records INIT and SIPI for the target's run loop: nothing leaves the emulator from here.
using System;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Hyve.Vmm.Devices;

/// <summary>Where an APIC's interrupt messages go: the VM's APIC bus.</summary>
public interface IApicBus
{
    /// <summary>Delivers an interrupt message from <paramref name="source"/> (null: the I/O APIC).</summary>
    void Deliver(LocalApic? source, in ApicMessage message);

    /// <summary>An EOI for a level-triggered <paramref name="vector"/> (the I/O APIC clears remote IRR).</summary>
    void EndOfInterrupt(int vector);
}

/// <summary>The legacy interrupt controller behind LINT0 in ExtINT mode (the 8259 pair).</summary>
public interface IExtIntSource
{
    /// <summary>The vector an interrupt acknowledge would return now, or -1.</summary>
    int PeekVector();

    /// <summary>The interrupt acknowledge cycle: returns the vector and updates the controller.</summary>
    int Acknowledge();
}

/// <summary>Delivery modes of an interrupt message.</summary>
public enum DeliveryMode : byte
{
    /// <summary>Fixed.</summary>
    Fixed = 0,
    /// <summary>Lowest priority.</summary>
    LowestPriority = 1,
    /// <summary>SMI (ignored).</summary>
    Smi = 2,
    /// <summary>NMI.</summary>
    Nmi = 4,
    /// <summary>INIT.</summary>
    Init = 5,
    /// <summary>Startup IPI.</summary>
    Startup = 6,
    /// <summary>ExtINT.</summary>
    ExtInt = 7,
}

/// <summary>An interrupt message on the APIC bus (from an ICR write, the I/O APIC or an MSI).</summary>
/// <param name="Vector">Vector.</param>
/// <param name="Mode">Delivery mode.</param>
/// <param name="Logical">Logical destination mode.</param>
/// <param name="Destination">Destination (8 bits in xAPIC mode, 32 in x2APIC mode).</param>
/// <param name="Shorthand">0 none, 1 self, 2 all including self, 3 all excluding self.</param>
/// <param name="Level">Level-triggered (sets TMR; EOI is broadcast).</param>
/// <param name="Assert">The level bit (INIT with it clear is the de-assert, ignored).</param>
public readonly record struct ApicMessage(byte Vector, DeliveryMode Mode, bool Logical, uint Destination, int Shorthand = 0,
    bool Level = false, bool Assert = true);

/// <summary>A vCPU's local APIC.</summary>
public sealed class LocalApic : IInterruptSource, IMmioHandler
{
    /// <summary>The default base of the xAPIC page.</summary>
    public const ulong DefaultBase = 0xFEE0_0000;

    private const int Version = 0x14 | (6 << 16); // integrated APIC, 7 LVT entries (max LVT index 6)
    private const uint LvtMasked = 1 << 16;

    [InlineArray(8)]
    private struct Bits256
    {
        private uint _e0;
    }

    private readonly IApicBus _bus;
    private readonly VmClock _clock;
    private readonly ClockTimer _timer;
    private Bits256 _irr, _isr, _tmr;
    private uint _tpr, _ldr, _dfr = 0xFFFF_FFFF, _svr = 0xFF, _esr, _icrLow, _icrHigh;
    private readonly uint[] _lvt = [LvtMasked, LvtMasked, LvtMasked, LvtMasked, LvtMasked, LvtMasked, LvtMasked]; // CMCI, timer, thermal, PMC, LINT0, LINT1, error
    private uint _initialCount, _divideConfig;
    private long _timerStart, _timerPeriod;
    private ulong _tscDeadline;
    private bool _nmi;
    private bool _extIntOffered;
    private readonly Action _kick;

    /// <summary>The APIC of vCPU <paramref name="id"/>; <paramref name="kick"/> wakes that vCPU.</summary>
    public LocalApic(int id, IApicBus bus, VmClock clock, Action kick)
    {
        Id = id;
        _bus = bus;
        _clock = clock;
        _kick = kick;
        _timer = new ClockTimer(TimerExpired);
        clock.Add(_timer);
    }

    /// <summary>APIC ID.</summary>
    public int Id { get; }

    /// <summary>x2APIC mode (IA32_APIC_BASE.EXTD).</summary>
    public bool X2Apic { get; set; }

    /// <summary>The 8259 pair behind LINT0 (on the bootstrap processor).</summary>
    public IExtIntSource? ExtInt { get; set; }

    /// <summary>Spurious-vector register bit 8: the APIC is software-enabled.</summary>
    public bool SoftwareEnabled => (_svr & 0x100) != 0;

    /// <summary>Offset from the TSC to VM nanoseconds, for TSC-deadline mode (the MSR file's).</summary>
    public Func<long, ulong>? TscAt { get; set; }

    /// <summary>The TSC's frequency in Hz, for turning a TSC deadline into VM time.</summary>
    public ulong TscHz { get; set; } = CpuidPolicy.ClockTscHz;

    /// <summary>Writes that were dropped (misaligned or narrow) or hit read-only registers.</summary>
    public long DroppedWrites { get; private set; }

    // ---- Interrupt acceptance ---------------------------------------------------------------------

    /// <summary>Accepts a fixed or lowest-priority interrupt (IRR, and TMR when level-triggered).</summary>
    public void Accept(int vector, bool level)
    {
        if (vector < 16)
        {
            _esr |= 0x40; // received illegal vector
            return;
        }
        Set(ref _irr, vector);
        if (level)
            Set(ref _tmr, vector);
        else
            Clear(ref _tmr, vector);
        _kick();
    }

    /// <summary>Accepts an NMI.</summary>
    public void AcceptNmiMessage()
    {
        _nmi = true;
        _kick();
    }

    /// <inheritdoc/>
    public bool NmiPending => _nmi;

    /// <inheritdoc/>
    public void AcceptNmi() => _nmi = false;

    /// <inheritdoc/>
    public int PendingInterrupt
    {
        get
        {
            int v = Highest(in _irr);
            if (v >= 0 && (v & 0xF0) > (Ppr & 0xF0))
            {
                _extIntOffered = false;
                return v;
            }
            // Virtual-wire mode: LINT0 in ExtINT delivery, unmasked, passes the 8259's INTR through.
            uint lint0 = _lvt[4];
            if (ExtInt != null && (lint0 & LvtMasked) == 0 && ((lint0 >> 8) & 7) == 7)
            {
                int ext = ExtInt.PeekVector();
                _extIntOffered = ext >= 0;
                return ext;
            }
            return -1;
        }
    }

    /// <inheritdoc/>
    public void AcceptInterrupt(int vector)
    {
        if (_extIntOffered)
        {
            _extIntOffered = false;
            ExtInt!.Acknowledge();
            return;
        }
        Clear(ref _irr, vector);
        Set(ref _isr, vector);
    }

    private uint Ppr
    {
        get
        {
            int isrv = Highest(in _isr);
            uint isrClass = isrv < 0 ? 0 : (uint)isrv & 0xF0;
            return (_tpr & 0xF0) >= isrClass ? _tpr & 0xFF : isrClass;
        }
    }

    private void Eoi()
    {
        int v = Highest(in _isr);
        if (v < 0)
            return;
        Clear(ref _isr, v);
        if (Test(in _tmr, v))
            _bus.EndOfInterrupt(v);
        _kick(); // a lower-priority interrupt may now be deliverable
    }

    // ---- Registers ---------------------------------------------------------------------------------

    /// <summary>Reads a 32-bit register at <paramref name="offset"/> (0x20 .. 0x3F0).</summary>
    public uint ReadRegister(int offset)
    {
        switch (offset)
        {
            case 0x20: return X2Apic ? (uint)Id : (uint)Id << 24;
            case 0x30: return Version;
            case 0x80: return _tpr;
            case 0xA0: return Ppr;
            case 0xD0: return X2Apic ? (((uint)Id >> 4) << 16) | (1u << (Id & 15)) : _ldr;
            case 0xE0: return _dfr;
            case 0xF0: return _svr;
            case >= 0x100 and < 0x180: return _isr[(offset - 0x100) >> 4];
            case >= 0x180 and < 0x200: return _tmr[(offset - 0x180) >> 4];
            case >= 0x200 and < 0x280: return _irr[(offset - 0x200) >> 4];
            case 0x280: return _esr;
            case 0x2F0: return _lvt[0];
            case 0x300: return _icrLow & ~(1u << 12); // delivery status: idle
            case 0x310: return _icrHigh;
            case >= 0x320 and <= 0x370: return _lvt[((offset - 0x320) >> 4) + 1];
            case 0x380: return _initialCount;
            case 0x390: return CurrentCount();
            case 0x3E0: return _divideConfig;
            default: return 0;
        }
    }

    /// <summary>Writes a 32-bit register at <paramref name="offset"/>.</summary>
    public void WriteRegister(int offset, uint value)
    {
        switch (offset)
        {
            case 0x80: _tpr = value & 0xFF; _kick(); break;
            case 0xB0: Eoi(); break;
            case 0xD0: if (!X2Apic) _ldr = value & 0xFF00_0000; else DroppedWrites++; break;
            case 0xE0: if (!X2Apic) _dfr = value | 0x0FFF_FFFF; else DroppedWrites++; break;
            case 0xF0:
                _svr = value & 0x13FF;
                if (!SoftwareEnabled)
                {
                    for (int i = 0; i < _lvt.Length; i++)
                        _lvt[i] |= LvtMasked; // a software disable masks every LVT
                }
                break;
            case 0x280: _esr = 0; break; // a write re-arms the error status (it reads as the last errors)
            case 0x2F0: _lvt[0] = LvtValue(0, value); break;
            case 0x300:
                _icrLow = value & 0xC_CFFF;
                SendIpi(_icrLow, X2Apic ? 0 : _icrHigh >> 24);
                break;
            case 0x310: if (!X2Apic) _icrHigh = value & 0xFF00_0000; else DroppedWrites++; break;
            case >= 0x320 and <= 0x370:
                int i2 = ((offset - 0x320) >> 4) + 1;
                uint old = _lvt[i2];
                _lvt[i2] = LvtValue(i2, value);
                if (i2 == 1 && ((old ^ _lvt[i2]) & (3u << 17)) != 0)
                    StopTimer(); // a mode change stops the timer
                break;
            case 0x380:
                _initialCount = value;
                StartTimer();
                break;
            case 0x3E0: _divideConfig = value & 0xB; break;
            default: DroppedWrites++; break;
        }
    }

    private uint LvtValue(int index, uint value)
    {
        uint mask = index switch
        {
            1 => 0x7_10FF,  // timer: vector, mask, mode
            4 or 5 => 0x1_A7FF, // LINT: vector, delivery mode, polarity, trigger, mask
            _ => 0x1_07FF,
        };
        uint v = value & mask;
        if (!SoftwareEnabled)
            v |= LvtMasked;
        return v;
    }

    private void SendIpi(uint low, uint destination)
    {
        var mode = (DeliveryMode)((low >> 8) & 7);
        var message = new ApicMessage((byte)low, mode, (low & 0x800) != 0, destination, (int)((low >> 18) & 3),
            Level: (low & 0x8000) != 0, Assert: (low & 0x4000) != 0);
        if (mode == DeliveryMode.Init && message.Level && !message.Assert)
            return; // INIT level de-assert: nothing on current processors
        _bus.Deliver(this, in message);
    }

    /// <summary>Whether a logical or physical <paramref name="destination"/> names this APIC.</summary>
    public bool Matches(bool logical, uint destination)
    {
        if (X2Apic)
        {
            if (!logical)
                return destination == 0xFFFF_FFFF || destination == (uint)Id;
            uint ldr = ReadRegister(0xD0);
            return (destination >> 16) == (ldr >> 16) && (destination & ldr & 0xFFFF) != 0;
        }
        if (!logical)
            return destination == 0xFF || destination == (uint)Id;
        uint logicalId = _ldr >> 24;
        if ((_dfr >> 28) == 0xF)
            return (destination & logicalId) != 0; // flat
        return (destination >> 4) == (logicalId >> 4) && (destination & logicalId & 0xF) != 0; // cluster
    }

    // ---- Timer ------------------------------------------------------------------------------------

    private int Divide => ((int)(_divideConfig & 3) | (int)((_divideConfig & 8) >> 1)) is var d && d == 7 ? 1 : 2 << d;

    private int TimerMode => (int)((_lvt[1] >> 17) & 3);

    // One count per (divide) nanoseconds: the APIC bus runs at 1 GHz here.
    private void StartTimer()
    {
        if (TimerMode == 2)
            return; // TSC-deadline mode ignores the initial count
        if (_initialCount == 0)
        {
            StopTimer();
            return;
        }
        _timerStart = _clock.Now;
        _timerPeriod = (long)_initialCount * Divide;
        VmClock.Arm(_timer, _timerStart + _timerPeriod);
    }

    private void StopTimer()
    {
        _timerPeriod = 0;
        VmClock.Disarm(_timer);
    }

    private uint CurrentCount()
    {
        if (_timerPeriod == 0 || TimerMode == 2)
            return 0;
        long elapsed = _clock.Now - _timerStart;
        if (TimerMode == 1)
            elapsed %= _timerPeriod;
        else if (elapsed >= _timerPeriod)
            return 0;
        return (uint)((_timerPeriod - elapsed) / Divide);
    }

    /// <summary>IA32_TSC_DEADLINE: arms the timer at that TSC value (in TSC-deadline mode); 0 disarms.</summary>
    public ulong TscDeadline
    {
        get => _tscDeadline;
        set
        {
            _tscDeadline = value;
            if (TimerMode != 2)
                return;
            if (value == 0 || TscAt == null)
            {
                VmClock.Disarm(_timer);
                return;
            }
            // Find the nanosecond the deadline falls on, at the TSC's frequency.
            ulong tscNow = TscAt(_clock.Now);
            ulong ticks = value <= tscNow ? 0 : value - tscNow;
            UInt128 ns = TscHz == CpuidPolicy.ClockTscHz ? ticks : (UInt128)ticks * CpuidPolicy.ClockTscHz / TscHz;
            long at = _clock.Now + (long)UInt128.Min(ns, long.MaxValue / 2);
            VmClock.Arm(_timer, at);
        }
    }

    private void TimerExpired()
    {
        uint lvt = _lvt[1];
        if (TimerMode == 1 && _timerPeriod > 0)
        {
            _timerStart += _timerPeriod;
            VmClock.Arm(_timer, _timerStart + _timerPeriod);
        }
        else if (TimerMode == 2)
        {
            _tscDeadline = 0;
        }
        if ((lvt & LvtMasked) == 0)
            Accept((int)(lvt & 0xFF), level: false);
    }

    // ---- The xAPIC page and the x2APIC MSRs ----------------------------------------------------------

    /// <inheritdoc/>
    public ulong Read(ulong offset, int bytes)
    {
        if (X2Apic)
            return 0; // the page is gone in x2APIC mode
        uint reg = ReadRegister((int)(offset & 0xFF0));
        return (reg >> (int)(8 * (offset & 3))) & (bytes >= 4 ? 0xFFFF_FFFFu : (1u << (8 * bytes)) - 1);
    }

    /// <inheritdoc/>
    public void Write(ulong offset, int bytes, ulong value)
    {
        if (X2Apic || bytes != 4 || (offset & 0xF) != 0)
        {
            DroppedWrites++; // registers take aligned 32-bit writes
            return;
        }
        WriteRegister((int)offset, (uint)value);
    }

    /// <summary>RDMSR of an x2APIC register (0x800-0x8FF); false for #GP.</summary>
    public bool ReadMsr(uint msr, out ulong value)
    {
        value = 0;
        int offset = (int)(msr - 0x800) << 4;
        if (!X2Apic || offset is 0x90 or 0xB0 or 0xC0 or 0xE0 or 0x310 || offset > 0x3F0 || msr == 0x83F)
            return false;
        value = offset == 0x300 ? ((ulong)_icrHigh << 32) | ReadRegister(0x300) : ReadRegister(offset);
        return true;
    }

    /// <summary>WRMSR of an x2APIC register; false for #GP.</summary>
    public bool WriteMsr(uint msr, ulong value)
    {
        int offset = (int)(msr - 0x800) << 4;
        if (!X2Apic || offset > 0x3F0)
            return false;
        switch (offset)
        {
            case 0x300:
                _icrHigh = (uint)(value >> 32);
                _icrLow = (uint)value & 0xC_CFFF;
                SendIpi(_icrLow, _icrHigh);
                return true;
            case 0x3F0: // SELF IPI
                Accept((int)(value & 0xFF), level: false);
                return true;
            case 0x20 or 0x30 or 0xA0 or 0xD0 or 0x390 or (>= 0x100 and < 0x280):
                return false; // read-only
            default:
                WriteRegister(offset, (uint)value);
                return true;
        }
    }

    // ---- Bit sets --------------------------------------------------------------------------------------

    private static void Set(ref Bits256 b, int v) => b[v >> 5] |= 1u << (v & 31);

    private static void Clear(ref Bits256 b, int v) => b[v >> 5] &= ~(1u << (v & 31));

    private static bool Test(in Bits256 b, int v) => (b[v >> 5] & (1u << (v & 31))) != 0;

    private static int Highest(in Bits256 b)
    {
        for (int i = 7; i >= 0; i--)
        {
            if (b[i] != 0)
                return (i << 5) + 31 - BitOperations.LeadingZeroCount(b[i]);
        }
        return -1;
    }
}
