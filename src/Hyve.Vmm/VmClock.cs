// One clock per VM. Virtual by default: it moves only when the backend says instructions
// retired or when every vCPU is halted and it skips to the next deadline, so a run repeats
// exactly. Host time is the other mode. Every timer reads this clock.
using System;
using System.Diagnostics;
using System.Threading;

namespace Hyve.Vmm;

/// <summary>A deadline on the VM clock that calls back when reached. Arming and disarming do not allocate.</summary>
public sealed class ClockTimer
{
    internal long Deadline = long.MaxValue;
    internal readonly Action Fire;
    internal VmClock? Owner;

    /// <summary>A timer that runs <paramref name="fire"/> when its deadline passes (on the thread
    /// that moves the clock).</summary>
    public ClockTimer(Action fire) => Fire = fire;

    /// <summary>Whether a deadline is set.</summary>
    public bool Armed => Volatile.Read(ref Deadline) != long.MaxValue;
}

/// <summary>The VM's time in nanoseconds since it was created.</summary>
public sealed class VmClock
{
    private readonly Stopwatch? _host;
    private long _now;
    private ClockTimer[] _timers = [];
    private readonly Lock _lock = new();

    /// <summary>A virtual clock (the default), or one that follows host time.</summary>
    public VmClock(bool hostTime = false)
    {
        _host = hostTime ? Stopwatch.StartNew() : null;
        _armed = hostTime ? new AutoResetEvent(false) : null;
    }

    // Host time: set whenever a timer is armed, so a thread waiting for the next deadline
    // looks again (the new one may be earlier).
    private readonly AutoResetEvent? _armed;

    /// <summary>Whether the clock follows host time.</summary>
    public bool HostTime => _host != null;

    /// <summary>Now, in nanoseconds.</summary>
    public long Now => _host != null ? (long)_host.Elapsed.TotalNanoseconds : Volatile.Read(ref _now);

    /// <summary>Adds a timer (once, at device creation).</summary>
    public void Add(ClockTimer timer)
    {
        lock (_lock)
            _timers = [.. _timers, timer];
        timer.Owner = this;
    }

    /// <summary>Arms <paramref name="timer"/> for <paramref name="deadline"/> (ns).</summary>
    public static void Arm(ClockTimer timer, long deadline)
    {
        Volatile.Write(ref timer.Deadline, deadline);
        timer.Owner?._armed?.Set();
    }

    /// <summary>Host time: waits until the next deadline is due, a timer is armed, or
    /// <paramref name="longest"/> has passed (the caller then fires what is due).</summary>
    public void WaitForDeadline(TimeSpan longest)
    {
        if (_armed == null)
            throw new InvalidOperationException("a virtual clock moves with the guest; nothing waits for it");
        long wait = NextDeadline - Now;
        if (wait <= 0)
            return;
        // Rounded up to whole milliseconds, the wait's resolution: never early, at most 1 ms late.
        long ms = Math.Min((wait + 999_999) / 1_000_000, (long)longest.TotalMilliseconds);
        _armed.WaitOne((int)ms);
    }

    /// <summary>Disarms <paramref name="timer"/>.</summary>
    public static void Disarm(ClockTimer timer) => Volatile.Write(ref timer.Deadline, long.MaxValue);

    /// <summary>The earliest armed deadline, or <see cref="long.MaxValue"/>.</summary>
    public long NextDeadline
    {
        get
        {
            long next = long.MaxValue;
            foreach (ClockTimer t in _timers)
                next = Math.Min(next, Volatile.Read(ref t.Deadline));
            return next;
        }
    }

    /// <summary>Moves a virtual clock forward by <paramref name="ns"/> and fires what is due.</summary>
    public void Advance(long ns)
    {
        if (_host == null && ns > 0)
            Interlocked.Add(ref _now, ns);
        FireDue();
    }

    /// <summary>Moves a virtual clock to the next deadline (when it is in the future) and fires
    /// what is due. False when no timer is armed.</summary>
    public bool SkipToNextDeadline()
    {
        long next = NextDeadline;
        if (next == long.MaxValue)
            return false;
        if (_host == null)
        {
            long now;
            while ((now = Volatile.Read(ref _now)) < next && Interlocked.CompareExchange(ref _now, next, now) != now)
            {
            }
        }
        FireDue();
        return true;
    }

    /// <summary>Fires every timer whose deadline has passed (each is disarmed before it fires).</summary>
    public void FireDue()
    {
        long now = Now;
        foreach (ClockTimer t in _timers)
        {
            long d = Volatile.Read(ref t.Deadline);
            if (d <= now && Interlocked.CompareExchange(ref t.Deadline, long.MaxValue, d) == d)
                t.Fire();
        }
    }
}
