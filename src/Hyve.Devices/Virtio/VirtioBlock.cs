// The virtio block device (virtio 1.x, section 5.2) over a file: reads, writes, flush (to the
// disk, so nothing acknowledged is lost) and the device ID. A request outside the disk, or
// with buffers that are not RAM, completes with an I/O error status; an unknown request type
// with "unsupported".
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Hyve.Vmm;

namespace Hyve.Devices.Virtio;

/// <summary>A virtio-blk device backed by a file.</summary>
public sealed class VirtioBlock : IVirtioDevice, IDisposable
{
    /// <summary>VIRTIO_BLK_F_FLUSH.</summary>
    public const ulong FeatureFlush = 1UL << 9;

    /// <summary>VIRTIO_BLK_F_RO: the device refuses writes.</summary>
    public const ulong FeatureReadOnly = 1UL << 5;

    private const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8;
    private const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupported = 2;
    private const int Sector = 512;

    private readonly GuestMemory _memory;
    private readonly FileStream _file;
    private readonly List<VirtqBuffer> _buffers = [];
    private readonly ulong _sectors;

    /// <summary>A device over <paramref name="path"/> (read-write unless <paramref name="readOnly"/>;
    /// its length is rounded down to whole sectors).</summary>
    public VirtioBlock(GuestMemory memory, string path, bool readOnly = false)
    {
        _memory = memory;
        ReadOnly = readOnly;
        _file = new FileStream(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.RandomAccess);
        _sectors = (ulong)_file.Length / Sector;
    }

    /// <summary>Requests completed, by outcome.</summary>
    public long Completed { get; private set; }

    /// <summary>Requests that failed (I/O error or unsupported).</summary>
    public long Failed { get; private set; }

    /// <inheritdoc/>
    public uint DeviceId => 2;

    /// <inheritdoc/>
    public ulong Features => FeatureFlush | (ReadOnly ? FeatureReadOnly : 0);

    /// <summary>Whether the device refuses writes (it says so with VIRTIO_BLK_F_RO).</summary>
    public bool ReadOnly { get; }

    /// <inheritdoc/>
    public int QueueCount => 1;

    /// <inheritdoc/>
    public uint ReadConfig(int offset, int bytes)
    {
        // capacity (u64, sectors) at 0; the rest of the layout is for features not offered.
        Span<byte> cfg = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(cfg, _sectors);
        if (offset < 0 || offset + bytes > 8)
            return 0;
        uint v = 0;
        for (int i = 0; i < bytes; i++)
            v |= (uint)cfg[offset + i] << (8 * i);
        return v;
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, int bytes, uint value)
    {
    }

    /// <inheritdoc/>
    public void Reset() => _file.Flush(flushToDisk: true);

    /// <inheritdoc/>
    public bool Notify(int index, Virtqueue queue)
    {
        bool used = false;
        while (queue.TryPop(out ushort head, _buffers))
        {
            queue.Push(head, Serve());
            used = true;
        }
        return used;
    }

    // One request: the header from the readable buffers, data, and the status byte at the end of
    // the writable ones. Returns the bytes written to the guest.
    private uint Serve()
    {
        Completed++;
        int firstWritable = _buffers.FindIndex(b => b.DeviceWrites);
        if (_buffers.Count == 0 || firstWritable == 0)
            return Fail();
        VirtqBuffer last = _buffers[^1];
        if (!last.DeviceWrites || last.Length == 0)
            return Fail();
        ulong statusAt = last.Gpa + last.Length - 1;
        Span<byte> header = stackalloc byte[16];
        if (!Gather(header))
            return Finish(statusAt, StatusIoErr, 0);
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        try
        {
            switch (type)
            {
                case TypeIn:
                    {
                        uint written = 0;
                        long pos = checked((long)sector * Sector);
                        foreach (VirtqBuffer b in _buffers)
                        {
                            if (!b.DeviceWrites)
                                continue;
                            int len = (int)(b.Gpa + b.Length - 1 == statusAt ? b.Length - 1 : b.Length);
                            if (pos + len > (long)_sectors * Sector)
                                return Finish(statusAt, StatusIoErr, written);
                            Span<byte> dst = _memory.Span(b.Gpa, len);
                            _file.Position = pos;
                            _file.ReadExactly(dst);
                            pos += len;
                            written += (uint)len;
                        }
                        return Finish(statusAt, StatusOk, written);
                    }
                case TypeOut:
                    {
                        if (ReadOnly)
                            return Finish(statusAt, StatusIoErr, 0); // the driver was told (VIRTIO_BLK_F_RO)
                        long pos = checked((long)sector * Sector);
                        int skip = 16;
                        foreach (VirtqBuffer b in _buffers)
                        {
                            if (b.DeviceWrites)
                                continue;
                            int from = Math.Min(skip, (int)b.Length);
                            skip -= from;
                            int len = (int)b.Length - from;
                            if (len == 0)
                                continue;
                            if (pos + len > (long)_sectors * Sector)
                                return Finish(statusAt, StatusIoErr, 0);
                            _file.Position = pos;
                            _file.Write(_memory.Span(b.Gpa + (ulong)from, len));
                            pos += len;
                        }
                        return Finish(statusAt, StatusOk, 0);
                    }
                case TypeFlush:
                    _file.Flush(flushToDisk: true);
                    return Finish(statusAt, StatusOk, 0);
                case TypeGetId:
                    {
                        VirtqBuffer b = _buffers[firstWritable];
                        byte[] id = new byte[20];
                        Encoding.ASCII.GetBytes("hyve-virtio-blk").CopyTo(id, 0);
                        int len = (int)Math.Min(20, b.Gpa + b.Length - 1 == statusAt ? b.Length - 1 : b.Length);
                        _memory.WriteRam(b.Gpa, id.AsSpan(0, len));
                        return Finish(statusAt, StatusOk, (uint)len);
                    }
                default:
                    return Finish(statusAt, StatusUnsupported, 0);
            }
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or IOException or OverflowException or EndOfStreamException)
        {
            // Buffers that are not RAM, or the file failed: the guest sees an I/O error.
            return Finish(statusAt, StatusIoErr, 0);
        }
    }

    private bool Gather(Span<byte> header)
    {
        int n = 0;
        foreach (VirtqBuffer b in _buffers)
        {
            if (b.DeviceWrites || n == header.Length)
                break;
            int take = (int)Math.Min((uint)(header.Length - n), b.Length);
            if (!_memory.ReadRam(b.Gpa, header.Slice(n, take)))
                return false;
            n += take;
        }
        return n == header.Length;
    }

    private uint Finish(ulong statusAt, byte status, uint written)
    {
        if (status != StatusOk)
            Failed++;
        _memory.WriteRam(statusAt, [status]);
        return written + 1;
    }

    private uint Fail()
    {
        Failed++;
        return 0;
    }

    /// <summary>Flushes and closes the file.</summary>
    public void Dispose()
    {
        _file.Flush(flushToDisk: true);
        _file.Dispose();
    }
}
