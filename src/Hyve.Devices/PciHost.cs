// The PCI host bridge with configuration mechanism #1: a 32-bit address register at 0xCF8
// (enable bit 31, bus, device, function, register) and the data window at 0xCFC-0xCFF. Bus 0
// device 0 function 0 is the host bridge (Intel 440FX IDs, as QEMU's pc machine has, class
// 06/00); any other function reads as absent (all ones), and writes to it are dropped.
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>PCI configuration mechanism #1 with the host bridge on bus 0.</summary>
public sealed class PciHost : IPortHandler
{
    /// <summary>The address register's port; the data window is at +4.</summary>
    public const ushort AddressPort = 0xCF8;

    private readonly byte[] _bridge = new byte[256];
    private uint _address;

    /// <summary>A host bridge with its identity and reset values.</summary>
    public PciHost()
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_bridge, 0x8086);        // vendor: Intel
        BinaryPrimitives.WriteUInt16LittleEndian(_bridge.AsSpan(2), 0x1237); // device: 440FX host bridge
        BinaryPrimitives.WriteUInt16LittleEndian(_bridge.AsSpan(4), 0x0006); // command: memory, bus master
        BinaryPrimitives.WriteUInt16LittleEndian(_bridge.AsSpan(6), 0x0280); // status: fast back-to-back, medium timing
        _bridge[8] = 0x02;   // revision
        _bridge[0x0A] = 0x00; // subclass: host bridge
        _bridge[0x0B] = 0x06; // class: bridge
        _bridge[0x0E] = 0x00; // header type 0, single function
    }

    /// <summary>Configuration reads of functions that do not exist.</summary>
    public long AbsentReads { get; private set; }

    /// <summary>Registers the address register and the data window.</summary>
    public void Register(PortBus ports)
    {
        ports.Register(AddressPort, 1, this); // dword accesses start here; 0xCF9 is the reset register
        ports.Register(AddressPort + 4, 4, new DataWindow(this));
    }

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

    // The selected function's register bytes, or null when nothing answers.
    private byte[]? Selected(out int register)
    {
        register = (int)(_address & 0xFC);
        if ((_address & 0x8000_0000) == 0)
            return null;
        uint bus = (_address >> 16) & 0xFF, device = (_address >> 11) & 0x1F, function = (_address >> 8) & 7;
        return bus == 0 && device == 0 && function == 0 ? _bridge : null;
    }

    private uint ReadData(int offset, int bytes)
    {
        byte[]? regs = Selected(out int register);
        if (regs == null)
        {
            AbsentReads++;
            return (uint)Mask(bytes);
        }
        uint v = 0;
        for (int i = 0; i < bytes; i++)
            v |= (uint)regs[(register + offset + i) & 0xFF] << (8 * i);
        return v;
    }

    private void WriteData(int offset, int bytes, uint value)
    {
        byte[]? regs = Selected(out int register);
        if (regs == null)
            return;
        for (int i = 0; i < bytes; i++)
        {
            int at = (register + offset + i) & 0xFF;
            // Identity, class, header type and BARs of the bridge are read-only; the command
            // register and the chipset registers from 0x40 take writes.
            if (at is 4 or 5 or >= 0x40)
                regs[at] = (byte)(value >> (8 * i));
        }
    }

    private sealed class DataWindow(PciHost host) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => host.ReadData(offset, bytes);

        public void Write(ushort offset, int bytes, uint value) => host.WriteData(offset, bytes, value);
    }
}
