// A terminal's input on its way into a UART: bytes the host typed or piped wait here until the
// guest's driver listens (UART.ReadyToReceive) and its receive buffer has room, and then arrive
// one character time apart on the VM's clock, as they would over the serial line. Nothing typed
// before the guest set the port up is lost, and a script piped in whole reaches the guest intact.
using System;
using System.Collections.Generic;
using System.Threading;
using Hyve.Vmm;

namespace Hyve.Devices;

/// <summary>Holds and paces input for a <see cref="Uart16550"/>.</summary>
public sealed class SerialInput
{
    /// <summary>Bytes held at most; past that the host waits (<see cref="Offer"/> returns false).</summary>
    public const int Capacity = 64 * 1024;

    private readonly Queue<byte> _held = new();
    private readonly Lock _lock;
    private readonly VmClock _clock;
    private readonly ClockTimer _timer;
    private Uart16550? _uart;
    private long _nextAt;

    /// <summary>Input paced by <paramref name="clock"/>; <paramref name="deviceLock"/> is the lock
    /// the UART's register accesses are made under (deliveries take it too).</summary>
    public SerialInput(VmClock clock, Lock deviceLock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        _clock = clock;
        _lock = deviceLock;
        _timer = new ClockTimer(Deliver);
        clock.Add(_timer);
    }

    /// <summary>The UART the input goes to (set once, after both exist).</summary>
    public Uart16550 Uart
    {
        set => _uart = value;
    }

    /// <summary>Bytes waiting for the guest.</summary>
    public int Held
    {
        get
        {
            lock (_lock)
                return _held.Count;
        }
    }

    /// <summary>Takes a byte from the host; false when <see cref="Capacity"/> bytes are already
    /// waiting (try again once the guest has read some).</summary>
    public bool Offer(byte value)
    {
        lock (_lock)
        {
            if (_held.Count >= Capacity)
                return false;
            _held.Enqueue(value);
            if (_held.Count == 1)
                Schedule();
        }
        return true;
    }

    /// <summary>The UART's receiver may be ready for more (called under the device lock).</summary>
    public void ReceiverChanged()
    {
        if (_held.Count > 0)
            Schedule();
    }

    // The next byte falls due one character time after the last one, and no sooner than one
    // character time from now: a byte takes that long on the line, and a driver that has just
    // started listening finishes its set-up (which reads and drops whatever is in the receiver)
    // in that time.
    private void Schedule()
    {
        if (!_timer.Armed)
            VmClock.Arm(_timer, Math.Max(_clock.Now + (_uart?.CharacterTimeNs ?? 0), _nextAt));
    }

    // On the clock's thread: one byte into the UART when it listens and has room; the next one
    // a character time later. A UART that is not ready calls back when it may be.
    private void Deliver()
    {
        lock (_lock)
        {
            if (_uart == null || _held.Count == 0 || !_uart.ReadyToReceive || !_uart.CanReceive)
                return;
            _uart.Receive(_held.Dequeue());
            _nextAt = _clock.Now + _uart.CharacterTimeNs;
            if (_held.Count > 0)
                VmClock.Arm(_timer, _nextAt);
        }
    }
}
