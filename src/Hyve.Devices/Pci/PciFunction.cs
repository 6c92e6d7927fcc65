// One PCI function's configuration space: the 256-byte header with its identity, the command
// and status registers, the interrupt line and pin, the device-specific registers from 0x40 and
// I/O BARs. Each byte has a write mask (identity and class are read-only); a BAR answers the
// firmware's all-ones sizing write with its size mask, and an I/O BAR's ports follow its address
// and the command register's I/O enable, moved on the port bus as the guest programs them.
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Pci;

/// <summary>A PCI function's configuration registers (type 0 header).</summary>
public abstract class PciFunction
{
    /// <summary>The command register's I/O space enable.</summary>
    public const ushort CommandIo = 0x0001;

    private readonly byte[] _config = new byte[256];
    private readonly byte[] _writable = new byte[256];
    private readonly PlacedBar?[] _bars = new PlacedBar?[6];
    private PortBus? _ports;

    /// <summary>A function with its identity: IDs, revision, the 24-bit class code (class,
    /// subclass, programming interface) and header type (bit 7: a multi-function device).</summary>
    protected PciFunction(ushort vendor, ushort device, byte revision, uint classCode, byte headerType = 0, byte interruptPin = 0)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_config, vendor);
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(2), device);
        _config[8] = revision;
        _config[9] = (byte)classCode;
        _config[0x0A] = (byte)(classCode >> 8);
        _config[0x0B] = (byte)(classCode >> 16);
        _config[0x0E] = headerType;
        // The subsystem IDs every function of QEMU's machine carries (Red Hat, QEMU).
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(0x2C), 0x1AF4);
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(0x2E), 0x1100);
        _config[0x3D] = interruptPin;
        _writable[4] = 0x07;    // I/O, memory, bus master
        _writable[5] = 0x05;    // SERR, INTx disable
        _writable[0x0C] = 0xFF; // cache line size
        _writable[0x0D] = 0xFF; // latency timer
        _writable[0x3C] = 0xFF; // interrupt line
    }

    /// <summary>I/O BARs whose new address overlapped ports another device owns (left unmapped).</summary>
    public long BarConflicts { get; private set; }

    /// <summary>The raw configuration bytes (for the function's own registers).</summary>
    protected Span<byte> Config => _config;

    /// <summary>The command register.</summary>
    public ushort Command => BinaryPrimitives.ReadUInt16LittleEndian(_config.AsSpan(4));

    /// <summary>Makes <paramref name="count"/> bytes from <paramref name="at"/> writable with
    /// <paramref name="mask"/> (bits set in it take the guest's writes).</summary>
    protected void Writable(int at, int count, byte mask = 0xFF) => _writable.AsSpan(at, count).Fill(mask);

    /// <summary>Declares BAR <paramref name="index"/> as <paramref name="size"/> ports (a power of
    /// two, at least 4) answered by <paramref name="handler"/> once the guest places them.</summary>
    protected void IoBar(int index, int size, IPortHandler handler)
    {
        if (size < 4 || (size & (size - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(size), "an I/O BAR is a power of two of at least 4 ports");
        _bars[index] = new PlacedBar(size, handler);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(0x10 + 4 * index), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(0x10 + 4 * index), ~(uint)(size - 1) & 0xFFFF_FFFC);
    }

    /// <summary>Connects the function to the port bus its I/O BARs are placed on.</summary>
    public void Attach(PortBus ports) => _ports = ports;

    /// <summary>Reads <paramref name="bytes"/> configuration bytes from <paramref name="at"/>.</summary>
    public uint Read(int at, int bytes)
    {
        uint v = 0;
        for (int i = 0; i < bytes; i++)
            v |= (uint)_config[(at + i) & 0xFF] << (8 * i);
        return v;
    }

    /// <summary>Writes <paramref name="bytes"/> configuration bytes at <paramref name="at"/>
    /// through the write masks, then lets the function and its BARs follow.</summary>
    public void Write(int at, int bytes, uint value)
    {
        for (int i = 0; i < bytes; i++)
        {
            int r = (at + i) & 0xFF;
            byte m = _writable[r];
            _config[r] = (byte)((_config[r] & ~m) | ((byte)(value >> (8 * i)) & m));
        }
        if (at <= 0x27 && at + bytes > 4)
            PlaceBars();
        Written(at, bytes);
    }

    /// <summary>Called after a configuration write, for registers with side effects.</summary>
    protected virtual void Written(int at, int bytes)
    {
    }

    // Every I/O BAR where its address and the I/O enable now say (nothing while it is disabled
    // or at 0; a place that overlaps another device's ports is refused and counted, as two
    // decoders answering one address would be a bus conflict).
    private void PlaceBars()
    {
        for (int i = 0; i < _bars.Length; i++)
        {
            if (_bars[i] is not { } bar || _ports == null)
                continue;
            uint address = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(0x10 + 4 * i)) & 0xFFFF_FFFC;
            int want = (Command & CommandIo) != 0 && address != 0 && address + (uint)bar.Size <= 0x1_0000 ? (int)address : -1;
            if (want == bar.Placed)
                continue;
            bool placed = _ports.Move(bar.Handler, bar.Size, bar.Placed, want);
            bar.Placed = placed ? want : -1;
            if (!placed)
                BarConflicts++;
        }
    }

    private sealed class PlacedBar(int size, IPortHandler handler)
    {
        public int Size { get; } = size;
        public IPortHandler Handler { get; } = handler;
        public int Placed { get; set; } = -1;
    }
}
