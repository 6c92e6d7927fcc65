// One PCI function's configuration space: the 256-byte header with its identity, the command
// and status registers, the interrupt line and pin, the device-specific registers from 0x40 and
// I/O BARs. Each byte has a write mask (identity and class are read-only); a BAR answers the
// firmware's all-ones sizing write with its size mask, and an I/O BAR's ports follow its address
// and the command register's I/O enable, moved on the port bus as the guest programs them; a
// memory BAR (32- or 64-bit) follows its address and the memory enable on the MMIO bus. Functions
// with capabilities chain them from 0x34 (the status register's capability-list bit set).
using System;
using System.Buffers.Binary;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Pci;

/// <summary>A PCI function's configuration registers (type 0 header).</summary>
public abstract class PciFunction
{
    /// <summary>The command register's I/O space enable.</summary>
    public const ushort CommandIo = 0x0001;

    /// <summary>The command register's memory space enable.</summary>
    public const ushort CommandMemory = 0x0002;

    /// <summary>The command register's bus-master enable.</summary>
    public const ushort CommandBusMaster = 0x0004;

    /// <summary>The command register's INTx disable.</summary>
    public const ushort CommandIntxDisable = 0x0400;

    private readonly byte[] _config = new byte[256];
    private readonly byte[] _writable = new byte[256];
    private readonly PlacedBar?[] _bars = new PlacedBar?[6];
    private PortBus? _ports;
    private MmioBus? _mmio;
    private int _lastCapability, _nextCapability = 0x40;

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

    /// <summary>BARs whose new address overlapped ports or memory another device owns (left unmapped).</summary>
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
        _bars[index] = new PlacedBar((uint)size, handler, null, Wide: false);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(0x10 + 4 * index), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(0x10 + 4 * index), ~(uint)(size - 1) & 0xFFFF_FFFC);
    }

    /// <summary>Declares BAR <paramref name="index"/> (and, for a 64-bit BAR, the next one as its
    /// upper half) as <paramref name="size"/> bytes of memory (a power of two, at least 4 KiB: the
    /// vmm hands device memory over page by page) answered by <paramref name="handler"/>.</summary>
    protected void MemoryBar(int index, uint size, IMmioHandler handler, bool wide, bool prefetchable)
    {
        if (size < 0x1000 || (size & (size - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(size), "a memory BAR here is a power of two of at least 4 KiB");
        _bars[index] = new PlacedBar(size, null, handler, wide);
        uint low = (wide ? 4u : 0u) | (prefetchable ? 8u : 0u);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(0x10 + 4 * index), low);
        BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(0x10 + 4 * index), ~(size - 1) & 0xFFFF_FFF0);
        if (wide)
            BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(0x14 + 4 * index), 0xFFFF_FFFF);
    }

    /// <summary>Appends a capability with ID <paramref name="id"/> and <paramref name="body"/>
    /// (the bytes after the ID and next pointer) to the capability list; returns its offset.</summary>
    protected int Capability(byte id, ReadOnlySpan<byte> body)
    {
        int at = _nextCapability;
        if (at + 2 + body.Length > 0x100)
            throw new InvalidOperationException("the capabilities do not fit in the configuration header");
        _config[at] = id;
        body.CopyTo(_config.AsSpan(at + 2));
        if (_lastCapability == 0)
            _config[0x34] = (byte)at;
        else
            _config[_lastCapability + 1] = (byte)at;
        _config[6] |= 0x10;
        _lastCapability = at;
        _nextCapability = (at + 2 + body.Length + 3) & ~3;
        return at;
    }

    /// <summary>Connects the function to the port bus its I/O BARs are placed on and the MMIO bus
    /// its memory BARs are placed on.</summary>
    public void Attach(PortBus ports, MmioBus? mmio = null)
    {
        _ports = ports;
        _mmio = mmio;
    }

    /// <summary>Where BAR <paramref name="index"/> is placed now, or -1.</summary>
    public long BarAddress(int index) => _bars[index]?.Placed ?? -1;

    /// <summary>Reads <paramref name="bytes"/> configuration bytes from <paramref name="at"/>.</summary>
    public uint Read(int at, int bytes)
    {
        Reading(at, bytes);
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

    /// <summary>Called before a configuration read, for registers whose value comes from elsewhere.</summary>
    protected virtual void Reading(int at, int bytes)
    {
    }

    /// <summary>Called after a configuration write, for registers with side effects.</summary>
    protected virtual void Written(int at, int bytes)
    {
    }

    // Every BAR where its address and the command register's enable now say (nothing while it is
    // disabled or at 0; a place that overlaps another device's ports or memory is refused and
    // counted, as two decoders answering one address would be a bus conflict).
    private void PlaceBars()
    {
        for (int i = 0; i < _bars.Length; i++)
        {
            if (_bars[i] is not { } bar || (bar.Memory ? _mmio == null : _ports == null))
                continue;
            ulong address = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(0x10 + 4 * i)) & (bar.Memory ? 0xFFFF_FFF0u : 0xFFFF_FFFCu);
            if (bar.Wide)
                address |= (ulong)BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(0x14 + 4 * i)) << 32;
            ulong end = address + bar.Size; // an I/O BAR must end within the 64 KiB port space
            bool fits = address != 0 && (bar.Memory ? end - 1 >= address : end <= 0x1_0000);
            long want = (Command & (bar.Memory ? CommandMemory : CommandIo)) != 0 && fits ? (long)address : -1;
            if (want == bar.Placed)
                continue;
            bool placed = bar.Mmio is { } mmio
                ? _mmio!.Move(mmio, bar.Size, bar.Placed, want)
                : _ports!.Move(bar.Port!, (int)bar.Size, (int)bar.Placed, (int)want);
            bar.Placed = placed ? want : -1;
            if (!placed)
                BarConflicts++;
        }
    }

    // A BAR's size and handler: ports or memory (a 64-bit one spans two BARs), and where it is.
    private sealed record PlacedBar(uint Size, IPortHandler? Port, IMmioHandler? Mmio, bool Wide)
    {
        public bool Memory => Mmio != null;

        public long Placed { get; set; } = -1;
    }
}
