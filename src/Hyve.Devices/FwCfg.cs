// QEMU's fw_cfg in its port form: a 16-bit selector at 0x510 picks an item, byte reads at 0x511
// stream it from the start; reads past the end return zero. Items: the "QEMU" signature, the
// interface ID (1: port interface, no DMA), the RAM size (64-bit), the CPU count (16-bit) and a
// file directory (empty: big-endian count 0).
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The fw_cfg register model.</summary>
public sealed class FwCfg : IPortHandler
{
    /// <summary>The selector port; the data port follows it.</summary>
    public const ushort DefaultPort = 0x510;

    /// <summary>Well-known item keys.</summary>
    public const ushort Signature = 0x00, Id = 0x01, RamSize = 0x03, CpuCount = 0x05, MaxCpus = 0x0F, FileDir = 0x19;

    private readonly Dictionary<ushort, byte[]> _items = [];
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
        _items[FileDir] = new byte[4];
        Select(Signature);
    }

    /// <summary>The selected key.</summary>
    public ushort Selector { get; private set; }

    /// <summary>Selects <paramref name="key"/> and rewinds to its first byte.</summary>
    public void Select(ushort key)
    {
        Selector = key;
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
