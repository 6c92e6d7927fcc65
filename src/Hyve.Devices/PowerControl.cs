// The PC's ways to stop or restart the machine: the ACPI PM1a event and control registers
// (placed by the PIIX4 PM function where firmware puts the PM block, 0x600 for a direct boot;
// SLP_EN with sleep type 0 is soft-off, S5), the reset control register at 0xCF9 (bit 2
// resets), and the i8042's pulse-reset command (see I8042).
using System;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>PM1a registers and the reset control register.</summary>
public sealed class PowerControl(Action<SuspendReason> stop) : IPortHandler
{
    private readonly Action<SuspendReason> _stop = stop;
    /// <summary>Where a direct boot's PM block starts (the FADT's PM1a_EVT_BLK: status, enable;
    /// PM1a_CNT follows at +4).</summary>
    public const ushort PmBase = Hyve.Boot.AcpiTables.PmBase;
    /// <summary>The reset control register (the FADT's RESET_REG).</summary>
    public const ushort ResetPort = Hyve.Boot.AcpiTables.ResetPort;

    private ushort _enable, _control;
    private byte _reset;

    /// <summary>Registers the reset register (the PM1a registers, 6 ports answered by this
    /// object, are placed by <see cref="Chipset.Piix4Pm"/>).</summary>
    public void Register(PortBus ports)
    {
        ArgumentNullException.ThrowIfNull(ports);
        ports.Register(ResetPort, 1, new ResetRegister(this));
    }

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes) => offset switch
    {
        0 => 0,                       // PM1_STS: no events
        2 => _enable,
        4 => _control | 1u,           // SCI_EN: ACPI mode, as firmware leaves it
        _ => 0,
    };

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        switch (offset)
        {
            case 2:
                _enable = (ushort)value;
                break;
            case 4:
                _control = (ushort)(value & ~0x2000u);
                if ((value & 0x2000) != 0 && ((value >> 10) & 7) == 0)
                    _stop(SuspendReason.PowerOff);
                break;
        }
    }

    private sealed class ResetRegister(PowerControl owner) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => owner._reset;

        public void Write(ushort offset, int bytes, uint value)
        {
            owner._reset = (byte)(value & 0x0A);
            if ((value & 0x04) != 0)
                owner._stop(SuspendReason.Reset);
        }
    }
}
