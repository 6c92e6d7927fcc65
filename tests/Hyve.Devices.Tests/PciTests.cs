// PCI bus 0 as QEMU's pc machine has it, against the PCI specification and the Intel 440FX and
// PIIX3/PIIX4 data sheets, hand-derived: configuration mechanism #1, the four functions' IDs and
// classes at their BDFs, the read-only identity, an I/O BAR's sizing and placement through the
// command register, the host bridge's PAM fields, the PIIX3 PIRQ routes, and the PIIX4 PM block
// moving with PMBA and PMREGMISC (PM1 on the device half's ports, the timer on the vmm's), with
// SMM marked as set up.
using System.Collections.Generic;
using Hyve.Devices.Chipset;
using Hyve.Devices.Pci;
using Hyve.Devices.Storage;
using Hyve.Vmm;
using Hyve.Vmm.Devices;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class PciTests
{
    private readonly PortBus _ports = new();
    private readonly PortHooks _vmmPorts = new();
    private readonly PciBus _pci;
    private readonly PowerControl _power;
    private readonly PmTimer _timer = new(new VmClock(hostTime: false));
    private readonly List<SuspendReason> _stops = [];

    public PciTests()
    {
        _pci = new PciBus(_ports);
        _power = new PowerControl(_stops.Add);
        _power.Register(_ports);
        _vmmPorts.Register(PmTimer.DefaultPort, 4, _timer);
        _pci.Add(0, 0, new HostBridge());
        _pci.Add(1, 0, new Piix3IsaBridge());
        _pci.Add(1, 1, new IdeController([null, null, null, null], (_, _) => { }));
    }

    private uint Config(int dev, int fn, int reg, int bytes = 4, int bus = 0)
    {
        _ports.Handle(new InoutAccess(PciBus.AddressPort, 4, false, 0x8000_0000u | (uint)(bus << 16) | (uint)(dev << 11) | (uint)(fn << 8) | (uint)(reg & 0xFC)));
        return _ports.Handle(new InoutAccess((ushort)(0xCFC + (reg & 3)), (byte)bytes, true, 0)).Eax;
    }

    private void SetConfig(int dev, int fn, int reg, int bytes, uint value)
    {
        _ports.Handle(new InoutAccess(PciBus.AddressPort, 4, false, 0x8000_0000u | (uint)(dev << 11) | (uint)(fn << 8) | (uint)(reg & 0xFC)));
        _ports.Handle(new InoutAccess((ushort)(0xCFC + (reg & 3)), (byte)bytes, false, value));
    }

    private uint In(ushort port, byte bytes = 1) => _ports.Handle(new InoutAccess(port, bytes, true, 0)).Eax;

    [Fact]
    public void TheFunctionsOfQemusPcMachineAnswerAtTheirPlaces()
    {
        _pci.Add(1, 3, new Piix4Pm(_ports, _vmmPorts, _power, _timer, PmTimer.DefaultPort, null));
        Assert.Equal(0x1237_8086u, Config(0, 0, 0));
        Assert.Equal(0x0600_0002u, Config(0, 0, 8));          // host bridge, revision 2
        Assert.Equal(0x7000_8086u, Config(1, 0, 0));
        Assert.Equal(0x0601_0000u, Config(1, 0, 8));          // ISA bridge
        Assert.Equal(0x80u, Config(1, 0, 0x0E, 1));          // multi-function: 01.1 and 01.3 are looked for
        Assert.Equal(0x7010_8086u, Config(1, 1, 0));
        Assert.Equal(0x0101_8000u, Config(1, 1, 8));          // IDE, compatibility mode with bus mastering
        Assert.Equal(0x7113_8086u, Config(1, 3, 0));
        Assert.Equal(0x0680_0003u, Config(1, 3, 8));          // PM, revision 3
        Assert.Equal(0x0109u, Config(1, 3, 0x3C, 2));          // INTA, the SCI's line 9
        Assert.Equal(0x1100_1AF4u, Config(0, 0, 0x2C));       // QEMU's subsystem IDs
        Assert.Equal(0x12u, Config(0, 0, 3, 1));               // byte 3 of the ID register
        Assert.Equal(0xFFFF_FFFFu, Config(2, 0, 0));          // an empty slot
        Assert.Equal(0xFFFFu, Config(0, 0, 0, 2, bus: 1));     // no bus 1
        Assert.Equal(2, _pci.AbsentReads);
        // The identity is read-only; the command register takes writes.
        SetConfig(0, 0, 0, 4, 0xFFFF_FFFF);
        Assert.Equal(0x1237_8086u, Config(0, 0, 0));
        SetConfig(0, 0, 4, 2, 0x0107);
        Assert.Equal(0x0107u, Config(0, 0, 4, 2));
        // Without the enable bit the data window reads all ones; the address register reads back.
        _ports.Handle(new InoutAccess(PciBus.AddressPort, 4, false, 0x0000_0800));
        Assert.Equal(0xFFFF_FFFFu, In(0xCFC, 4));
        Assert.Equal(0x0000_0800u, In(PciBus.AddressPort, 4));
    }

    [Fact]
    public void AnIoBarIsSizedThenPlacedWhereTheCommandRegisterAllows()
    {
        // BAR4 of the IDE function: 16 ports. All ones reads back the size mask with the I/O bit.
        Assert.Equal(0x0000_0001u, Config(1, 1, 0x20));
        SetConfig(1, 1, 0x20, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_FFF1u, Config(1, 1, 0x20));
        SetConfig(1, 1, 0x20, 4, 0xC000);
        Assert.Equal(0xC001u, Config(1, 1, 0x20));
        // Not decoded until the command register's I/O enable is set.
        Assert.Equal(0xFFu, In(0xC002));
        SetConfig(1, 1, 4, 2, 0x0001);
        _ports.Handle(new InoutAccess(0xC004, 4, false, 0x1234_5678));
        Assert.Equal(0x1234_5678u & 0xFFFF_FFFC, In(0xC004, 4)); // the PRD table's address is dword aligned
        // Moved: the old ports are free again.
        SetConfig(1, 1, 0x20, 4, 0xD000);
        Assert.Equal(0xFFu, In(0xC004));
        Assert.Equal(0x5678u & 0xFFFC, In(0xD004, 2));
        // A place another device owns is refused and counted.
        var ide = (IdeController)_pci.Function(1, 1)!;
        SetConfig(1, 1, 0x20, 4, PowerControl.ResetPort & 0xFFF0);
        Assert.Equal(1, ide.BarConflicts);
        Assert.Equal(0xFFu, In(0xD004));
    }

    [Fact]
    public void TheHostBridgeKeepsPamAndReportsNoSmm()
    {
        var bridge = (HostBridge)_pci.Function(0, 0)!;
        Assert.Equal(0x02u, Config(0, 0, HostBridge.Smram, 1));
        Assert.Equal(0, bridge.Pam(0xF0000));
        SetConfig(0, 0, HostBridge.Pam0, 1, 0xFF);                 // PAM0: only bits 5:4 exist
        Assert.Equal(0x30u, Config(0, 0, HostBridge.Pam0, 1));
        SetConfig(0, 0, HostBridge.Pam0 + 1, 1, 0x13);             // 0xC0000 read-write, 0xC4000 read-only
        Assert.Equal(3, bridge.Pam(0xFFFF0));
        Assert.Equal(3, bridge.Pam(0xC0000));
        Assert.Equal(1, bridge.Pam(0xC4000));
        SetConfig(0, 0, HostBridge.Smram, 1, 0xFF);                // C_BASE_SEG stays 010
        Assert.Equal(0x7Au, Config(0, 0, HostBridge.Smram, 1));
    }

    [Fact]
    public void PirqRoutesStartDisabled()
    {
        var isa = (Piix3IsaBridge)_pci.Function(1, 0)!;
        Assert.Equal(0x8080_8080u, Config(1, 0, Piix3IsaBridge.Pirq));
        Assert.Equal(-1, isa.Route(0));
        SetConfig(1, 0, Piix3IsaBridge.Pirq, 4, 0x0B0B_0A0A);    // A=10, B=10, C=11, D=11, as SeaBIOS sets them
        Assert.Equal(10, isa.Route(1));
        Assert.Equal(11, isa.Route(3));
    }

    [Fact]
    public void ThePmBlockFollowsPmbaAndItsEnable()
    {
        var pm = new Piix4Pm(_ports, _vmmPorts, _power, _timer, PmTimer.DefaultPort, null);
        _pci.Add(1, 3, pm);
        // At reset: disabled, so neither PM1 nor the timer answers (the timer has left 0x608).
        Assert.Equal(-1, pm.Base);
        Assert.Equal(0x01u, Config(1, 3, Piix4Pm.Pmba));
        Assert.Equal(0x02u, Config(1, 3, 0x5B, 1));              // APMC_EN: SMM needs no set-up
        Assert.False(_vmmPorts.TryIn(0x608, 4, out _));
        // Firmware's sequence: the base, then the enable.
        SetConfig(1, 3, Piix4Pm.Pmba, 4, 0xB000 | 1);
        Assert.Equal(-1, pm.Base);
        SetConfig(1, 3, Piix4Pm.PmRegMisc, 1, 1);
        Assert.Equal(0xB000, pm.Base);
        Assert.True(_vmmPorts.TryIn(0xB008, 4, out _));
        _ports.Handle(new InoutAccess(0xB004, 2, false, 0x2000)); // SLP_EN, sleep type 0: S5
        Assert.Equal([SuspendReason.PowerOff], _stops);
        // Bits 5:0 of the base are not writable; moving frees the old block.
        SetConfig(1, 3, Piix4Pm.Pmba, 2, 0x0625);
        Assert.Equal(0x0601u, Config(1, 3, Piix4Pm.Pmba));
        Assert.Equal(0x600, pm.Base);
        Assert.False(_vmmPorts.TryIn(0xB008, 4, out _));
        Assert.Equal(0xFFFFu, In(0xB004, 2));
        Assert.True(_vmmPorts.TryIn(0x608, 4, out _));
        SetConfig(1, 3, Piix4Pm.PmRegMisc, 1, 0);
        Assert.Equal(-1, pm.Base);
        Assert.False(_vmmPorts.TryIn(0x608, 4, out _));
        // A block whose timer would land on a port another device owns stays off, PM1 included.
        _vmmPorts.Register(0xC08, 1, _timer);
        SetConfig(1, 3, Piix4Pm.Pmba, 2, 0x0C01);
        SetConfig(1, 3, Piix4Pm.PmRegMisc, 1, 1);
        Assert.Equal(-1, pm.Base);
        Assert.Equal(1, pm.Conflicts);
        Assert.Equal(0xFFFFu, In(0xC04, 2));
    }

    [Fact]
    public void ADirectBootFindsThePmBlockWhereFirmwareLeavesIt()
    {
        var pm = new Piix4Pm(_ports, _vmmPorts, _power, _timer, PmTimer.DefaultPort, PowerControl.PmBase);
        Assert.Equal(0x600, pm.Base);
        Assert.Equal(0x0601u, pm.Read(Piix4Pm.Pmba, 4));
        Assert.Equal(1u, pm.Read(Piix4Pm.PmRegMisc, 1));
        Assert.True(_vmmPorts.TryIn(0x608, 4, out _));
        Assert.Equal(1u, In(0x604, 2) & 1);                        // SCI_EN: ACPI mode
    }
}
