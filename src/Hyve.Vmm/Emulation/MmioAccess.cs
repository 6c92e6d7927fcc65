// The single access that crosses the boundary to the device half, and the ports the vmm reaches
// its own devices, guest memory and the guest's registers through.
using System;
using Hyve.X86;

namespace Hyve.Vmm.Emulation;

/// <summary>
/// One guest-physical access of 1, 2, 4 or 8 bytes. A write carries its data (masked to the size);
/// a read carries 0 out and the result back in the fulfilment.
/// </summary>
/// <param name="Gpa">Guest-physical address of this access.</param>
/// <param name="Bytes">Size in bytes (1, 2, 4 or 8).</param>
/// <param name="Write">True for a write, false for a read.</param>
/// <param name="Data">Write data, or the read result in a fulfilment.</param>
public readonly record struct MmioAccess(ulong Gpa, byte Bytes, bool Write, ulong Data)
{
    /// <summary>The size of the next request when <paramref name="left"/> bytes of an access remain:
    /// device memory sees naturally sized pieces, largest first.</summary>
    public static int PieceSize(int left) => left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
}

/// <summary>
/// One port access of 1, 2 or 4 bytes. OUT carries the value (masked to the size); IN carries 0
/// out and the value back in the fulfilment.
/// </summary>
/// <param name="Port">I/O port.</param>
/// <param name="Bytes">Size in bytes (1, 2 or 4).</param>
/// <param name="In">True for IN, false for OUT.</param>
/// <param name="Eax">OUT data, or the IN result in a fulfilment.</param>
public readonly record struct InoutAccess(ushort Port, byte Bytes, bool In, uint Eax);

/// <summary>Devices the vmm emulates itself (LAPIC, IOAPIC, HPET; PIT, PIC, ELCR, RTC, PM timer
/// and port hooks): tried before the device half.</summary>
public interface IVmmDevices
{
    /// <summary>Reads <paramref name="bytes"/> at <paramref name="gpa"/> if a vmm device owns it.</summary>
    bool TryRead(ulong gpa, int bytes, out ulong value);

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="gpa"/> if a vmm device owns it.</summary>
    bool TryWrite(ulong gpa, int bytes, ulong value);

    /// <summary>Reads <paramref name="bytes"/> from <paramref name="port"/> if a vmm device owns it.</summary>
    bool TryIn(ushort port, int bytes, out uint value)
    {
        value = 0;
        return false;
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="port"/> if a vmm device owns it.</summary>
    bool TryOut(ushort port, int bytes, uint value) => false;
}

/// <summary>No vmm devices at all: every device access goes to the device half (for emulating an
/// instruction away from a VM: verification, benchmarks, tests).</summary>
public sealed class NoVmmDevices : IVmmDevices
{
    private NoVmmDevices()
    {
    }

    /// <summary>The one instance.</summary>
    public static NoVmmDevices Instance { get; } = new();

    /// <inheritdoc/>
    public bool TryRead(ulong gpa, int bytes, out ulong value)
    {
        value = 0;
        return false;
    }

    /// <inheritdoc/>
    public bool TryWrite(ulong gpa, int bytes, ulong value) => false;
}

/// <summary>Guest RAM as the emulator sees it (the page walk and the RAM side of an access).
/// Anything that is not RAM is device memory.</summary>
public interface IGuestMemory : IPhysicalMemory;

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

    /// <summary>The hidden part of segment register <paramref name="segment"/> (ES..GS).</summary>
    Segment GetSegment(Register segment);

    /// <summary>SSE register XMM<paramref name="n"/>.</summary>
    UInt128 GetXmm(int n);

    /// <summary>Sets SSE register XMM<paramref name="n"/>.</summary>
    void SetXmm(int n, UInt128 value);

    /// <summary>MMX register MM<paramref name="n"/>.</summary>
    ulong GetMm(int n);

    /// <summary>Sets MMX register MM<paramref name="n"/>.</summary>
    void SetMm(int n, ulong value);

    /// <summary>XCR0, the XSAVE feature mask (x87 only after reset).</summary>
    ulong Xcr0 => 1;

    /// <summary>Bits 255:128 of YMM<paramref name="n"/>; false where this vCPU does not hold them
    /// (the emulator then falls back).</summary>
    bool TryGetYmmHigh(int n, out UInt128 value)
    {
        value = 0;
        return false;
    }

    /// <summary>Sets bits 255:128 of YMM<paramref name="n"/>; false where this vCPU cannot.</summary>
    bool TrySetYmmHigh(int n, UInt128 value) => false;

    /// <summary>Loads segment register <paramref name="segment"/> (CS after a far transfer); false
    /// where this vCPU cannot (the emulator then falls back before changing anything).</summary>
    bool TrySetSegment(Register segment, in Segment value) => false;

    /// <summary>TR's (or, with <paramref name="ldtr"/>, LDTR's) selector for STR and SLDT; false
    /// where this vCPU does not hold it.</summary>
    bool TryGetSystemSelector(bool ldtr, out ushort selector)
    {
        selector = 0;
        return false;
    }

    /// <summary>GDTR (or, with <paramref name="idt"/>, IDTR) for SGDT and SIDT; false where this
    /// vCPU does not hold it (the emulator then falls back).</summary>
    bool TryGetDescriptorTable(bool idt, out Hyve.Vmm.Backend.TableRegister table)
    {
        table = default;
        return false;
    }
}
