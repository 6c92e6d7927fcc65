// Guest-physical memory: RAM regions backed by native (unmanaged, page-aligned) memory; every
// address outside them is device memory.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm;

/// <summary>One RAM region: guest-physical base, size and the host memory behind it.</summary>
/// <param name="Gpa">Guest-physical base (page-aligned).</param>
/// <param name="Size">Size in bytes (a multiple of 4 KiB).</param>
/// <param name="Host">Host address of the first byte.</param>
public readonly record struct RamRegion(ulong Gpa, ulong Size, nint Host);

/// <summary>The guest-physical address space of a VM.</summary>
public sealed unsafe class GuestMemory : IGuestMemory, IDisposable
{
    private RamRegion[] _regions = [];
    private bool _disposed;

    /// <summary>The RAM regions, in the order they were added.</summary>
    public IReadOnlyList<RamRegion> Regions => _regions;

    /// <summary>Serializes the locked read-modify-write instructions of processors that
    /// interpret guest code on several host threads, so they are atomic with respect to each
    /// other as LOCK makes them on hardware.</summary>
    public System.Threading.Lock Atomic { get; } = new();

    /// <summary>Total RAM in bytes.</summary>
    public ulong RamSize { get; private set; }

    /// <summary>Adds <paramref name="size"/> bytes of zeroed RAM at <paramref name="gpa"/>.</summary>
    public void AddRam(ulong gpa, ulong size)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((gpa & 0xFFF) != 0 || size == 0 || (size & 0xFFF) != 0 || gpa + size < gpa)
            throw new ArgumentException($"RAM at {gpa:X} of {size:X} bytes is not page-aligned");
        foreach (RamRegion r in _regions)
        {
            if (gpa < r.Gpa + r.Size && r.Gpa < gpa + size)
                throw new ArgumentException($"RAM at {gpa:X} overlaps the region at {r.Gpa:X}");
        }
        // SAFETY: a fresh allocation of exactly size bytes, zeroed before use, freed in Dispose.
        void* p = NativeMemory.AlignedAlloc((nuint)size, 4096);
        NativeMemory.Clear(p, (nuint)size);
        _regions = [.. _regions, new RamRegion(gpa, size, (nint)p)];
        RamSize += size;
    }

    /// <summary>Whether <paramref name="gpa"/> is RAM.</summary>
    public bool IsRam(ulong gpa) => Find(gpa, 1, out _);

    /// <summary>The host address of the 4 KiB page holding <paramref name="gpa"/>, or 0 when it
    /// is not RAM (for a processor's translation cache; the page stays valid until Dispose).</summary>
    public nint HostPage(ulong gpa) => Find(gpa & ~0xFFFUL, 4096, out byte* p) ? (nint)p : 0;

    /// <summary>The RAM at <paramref name="gpa"/> as a span (it must lie inside one region), for
    /// loaders and devices that move blocks of guest memory.</summary>
    public Span<byte> Span(ulong gpa, int length)
    {
        if (length < 0 || !Find(gpa, (ulong)length, out byte* p))
            throw new ArgumentOutOfRangeException(nameof(gpa), $"{length} bytes at {gpa:X} are not all RAM");
        // SAFETY: Find checked that [gpa, gpa + length) lies inside one live region.
        return new Span<byte>(p, length);
    }

    /// <inheritdoc/>
    public bool ReadRam(ulong gpa, Span<byte> data)
    {
        if (!Find(gpa, (ulong)data.Length, out byte* p))
            return false;
        // SAFETY: Find checked that the range lies inside one live region.
        new ReadOnlySpan<byte>(p, data.Length).CopyTo(data);
        return true;
    }

    /// <inheritdoc/>
    public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
    {
        if (!Find(gpa, (ulong)data.Length, out byte* p))
            return false;
        // SAFETY: Find checked that the range lies inside one live region.
        data.CopyTo(new Span<byte>(p, data.Length));
        return true;
    }

    private bool Find(ulong gpa, ulong length, out byte* p)
    {
        foreach (RamRegion r in _regions)
        {
            ulong off = gpa - r.Gpa;
            if (gpa >= r.Gpa && off < r.Size && length <= r.Size - off)
            {
                p = (byte*)r.Host + off;
                return true;
            }
        }
        p = null;
        return false;
    }

    /// <summary>Frees the RAM.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (RamRegion r in _regions)
        {
            // SAFETY: each region was allocated by AddRam with AlignedAlloc and is freed once.
            NativeMemory.AlignedFree((void*)r.Host);
        }
        _regions = [];
    }
}
