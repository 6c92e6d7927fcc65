// PCI configuration mechanism #1 on bus 0: a 32-bit address register at 0xCF8 (enable bit 31,
// bus, device, function, register) and the data window at 0xCFC-0xCFF, dispatching to the
// functions plugged into the bus. A function nobody plugged in reads as all ones (counted) and
// drops writes, as an empty slot does.
using System;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Pci;

/// <summary>PCI bus 0 behind configuration mechanism #1.</summary>
public sealed class PciBus : IPortHandler
{
    /// <summary>The address register's port; the data window is at +4.</summary>
    public const ushort AddressPort = 0xCF8;

    private readonly PciFunction?[] _functions = new PciFunction?[32 * 8];
    private readonly PortBus _ports;
    private readonly MmioBus? _mmio;
    private uint _address;

    /// <summary>An empty bus whose functions place their I/O BARs on <paramref name="ports"/> and
    /// their memory BARs on <paramref name="mmio"/>; registers the address register and the data
    /// window on the ports.</summary>
    public PciBus(PortBus ports, MmioBus? mmio = null)
    {
        ArgumentNullException.ThrowIfNull(ports);
        _ports = ports;
        _mmio = mmio;
        ports.Register(AddressPort, 1, this); // dword accesses start here; 0xCF9 is the reset register
        ports.Register(AddressPort + 4, 4, new DataWindow(this));
    }

    /// <summary>Configuration reads of functions that do not exist.</summary>
    public long AbsentReads { get; private set; }

    /// <summary>Plugs <paramref name="function"/> in at bus 0, <paramref name="device"/>.<paramref name="fn"/>.</summary>
    public void Add(int device, int fn, PciFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        if (_functions[device * 8 + fn] != null)
            throw new InvalidOperationException($"PCI 00:{device:x2}.{fn} is taken");
        function.Attach(_ports, _mmio);
        _functions[device * 8 + fn] = function;
    }

    /// <summary>The function at bus 0, <paramref name="device"/>.<paramref name="fn"/>, if any.</summary>
    public PciFunction? Function(int device, int fn) => _functions[device * 8 + fn];

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes) =>
        offset == 0 && bytes == 4 ? _address : (uint)((_address >> (8 * offset)) & Mask(bytes));

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        // Only a full 32-bit write sets the address (narrower ones go to other ISA devices on
        // real chipsets; here there are none).
        if (offset == 0 && bytes == 4)
            _address = value & 0x80FF_FFFC;
    }

    private static ulong Mask(int bytes) => bytes >= 4 ? 0xFFFF_FFFF : (1UL << (8 * bytes)) - 1;

    // The selected function, or null when nothing answers.
    private PciFunction? Selected(out int register)
    {
        register = (int)(_address & 0xFC);
        if ((_address & 0x8000_0000) == 0 || ((_address >> 16) & 0xFF) != 0)
            return null;
        return _functions[(_address >> 8) & 0xFF];
    }

    private uint ReadData(int offset, int bytes)
    {
        PciFunction? f = Selected(out int register);
        if (f == null)
        {
            AbsentReads++;
            return (uint)Mask(bytes);
        }
        return f.Read(register + offset, bytes);
    }

    private void WriteData(int offset, int bytes, uint value) => Selected(out int register)?.Write(register + offset, bytes, value);

    private sealed class DataWindow(PciBus bus) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => bus.ReadData(offset, bytes);

        public void Write(ushort offset, int bytes, uint value) => bus.WriteData(offset, bytes, value);
    }
}
