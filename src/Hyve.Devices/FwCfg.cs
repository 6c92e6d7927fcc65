// QEMU's fw_cfg in its port form: a 16-bit selector at 0x510 picks an item, byte reads at 0x511
// stream it from the start; reads past the end (and unknown items) return zero. Items as QEMU's
// pc machine gives them: the "QEMU" signature, the interface ID (1: port interface, no DMA),
// the RAM size (64-bit), the CPU counts (16-bit), NOGRAPHIC (the console is a serial line, so
// SeaBIOS writes to COM1), the IRQ 0 override, and the file directory (big-endian count, then
// per file its big-endian size and key and a 56-byte name) with etc/e820.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;
using Hyve.Boot;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The fw_cfg register model.</summary>
public sealed class FwCfg : IPortHandler
{
    /// <summary>The selector port; the data port follows it.</summary>
    public const ushort DefaultPort = 0x510;

    /// <summary>Well-known item keys.</summary>
    public const ushort Signature = 0x00, Id = 0x01, RamSize = 0x03, NoGraphic = 0x04, CpuCount = 0x05, MaxCpus = 0x0F,
        FileDir = 0x19, FirstFile = 0x20, Irq0Override = 0x8002;

    private readonly List<(string Name, ushort Key, int Size)> _files = [];

    private readonly Dictionary<ushort, byte[]> _items = [];
    private readonly Dictionary<ushort, Func<byte[]>> _builders = [];
    private byte[] _current = [];
    private int _offset;

    /// <summary>The items of a machine with <paramref name="ramBytes"/> of RAM and
    /// <paramref name="cpus"/> vCPUs.</summary>
    public FwCfg(ulong ramBytes, int cpus)
    {
        _items[Signature] = "QEMU"u8.ToArray();
        _items[Id] = Le(1, 4);
        _items[RamSize] = Le(ramBytes, 8);
        _items[CpuCount] = Le((ulong)cpus, 2);
        _items[MaxCpus] = Le((ulong)cpus, 2);
        _items[NoGraphic] = Le(1, 2);
        _items[Irq0Override] = Le(1, 4); // the PIT reaches the I/O APIC on pin 2
        _items[FileDir] = new byte[4];
        Select(Signature);
    }

    /// <summary>Sets the numbered item <paramref name="key"/> (below the file keys) to <paramref name="data"/>.</summary>
    public void SetItem(ushort key, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (key is FileDir or (>= FirstFile and < 0x8000))
            throw new ArgumentOutOfRangeException(nameof(key), $"0x{key:X} is the directory's or a file's key");
        _items[key] = data;
        if (Selector == key)
            Select(key);
    }

    /// <summary>Adds a named file (the next free key) and lists it in the directory.</summary>
    public void AddFile(string name, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(data);
        if (Encoding.ASCII.GetByteCount(name) > 55)
            throw new ArgumentException($"fw_cfg file names have at most 55 bytes: {name}", nameof(name));
        var key = (ushort)(FirstFile + _files.Count);
        _items[key] = data;
        _files.Add((name, key, data.Length));
        var dir = new byte[4 + 64 * _files.Count];
        BinaryPrimitives.WriteUInt32BigEndian(dir, (uint)_files.Count);
        for (int i = 0; i < _files.Count; i++)
        {
            Span<byte> entry = dir.AsSpan(4 + 64 * i, 64);
            BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)_files[i].Size);
            BinaryPrimitives.WriteUInt16BigEndian(entry[4..], _files[i].Key);
            Encoding.ASCII.GetBytes(_files[i].Name, entry[8..]);
        }
        _items[FileDir] = dir;
        if (Selector == FileDir)
            Select(FileDir);
    }

    /// <summary>Adds a named file whose bytes <paramref name="build"/> makes again each time the
    /// firmware selects it, as QEMU builds its ACPI tables when they are read, from what the
    /// firmware has programmed by then. Every build must have the first one's length (the
    /// directory lists it).</summary>
    public void AddFile(string name, Func<byte[]> build)
    {
        ArgumentNullException.ThrowIfNull(build);
        AddFile(name, build());
        _builders[_files[^1].Key] = build;
    }

    /// <summary>QEMU's etc/e820: the machine's RAM ranges, each a little-endian 64-bit address and
    /// length and a 32-bit type (1, RAM); the firmware reserves its own areas from it.</summary>
    public static byte[] E820(MemoryMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var ranges = new List<(ulong Base, ulong Length)> { (0, map.LowEnd) };
        if (map.RamBytes > MemoryMap.DeviceWindow)
            ranges.Add((MemoryMap.FourGiB, map.RamBytes - MemoryMap.DeviceWindow));
        var table = new byte[20 * ranges.Count];
        for (int i = 0; i < ranges.Count; i++)
        {
            Span<byte> e = table.AsSpan(20 * i, 20);
            BinaryPrimitives.WriteUInt64LittleEndian(e, ranges[i].Base);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], ranges[i].Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], 1);
        }
        return table;
    }

    /// <summary>The selected key.</summary>
    public ushort Selector { get; private set; }

    /// <summary>Selects <paramref name="key"/> and rewinds to its first byte.</summary>
    public void Select(ushort key)
    {
        Selector = key;
        if (_builders.TryGetValue(key, out Func<byte[]>? build))
        {
            byte[] built = build();
            if (built.Length != _items[key].Length)
                throw new InvalidOperationException($"fw_cfg item 0x{key:X} was rebuilt with {built.Length} bytes, not the {_items[key].Length} its directory entry gives");
            _items[key] = built;
        }
        _current = _items.TryGetValue(key, out byte[]? v) ? v : [];
        _offset = 0;
    }

    /// <summary>The next byte of the selected item (zero past its end).</summary>
    public byte Next() => _offset < _current.Length ? _current[_offset++] : (byte)0;

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes)
    {
        if (offset == 0)
            return Selector;
        // The data port is a byte port: wider reads stream that many bytes, low first.
        uint v = 0;
        for (int i = 0; i < bytes; i++)
            v |= (uint)Next() << (8 * i);
        return v;
    }

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        if (offset == 0)
            Select((ushort)value);
        // Writes to the data port are ignored (QEMU dropped them long ago).
    }

    private static byte[] Le(ulong value, int bytes)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return b.AsSpan(0, bytes).ToArray();
    }
}
