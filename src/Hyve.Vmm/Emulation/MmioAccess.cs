// The single access that crosses the boundary to the device half, and the port the vmm reaches
// its own devices and the guest's registers through.
namespace Hyve.Vmm.Emulation;

/// <summary>
/// One guest-physical access of 1, 2, 4 or 8 bytes. A write carries its data (masked to the size);
/// a read carries 0 out and the result back in the fulfilment.
/// </summary>
/// <param name="Gpa">Guest-physical address of this access.</param>
/// <param name="Bytes">Size in bytes (1, 2, 4 or 8).</param>
/// <param name="Write">True for a write, false for a read.</param>
/// <param name="Data">Write data, or the read result in a fulfilment.</param>
public readonly record struct MmioAccess(ulong Gpa, byte Bytes, bool Write, ulong Data);

/// <summary>Devices the vmm emulates itself (LAPIC, IOAPIC, HPET): tried before the device half.</summary>
public interface IVmmDevices
{
    /// <summary>Reads <paramref name="bytes"/> at <paramref name="gpa"/> if a vmm device owns it.</summary>
    bool TryRead(ulong gpa, int bytes, out ulong value);

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="gpa"/> if a vmm device owns it.</summary>
    bool TryWrite(ulong gpa, int bytes, ulong value);
}

/// <summary>Guest memory as the emulator sees it: linear-to-physical translation and RAM.</summary>
public interface IGuestMemory
{
    /// <summary>Translates a guest-linear address for a read or write; false when the access would fault.</summary>
    bool Translate(ulong gla, bool write, out ulong gpa);

    /// <summary>Reads guest RAM at <paramref name="gpa"/>; false when it is not RAM (device memory).</summary>
    bool ReadRam(ulong gpa, System.Span<byte> data);

    /// <summary>Writes guest RAM at <paramref name="gpa"/>; false when it is not RAM (device memory).</summary>
    bool WriteRam(ulong gpa, System.ReadOnlySpan<byte> data);
}

/// <summary>The vCPU state the emulator reads and writes.</summary>
public interface IVieCpu
{
    /// <summary>General register <paramref name="n"/> (0 = RAX .. 15 = R15), all 64 bits.</summary>
    ulong GetGpr(int n);

    /// <summary>Sets general register <paramref name="n"/>, all 64 bits.</summary>
    void SetGpr(int n, ulong value);

    /// <summary>Instruction pointer.</summary>
    ulong Rip { get; set; }

    /// <summary>RFLAGS.</summary>
    ulong Rflags { get; set; }

    /// <summary>Base of segment register <paramref name="segment"/> (ES..GS).</summary>
    ulong SegmentBase(Hyve.X86.Register segment);
}
