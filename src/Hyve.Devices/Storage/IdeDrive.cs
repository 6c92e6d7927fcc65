// A drive on an IDE channel: a raw image file as an ATA hard disk (512-byte sectors, read-write)
// or as an ATAPI CD/DVD drive (2048-byte blocks, read-only), with the identity and geometry the
// drive reports. The last partial sector of an image reads as zeros.
using System;
using System.IO;
using Microsoft.Win32.SafeHandles;

namespace Hyve.Devices.Storage;

/// <summary>An IDE drive over a disk or CD image.</summary>
public sealed class IdeDrive : IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly long _length;

    /// <summary>Opens <paramref name="path"/> as a hard disk (read-write unless
    /// <paramref name="readOnly"/>) or, with <paramref name="cdrom"/>, as a CD in an ATAPI drive
    /// (read-only).</summary>
    public IdeDrive(string path, bool cdrom, bool readOnly = false)
    {
        Cdrom = cdrom;
        ReadOnly = cdrom || readOnly;
        _file = File.OpenHandle(path, FileMode.Open, ReadOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.Read);
        _length = RandomAccess.GetLength(_file);
        if (_length == 0)
        {
            _file.Dispose();
            throw new InvalidDataException($"{path}: the image is empty");
        }
        Sectors = (_length + BlockSize - 1) / BlockSize;
        // The geometry a BIOS sees for a disk: 16 heads and 63 sectors per track, as many
        // cylinders as fit (at most 16,383, the ATA limit; the rest is reached by LBA).
        Heads = 16;
        SectorsPerTrack = 63;
        Cylinders = (int)Math.Clamp(Sectors / (16 * 63), 1, 16383);
    }

    /// <summary>Whether the drive is an ATAPI CD/DVD drive.</summary>
    public bool Cdrom { get; }

    /// <summary>Whether writes are refused (a CD, or a disk given read-only).</summary>
    public bool ReadOnly { get; }

    /// <summary>Bytes per sector (512) or per block (2048 for a CD).</summary>
    public int BlockSize => Cdrom ? 2048 : 512;

    /// <summary>The image's size in sectors (blocks for a CD).</summary>
    public long Sectors { get; }

    /// <summary>The default geometry (disks).</summary>
    public int Cylinders { get; }

    /// <summary>The default geometry (disks).</summary>
    public int Heads { get; }

    /// <summary>The default geometry (disks).</summary>
    public int SectorsPerTrack { get; }

    /// <summary>Reads <paramref name="into"/>.Length bytes from byte <paramref name="offset"/>
    /// (zeros past the end of the file).</summary>
    public void Read(long offset, Span<byte> into)
    {
        int n = 0;
        while (n < into.Length && offset + n < _length)
        {
            int got = RandomAccess.Read(_file, into[n..], offset + n);
            if (got <= 0)
                break;
            n += got;
        }
        into[n..].Clear();
    }

    /// <summary>Writes <paramref name="data"/> at byte <paramref name="offset"/> (disks).</summary>
    public void Write(long offset, ReadOnlySpan<byte> data) => RandomAccess.Write(_file, data, offset);

    /// <summary>Makes written data durable (FLUSH CACHE).</summary>
    public void Flush()
    {
        if (!Cdrom)
            RandomAccess.FlushToDisk(_file);
    }

    /// <inheritdoc/>
    public void Dispose() => _file.Dispose();
}
