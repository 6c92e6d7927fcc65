// The PIIX3 IDE controller at 00:01.1 (function 1 of the south bridge), as QEMU's pc machine
// has it: both channels in compatibility mode at the legacy ports and ISA interrupts (the
// primary at 0x1F0/0x3F6 on IRQ 14, the secondary at 0x170/0x376 on IRQ 15), the IDE timing
// registers firmware programs (0x40-0x44), and BAR4, the bus-master block (its registers keep
// what is written; bus-master transfers are not offered: the drives report PIO modes only).
// Both channels decode their ports with or without drives, as the controller does; a channel
// with none reads as zeros (no BSY: firmware and drivers see at once that nothing is there).
using System;
using Hyve.Devices.Pci;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Storage;

/// <summary>The PIIX3 IDE function and its two channels.</summary>
public sealed class IdeController : PciFunction, IDisposable
{
    /// <summary>The channels' ISA interrupts.</summary>
    public const int PrimaryIrq = 14, SecondaryIrq = 15;

    private readonly IdeDrive?[] _drives;

    /// <summary>A controller with up to four drives (primary master and slave, secondary master
    /// and slave; null where there is none), interrupting through <paramref name="isaIrq"/>.</summary>
    public IdeController(IdeDrive?[] drives, Action<int, bool> isaIrq)
        : base(0x8086, 0x7010, 0x00, 0x01_01_80)
    {
        ArgumentNullException.ThrowIfNull(drives);
        ArgumentNullException.ThrowIfNull(isaIrq);
        if (drives.Length != 4)
            throw new ArgumentException("four drive positions", nameof(drives));
        _drives = drives;
        Primary = new IdeChannel(drives[0], drives[1], level => isaIrq(PrimaryIrq, level));
        Secondary = new IdeChannel(drives[2], drives[3], level => isaIrq(SecondaryIrq, level));
        Config[7] = 0x02;    // medium DEVSEL timing
        Writable(0x40, 5);   // IDETIM (both channels), SIDETIM
        IoBar(4, 16, new BusMaster());
    }

    /// <summary>The primary channel.</summary>
    public IdeChannel Primary { get; }

    /// <summary>The secondary channel.</summary>
    public IdeChannel Secondary { get; }

    /// <summary>The drive at <paramref name="position"/> (0-3: primary master, primary slave,
    /// secondary master, secondary slave), if any.</summary>
    public IdeDrive? Drive(int position) => _drives[position];

    /// <summary>Registers both channels' legacy ports.</summary>
    public void Register(PortBus ports)
    {
        ArgumentNullException.ThrowIfNull(ports);
        ports.Register(0x1F0, 8, Primary);
        ports.Register(0x3F6, 1, Primary.ControlPort);
        ports.Register(0x170, 8, Secondary);
        ports.Register(0x376, 1, Secondary.ControlPort);
    }

    /// <summary>Sets the IDE decode-enable bits as firmware leaves them, for a system started
    /// without firmware (its driver checks them before it uses a channel).</summary>
    public void EnableDecode()
    {
        Write(0x41, 1, 0x80);
        Write(0x43, 1, 0x80);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (IdeDrive? d in _drives)
            d?.Dispose();
    }

    // The bus-master block: per channel a command byte, a status byte (interrupt and error bits
    // write-1-to-clear, the drive-capable bits plain) and the PRD table's address.
    private sealed class BusMaster : IPortHandler
    {
        private readonly byte[] _regs = new byte[16];

        public uint Read(ushort offset, int bytes)
        {
            uint v = 0;
            for (int i = 0; i < bytes && offset + i < 16; i++)
                v |= (uint)_regs[offset + i] << (8 * i);
            return v;
        }

        public void Write(ushort offset, int bytes, uint value)
        {
            for (int i = 0; i < bytes && offset + i < 16; i++)
            {
                int at = offset + i;
                byte b = (byte)(value >> (8 * i));
                _regs[at] = (at & 7) switch
                {
                    0 => (byte)(b & 0x09),
                    2 => (byte)((_regs[at] & ~b & 0x06) | (b & 0x60)),
                    4 => (byte)(b & 0xFC),
                    _ => b,
                };
            }
        }
    }
}
