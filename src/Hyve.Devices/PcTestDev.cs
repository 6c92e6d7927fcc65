// QEMU's pc-testdev, so guests written for QEMU run unchanged: a four-byte latch at port 0xE0
// (any width, at any of its four ports), the same latch byte by byte at 0xE8, ports
// 0x2000-0x2017 that set ISA interrupt lines, and 64 KiB of device memory at 0xFF000000 that
// reads back what was written (each access leaves the guest: it is device memory).
using System;
using System.Buffers.Binary;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The pc-testdev register model.</summary>
public sealed class PcTestDev
{
    /// <summary>The latch's port.</summary>
    public const ushort LatchPort = 0xE0;
    /// <summary>The latch's byte-wide view.</summary>
    public const ushort ByteLatchPort = 0xE8;
    /// <summary>The first interrupt-line port (line n at 0x2000 + n).</summary>
    public const ushort IrqPort = 0x2000;
    /// <summary>Interrupt lines the device drives.</summary>
    public const int IrqLines = 24;
    /// <summary>Where its device memory sits.</summary>
    public const ulong MemoryBase = 0xFF00_0000;
    /// <summary>Its device memory's size.</summary>
    public const int MemorySize = 0x1_0000;

    private readonly byte[] _memory = new byte[MemorySize];
    private readonly Action<int, bool> _setIrq;
    private uint _latch;

    /// <summary>A test device raising interrupt lines through <paramref name="setIrq"/>.</summary>
    public PcTestDev(Action<int, bool> setIrq)
    {
        _setIrq = setIrq;
        Latch = new LatchPorts(this, false);
        ByteLatch = new LatchPorts(this, true);
        Irq = new IrqPorts(this);
        Memory = new IoMemory(this);
    }

    /// <summary>The latch's current value.</summary>
    public uint LatchValue => _latch;

    /// <summary>The four ports at 0xE0.</summary>
    public IPortHandler Latch { get; }

    /// <summary>The four ports at 0xE8 (bytes only: wider accesses go byte by byte).</summary>
    public IPortHandler ByteLatch { get; }

    /// <summary>The 24 interrupt-line ports.</summary>
    public IPortHandler Irq { get; }

    /// <summary>The 64 KiB of device memory.</summary>
    public IMmioHandler Memory { get; }

    /// <summary>Registers the device's ports and memory on the buses.</summary>
    public void Register(PortBus ports, MmioBus mmio)
    {
        ports.Register(LatchPort, 4, Latch);
        ports.Register(ByteLatchPort, 4, ByteLatch);
        ports.Register(IrqPort, IrqLines, Irq);
        mmio.Register(MemoryBase, MemorySize, Memory);
    }

    private uint ReadLatch(int offset, int bytes)
    {
        int shift = (offset & 3) * 8;
        return (uint)((_latch >> shift) & Mask(bytes));
    }

    private void WriteLatch(int offset, int bytes, uint value)
    {
        int shift = (offset & 3) * 8;
        uint mask = (uint)(Mask(bytes) << shift);
        _latch = (_latch & ~mask) | ((value << shift) & mask);
    }

    private static ulong Mask(int bytes) => bytes >= 8 ? ulong.MaxValue : (1UL << (8 * bytes)) - 1;

    private sealed class LatchPorts(PcTestDev dev, bool byteWise) : IPortHandler
    {
        public uint Read(ushort offset, int bytes)
        {
            if (!byteWise)
                return dev.ReadLatch(offset, bytes);
            uint v = 0;
            for (int i = 0; i < bytes; i++)
                v |= dev.ReadLatch(offset + i, 1) << (8 * i);
            return v;
        }

        public void Write(ushort offset, int bytes, uint value)
        {
            if (!byteWise)
            {
                dev.WriteLatch(offset, bytes, value);
                return;
            }
            for (int i = 0; i < bytes; i++)
                dev.WriteLatch(offset + i, 1, value >> (8 * i));
        }
    }

    private sealed class IrqPorts(PcTestDev dev) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => (uint)Mask(bytes);

        public void Write(ushort offset, int bytes, uint value) => dev._setIrq(offset, (value & 0xFF) != 0);
    }

    private sealed class IoMemory(PcTestDev dev) : IMmioHandler
    {
        public ulong Read(ulong offset, int bytes)
        {
            Span<byte> buf = stackalloc byte[8];
            buf.Clear();
            int n = (int)Math.Min((ulong)bytes, MemorySize - offset);
            dev._memory.AsSpan((int)offset, n).CopyTo(buf);
            return BinaryPrimitives.ReadUInt64LittleEndian(buf);
        }

        public void Write(ulong offset, int bytes, ulong value)
        {
            Span<byte> buf = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(buf, value);
            int n = (int)Math.Min((ulong)bytes, MemorySize - offset);
            buf[..n].CopyTo(dev._memory.AsSpan((int)offset, n));
        }
    }
}
