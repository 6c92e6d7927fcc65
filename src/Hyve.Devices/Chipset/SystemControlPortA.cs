// System control port A at 0x92 (the "fast A20 and reset" port of PS/2-era chipsets, which
// QEMU's pc machine and firmware use): bit 1 gates address line 20 and reads back as written
// (Hyve's memory never wraps at 1 MiB, so the gate is recorded, not applied), and writing bit 0
// as 1 after 0 resets the processor, which ends the run as a reset request through 0xCF9 does.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Chipset;

/// <summary>Port 0x92.</summary>
public sealed class SystemControlPortA(Action<SuspendReason> stop) : IPortHandler
{
    /// <summary>The port.</summary>
    public const ushort Port = 0x92;

    private const byte FastReset = 0x01, A20 = 0x02;

    private byte _value = A20; // A20 on, as firmware finds it

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes) => _value;

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        byte v = (byte)value;
        bool reset = (v & FastReset) != 0 && (_value & FastReset) == 0;
        _value = (byte)(v & (FastReset | A20));
        if (reset)
            stop(SuspendReason.Reset);
    }
}
