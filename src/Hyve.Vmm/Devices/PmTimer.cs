// The ACPI power-management timer: a free-running 24-bit counter at 3.579545 MHz, read through
// one 32-bit port, derived from the VM clock.
using System;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm.Devices;

/// <summary>The ACPI PM timer (PM1 timer register).</summary>
public sealed class PmTimer : IPortHandler
{
    /// <summary>Counter frequency in Hz.</summary>
    public const long Frequency = 3_579_545;

    /// <summary>The port the PIIX4-style PM block puts the timer at.</summary>
    public const ushort DefaultPort = 0x608;

    private readonly VmClock _clock;

    /// <summary>A PM timer on <paramref name="clock"/>.</summary>
    public PmTimer(VmClock clock) => _clock = clock;

    /// <summary>The counter's value now (24 bits).</summary>
    public uint Value => (uint)((long)((Int128)_clock.Now * Frequency / 1_000_000_000) & 0xFF_FFFF);

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes) => Value >> (8 * offset);

    /// <summary>The register is read-only: writes are ignored.</summary>
    public void Write(ushort offset, int bytes, uint value)
    {
    }
}
