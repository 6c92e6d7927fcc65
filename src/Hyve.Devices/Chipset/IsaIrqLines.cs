// The ISA interrupt lines as several level-triggered sources share them: a line is high while
// any of its sources holds it high (the wired-OR a shared PCI interrupt relies on), so one
// source letting go does not drop another's request.
using System;
using System.Threading;

namespace Hyve.Devices.Chipset;

/// <summary>Shared ISA interrupt lines over the machine's interrupt controllers.</summary>
public sealed class IsaIrqLines
{
    private readonly Action<int, bool> _set;
    private readonly ulong[] _high = new ulong[16];
    private readonly int[] _sources = new int[16];
    private readonly object _lock = new();

    /// <summary>Lines that drive <paramref name="set"/> (line, level) when their level changes.</summary>
    public IsaIrqLines(Action<int, bool> set) => _set = set;

    /// <summary>A new source on line <paramref name="irq"/> (up to 64 per line); the returned
    /// action sets its level.</summary>
    public Action<bool> Source(int irq)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(irq);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(irq, 15);
        int bit;
        lock (_lock)
        {
            if (_sources[irq] == 64)
                throw new InvalidOperationException($"IRQ {irq} has 64 sources already");
            bit = _sources[irq]++;
        }
        return level => Set(irq, bit, level);
    }

    /// <summary>One source on each line a device with several lines uses (the IDE controller's
    /// two channels, the test device): the returned action sets line N's level, its source made
    /// the first time the line is driven.</summary>
    public Action<int, bool> Sources()
    {
        var mine = new Action<bool>?[16];
        return (irq, level) =>
        {
            Action<bool> source;
            lock (mine)
                source = mine[irq] ??= Source(irq);
            source(level);
        };
    }

    /// <summary>Whether line <paramref name="irq"/> is high.</summary>
    public bool IsHigh(int irq) => Volatile.Read(ref _high[irq]) != 0;

    private void Set(int irq, int bit, bool level)
    {
        lock (_lock)
        {
            ulong before = _high[irq];
            ulong after = level ? before | (1UL << bit) : before & ~(1UL << bit);
            _high[irq] = after;
            // Each change of a source is passed on while the line stays high, as a level source
            // asserting again would (an edge-triggered input sees only the first rise).
            if ((before != 0) != (after != 0) || level)
                _set(irq, after != 0);
        }
    }
}
