// A CFI flash device with Intel's command set (QEMU's pflash_cfi01, as OVMF's variable store
// uses it), one byte wide, over a file: in read-array mode reads return the contents; a write
// is a command: 0x10/0x40 program the next byte written (clearing bits, as flash cells only go
// from 1 to 0), 0x20 then 0xD0 erases the 4 KiB block addressed (back to 0xFF), 0x70 reads the
// status register, 0x50 clears it, 0x90 reads the identifiers, 0x98 the CFI query, 0xFF goes
// back to reading the array. As on QEMU, clearing the status clears its ready bit too, until the
// next program or erase completes: OVMF tells flash from RAM and ROM by reading the status as
// 0x00 after a clear. Programs and erases go to the file at once (flushed when the firmware
// returns to read-array mode, and on dispose), so what a guest stores survives the run.
using System;
using System.IO;
using Hyve.Vmm;

namespace Hyve.Devices.Storage;

/// <summary>A byte-wide CFI flash (Intel command set) backed by a file.</summary>
public sealed class CfiFlash : IMmioHandler, IDisposable
{
    /// <summary>The erase block size.</summary>
    public const int BlockSize = 0x1000;

    private const byte StatusReady = 0x80, StatusEraseError = 0x20, StatusProgramError = 0x10;

    private enum Mode
    {
        ReadArray,
        Status,
        Identifier,
        Query,
        Program,      // the next write is the byte to program
        EraseConfirm, // the next write must be 0xD0
    }

    private readonly byte[] _data;
    private readonly FileStream _file;
    private readonly object _lock = new();
    private Mode _mode;
    private byte _status = StatusReady;
    private bool _dirty;

    /// <summary>A flash over <paramref name="path"/>, whose length (a whole number of blocks) is
    /// the device's size; the file is opened for writing and kept open.</summary>
    public CfiFlash(string path)
    {
        _file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        if (_file.Length == 0 || _file.Length % BlockSize != 0 || _file.Length > 64 << 20)
        {
            long length = _file.Length;
            _file.Dispose();
            throw new InvalidDataException($"a flash image is a whole number of {BlockSize}-byte blocks; this one has {length} bytes");
        }
        _data = new byte[_file.Length];
        _file.ReadExactly(_data);
    }

    /// <summary>The device's size in bytes.</summary>
    public int Size => _data.Length;

    /// <summary>Bytes programmed and blocks erased.</summary>
    public long Programmed { get; private set; }

    /// <inheritdoc cref="Programmed"/>
    public long Erased { get; private set; }

    /// <summary>Writes that were no command this device knows (ignored).</summary>
    public long BadCommands { get; private set; }

    /// <inheritdoc/>
    public ulong Read(ulong offset, int bytes)
    {
        lock (_lock)
        {
            ulong v = 0;
            for (int i = 0; i < bytes; i++)
                v |= (ulong)ReadByte(offset + (ulong)i) << (8 * i);
            return v;
        }
    }

    private byte ReadByte(ulong offset) => _mode switch
    {
        Mode.ReadArray => offset < (ulong)_data.Length ? _data[offset] : (byte)0xFF,
        Mode.Identifier => (offset & 0xFF) switch { 0 => 0x89, 1 => 0x18, _ => 0 }, // Intel, a 28F128-class part
        Mode.Query => Query(offset & 0xFF),
        _ => _status,
    };

    // The CFI query structure's identification: "QRY", Intel's command set (0x0001).
    private static byte Query(ulong at) => at switch
    {
        0x10 => (byte)'Q',
        0x11 => (byte)'R',
        0x12 => (byte)'Y',
        0x13 => 0x01,
        _ => 0,
    };

    /// <inheritdoc/>
    public void Write(ulong offset, int bytes, ulong value)
    {
        lock (_lock)
        {
            byte command = (byte)value;
            switch (_mode)
            {
                case Mode.Program:
                    for (int i = 0; i < bytes && offset + (ulong)i < (ulong)_data.Length; i++)
                        _data[offset + (ulong)i] &= (byte)(value >> (8 * i));
                    if (offset < (ulong)_data.Length)
                        Store((long)offset, Math.Min(bytes, _data.Length - (int)offset));
                    else
                        _status |= StatusProgramError;
                    Programmed += bytes;
                    _status |= StatusReady;
                    _mode = Mode.Status;
                    return;
                case Mode.EraseConfirm:
                    if (command == 0xD0 && offset < (ulong)_data.Length)
                    {
                        long block = (long)offset & ~(long)(BlockSize - 1);
                        _data.AsSpan((int)block, BlockSize).Fill(0xFF);
                        Store(block, BlockSize);
                        Erased++;
                    }
                    else
                    {
                        _status |= StatusEraseError | StatusProgramError; // a bad sequence
                    }
                    _status |= StatusReady;
                    _mode = Mode.Status;
                    return;
            }
            switch (command)
            {
                case 0x10 or 0x40: _mode = Mode.Program; break;
                case 0x20: _mode = Mode.EraseConfirm; break;
                case 0x50: _status = 0; _mode = Mode.ReadArray; break;
                case 0x70: _mode = Mode.Status; break;
                case 0x90: _mode = Mode.Identifier; break;
                case 0x98: _mode = Mode.Query; break;
                case 0xFF:
                    _mode = Mode.ReadArray;
                    Flush();
                    break;
                default:
                    BadCommands++;
                    _mode = Mode.ReadArray;
                    break;
            }
        }
    }

    private void Store(long at, int count)
    {
        _file.Position = at;
        _file.Write(_data, (int)at, count);
        _dirty = true;
    }

    private void Flush()
    {
        if (!_dirty)
            return;
        _file.Flush(flushToDisk: true);
        _dirty = false;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_lock)
        {
            Flush();
            _file.Dispose();
        }
    }
}
