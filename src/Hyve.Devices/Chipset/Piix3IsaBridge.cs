// The PIIX3 PCI-to-ISA bridge at 00:01.0 (the PC's south bridge, function 0 of a multi-function
// device): its identity, which firmware looks for to find the ISA devices, and the registers the
// firmware programs: the PIRQ A-D routing (0x60-0x63, bit 7 disables a route) and the ISA
// settings from 0x4C, with their reset values. PCI interrupt lines A-D arrive here and go to the
// ISA line their route names (to the 8259s and the I/O APIC pin of the same number), following
// the route when the firmware or the system changes it while a line is asserted.
using System;
using Hyve.Devices.Pci;

namespace Hyve.Devices.Chipset;

/// <summary>The PIIX3 ISA bridge's configuration function.</summary>
public sealed class Piix3IsaBridge : PciFunction
{
    /// <summary>PIRQRC[A], the first of the four PCI interrupt routing registers.</summary>
    public const int Pirq = 0x60;

    private readonly Action<int, bool>[]? _lines; // per PIRQ, a source on each ISA line
    private readonly bool[] _pirqHigh = new bool[4];
    private readonly int[] _routedTo = [-1, -1, -1, -1];

    /// <summary>The bridge with its reset values, routing PCI interrupts onto <paramref name="lines"/>.</summary>
    public Piix3IsaBridge(IsaIrqLines? lines = null)
        : base(0x8086, 0x7000, 0x00, 0x06_01_00, headerType: 0x80)
    {
        _lines = lines == null ? null : [lines.Sources(), lines.Sources(), lines.Sources(), lines.Sources()];
        Config[4] = 0x07;
        Config[7] = 0x02;
        Config[0x4C] = 0x4D;     // ISA I/O recovery timer
        Config[0x4E] = 0x03;     // X-bus chip select
        Config[Pirq] = Config[Pirq + 1] = Config[Pirq + 2] = Config[Pirq + 3] = 0x80;
        Config[0x69] = 0x02;     // top of memory
        Config[0x70] = 0x80;     // motherboard IRQ routing: disabled
        Config[0x76] = Config[0x77] = 0x0C; // motherboard DMA: disabled
        Config[0x78] = 0x02;     // programmable chip select
        Config[0xA0] = 0x08;     // SMI control
        Config[0xA8] = 0x0F;     // SMI request
        Writable(0x40, 0xC0);
    }

    /// <summary>The PCI interrupt line (A-D, 0-3) a device in <paramref name="slot"/> raises on
    /// its pin <paramref name="pin"/> (1-4, INTA-INTD) reaches, as QEMU's pc machine and the
    /// firmware's routing table wire the slots.</summary>
    public static int PirqOf(int slot, int pin) => (slot - 1 + pin - 1) & 3;

    /// <summary>Sets PCI interrupt line <paramref name="pirq"/> (0-3).</summary>
    public void SetPirq(int pirq, bool level)
    {
        lock (_pirqHigh)
        {
            _pirqHigh[pirq] = level;
            Drive(pirq);
        }
    }

    /// <inheritdoc/>
    protected override void Written(int at, int bytes)
    {
        if (at <= Pirq + 3 && at + bytes > Pirq)
        {
            lock (_pirqHigh)
            {
                for (int p = 0; p < 4; p++)
                    Drive(p);
            }
        }
    }

    // The line's level onto its current route; a route that moved lets go of the old ISA line.
    private void Drive(int pirq)
    {
        if (_lines == null)
            return;
        int to = Route(pirq);
        if (_routedTo[pirq] >= 0 && _routedTo[pirq] != to)
            _lines[pirq](_routedTo[pirq], false);
        _routedTo[pirq] = to;
        if (to >= 0)
            _lines[pirq](to, _pirqHigh[pirq]);
    }

    /// <summary>The ISA interrupt PCI interrupt <paramref name="pirq"/> (0-3 for A-D) goes to, or
    /// -1 while its route is disabled.</summary>
    public int Route(int pirq)
    {
        byte r = Config[Pirq + pirq];
        return (r & 0x80) != 0 || (r & 0x0F) < 3 ? -1 : r & 0x0F;
    }
}
