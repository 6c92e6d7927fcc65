// The PIIX4 power-management function at 00:01.3: where the ACPI PM I/O block lives is the
// firmware's choice, made through PMBA (0x40, a 64-port block) and PMREGMISC (0x80 bit 0
// enables it); the PM1a event and control registers (the device half's PowerControl) and the PM
// timer at +8 (the vmm's) move there together. DEVACTB's APMC_EN (byte 0x5B bit 1) reads set
// from reset, as QEMU's machine without SMM presets it: firmware then knows SMM needs no set-up
// (SeaBIOS would otherwise wait for an SMI that never comes). The SCI is wired to IRQ 9.
using Hyve.Devices.Pci;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Chipset;

/// <summary>The PIIX4 ACPI / power-management function.</summary>
public sealed class Piix4Pm : PciFunction
{
    /// <summary>The PM base address register and the PM I/O space enable register.</summary>
    public const int Pmba = 0x40, PmRegMisc = 0x80;

    /// <summary>The size of the PM I/O block.</summary>
    public const int BlockSize = 64;

    /// <summary>Where the PM timer sits in the block.</summary>
    public const int TimerOffset = 8;

    private readonly PortBus _ports;
    private readonly PortHooks _vmmPorts;
    private readonly IPortHandler _pm1, _timer;
    private int _placed = -1;

    /// <summary>The function over the PM1 registers <paramref name="pm1"/> (6 ports, placed on
    /// <paramref name="ports"/>) and the timer <paramref name="timer"/> (4 ports, on the vmm's
    /// <paramref name="vmmPorts"/>, where it is registered at <paramref name="timerNow"/> when
    /// not negative). With <paramref name="placeAt"/> the block starts enabled there, as firmware
    /// would leave it for an operating system started directly; otherwise it is off, as at reset.</summary>
    public Piix4Pm(PortBus ports, PortHooks vmmPorts, IPortHandler pm1, IPortHandler timer, int timerNow, ushort? placeAt)
        : base(0x8086, 0x7113, 0x03, 0x06_80_00, interruptPin: 1)
    {
        _ports = ports;
        _vmmPorts = vmmPorts;
        _pm1 = pm1;
        _timer = timer;
        vmmPorts.Move(timer, 4, timerNow, -1);
        Config[Pmba] = 0x01;      // an I/O base
        Config[0x5B] = 0x02;      // APMC_EN: SMM needs no set-up
        Config[0x3C] = 9;         // the SCI's line
        Writable(Pmba, 1, 0xC0);
        Writable(Pmba + 1, 1);
        Writable(0x44, 0x14);     // device resources, activity and GPI routing
        Writable(0x58, 3);
        Writable(0x5C, 0x24);
        Writable(PmRegMisc, 1, 0x01);
        Writable(0x90, 4, 0xF0);  // SMBus base (nothing answers there)
        Writable(0xD2, 1, 0x0F);
        if (placeAt is ushort at)
        {
            Config[Pmba] = (byte)(at | 1);
            Config[Pmba + 1] = (byte)(at >> 8);
            Config[PmRegMisc] = 1;
        }
        Place();
    }

    /// <summary>Where the PM block is now, or -1 while it is disabled.</summary>
    public int Base => _placed;

    /// <summary>Placements refused because another device owns a port of the block.</summary>
    public long Conflicts { get; private set; }

    /// <inheritdoc/>
    protected override void Written(int at, int bytes)
    {
        if ((at <= Pmba + 3 && at + bytes > Pmba) || at == PmRegMisc)
            Place();
    }

    private void Place()
    {
        int want = (Config[PmRegMisc] & 1) != 0 ? (Config[Pmba] | (Config[Pmba + 1] << 8)) & 0xFFC0 : -1;
        if (want == 0)
            want = -1;
        if (want == _placed)
            return;
        // Both parts move, or the block is left off (and the conflict counted).
        static int Timer(int block) => block < 0 ? -1 : block + TimerOffset;
        int from = _placed;
        _placed = -1;
        if (!_ports.Move(_pm1, 6, from, want))
        {
            _vmmPorts.Move(_timer, 4, Timer(from), -1);
            Conflicts++;
            return;
        }
        if (!_vmmPorts.Move(_timer, 4, Timer(from), Timer(want)))
        {
            _ports.Move(_pm1, 6, want, -1);
            Conflicts++;
            return;
        }
        _placed = want;
    }
}
