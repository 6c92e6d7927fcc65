// The guest page walk: linear to physical through 32-bit, PAE, 4- and 5-level tables, with the
// permission checks, reserved-bit checks, A/D updates and the #PF error code hardware produces.
using System;
using System.Buffers.Binary;

namespace Hyve.X86;

/// <summary>Physical memory as a page walk and an emulator reach it: RAM only.</summary>
public interface IPhysicalMemory
{
    /// <summary>Reads guest RAM at <paramref name="gpa"/>; false when it is not RAM (device memory).</summary>
    bool ReadRam(ulong gpa, Span<byte> data);

    /// <summary>Writes guest RAM at <paramref name="gpa"/>; false when it is not RAM (device memory).</summary>
    bool WriteRam(ulong gpa, ReadOnlySpan<byte> data);
}

/// <summary>How linear addresses are translated.</summary>
public enum PagingMode : byte
{
    /// <summary>CR0.PG clear: linear is physical.</summary>
    None,
    /// <summary>32-bit paging (4 KiB and, with CR4.PSE, 4 MiB pages).</summary>
    Bits32,
    /// <summary>PAE paging.</summary>
    Pae,
    /// <summary>4-level paging (IA-32e).</summary>
    Level4,
    /// <summary>5-level paging (CR4.LA57).</summary>
    Level5,
}

/// <summary>The kind of access being translated.</summary>
public enum AccessType : byte
{
    /// <summary>A data read.</summary>
    Read,
    /// <summary>A data write (or the read of a read-modify-write).</summary>
    Write,
    /// <summary>An instruction fetch.</summary>
    Fetch,
}

/// <summary>The control state a translation depends on: a snapshot taken at the exit.</summary>
/// <param name="Cr0">CR0.</param>
/// <param name="Cr3">CR3.</param>
/// <param name="Cr4">CR4.</param>
/// <param name="Efer">IA32_EFER.</param>
/// <param name="Cpl">Current privilege level.</param>
/// <param name="MaxPhysicalAddress">Physical-address width (MAXPHYADDR) for reserved-bit checks.</param>
public readonly record struct PagingState(ulong Cr0, ulong Cr3, ulong Cr4, ulong Efer, int Cpl, int MaxPhysicalAddress = 46)
{
    /// <summary>CR0.PE.</summary>
    public const ulong Cr0PE = 1;
    /// <summary>CR0.TS.</summary>
    public const ulong Cr0TS = 1 << 3;
    /// <summary>CR0.EM.</summary>
    public const ulong Cr0EM = 1 << 2;
    /// <summary>CR0.WP.</summary>
    public const ulong Cr0WP = 1 << 16;
    /// <summary>CR0.AM.</summary>
    public const ulong Cr0AM = 1 << 18;
    /// <summary>CR0.PG.</summary>
    public const ulong Cr0PG = 1UL << 31;
    /// <summary>CR4.PSE.</summary>
    public const ulong Cr4PSE = 1 << 4;
    /// <summary>CR4.PAE.</summary>
    public const ulong Cr4PAE = 1 << 5;
    /// <summary>CR4.OSFXSR.</summary>
    public const ulong Cr4OSFXSR = 1 << 9;
    /// <summary>CR4.OSXSAVE.</summary>
    public const ulong Cr4OSXSAVE = 1 << 18;
    /// <summary>CR4.LA57.</summary>
    public const ulong Cr4LA57 = 1 << 12;
    /// <summary>CR4.SMEP.</summary>
    public const ulong Cr4SMEP = 1 << 20;
    /// <summary>CR4.SMAP.</summary>
    public const ulong Cr4SMAP = 1 << 21;
    /// <summary>EFER.LME.</summary>
    public const ulong EferLME = 1 << 8;
    /// <summary>EFER.LMA.</summary>
    public const ulong EferLMA = 1 << 10;
    /// <summary>EFER.NXE.</summary>
    public const ulong EferNXE = 1 << 11;

    /// <summary>Flat 64-bit paging-off state at CPL 0 (what a test without page tables uses).</summary>
    public static PagingState Flat => new(Cr0PE | Cr0WP, 0, Cr4PAE | Cr4OSFXSR, EferLME | EferLMA, 0);

    /// <summary>The paging mode these registers select.</summary>
    public PagingMode Mode =>
        (Cr0 & Cr0PG) == 0 ? PagingMode.None
        : (Cr4 & Cr4PAE) == 0 ? PagingMode.Bits32
        : (Efer & EferLMA) == 0 ? PagingMode.Pae
        : (Cr4 & Cr4LA57) != 0 ? PagingMode.Level5 : PagingMode.Level4;

    /// <summary>Width of canonical linear addresses in IA-32e mode (48, or 57 with LA57).</summary>
    public int LinearBits => (Cr4 & Cr4LA57) != 0 ? 57 : 48;

    /// <summary>Whether <paramref name="la"/> is canonical for this state.</summary>
    public bool IsCanonical(ulong la)
    {
        int shift = 64 - LinearBits;
        return (ulong)((long)(la << shift) >> shift) == la;
    }
}

/// <summary>Outcome of a translation.</summary>
public enum WalkResult : byte
{
    /// <summary>Translated.</summary>
    Ok,
    /// <summary>The access faults (#PF).</summary>
    PageFault,
    /// <summary>A paging structure lies outside RAM; the walk cannot be made in software.</summary>
    TableNotInRam,
}

/// <summary>The page walk.</summary>
public static class PageWalker
{
    private const ulong P = 1, RW = 2, US = 4, A = 1 << 5, D = 1 << 6, PS = 1 << 7, XD = 1UL << 63;

    /// <summary>Reads instruction bytes at linear address <paramref name="la"/> (wrapping at 4 GiB
    /// unless <paramref name="bits64"/>) through the page walk, for messages and checks: stops at
    /// the first byte that does not translate or is not RAM, and returns how many were read.</summary>
    public static int FetchLinear(IPhysicalMemory memory, in PagingState s, ulong la, bool bits64, Span<byte> bytes)
    {
        int n = 0;
        for (; n < bytes.Length; n++)
        {
            ulong at = bits64 ? la + (ulong)n : (uint)(la + (ulong)n);
            if (Translate(memory, in s, at, AccessType.Fetch, false, out ulong pa, out _) != WalkResult.Ok
                || !memory.ReadRam(pa, bytes.Slice(n, 1)))
                break;
        }
        return n;
    }

    /// <summary>
    /// Translates <paramref name="la"/> for an access of type <paramref name="type"/>. On success
    /// sets the accessed bits of every entry used (and the dirty bit of the final one for a write).
    /// A page fault comes back in <paramref name="fault"/> (error code, and CR2 in its address).
    /// <paramref name="supervisorAc"/> is RFLAGS.AC, which lets supervisor data accesses reach
    /// user pages under SMAP.
    /// </summary>
    public static WalkResult Translate(IPhysicalMemory memory, in PagingState s, ulong la, AccessType type, bool supervisorAc, out ulong pa, out GuestFault fault)
    {
        fault = default;
        PagingMode mode = s.Mode;
        if (mode == PagingMode.None)
        {
            pa = la;
            return WalkResult.Ok;
        }
        bool user = s.Cpl == 3;
        bool write = type == AccessType.Write;
        bool fetch = type == AccessType.Fetch;
        bool nxe = (s.Efer & PagingState.EferNXE) != 0 && mode != PagingMode.Bits32;
        ulong physMask = ((1UL << s.MaxPhysicalAddress) - 1) & ~0xFFFUL;
        // Reserved bits of a 64-bit entry: above MAXPHYADDR (bit 63 too when NX is off).
        ulong reservedHigh = ((1UL << 52) - 1) & ~((1UL << s.MaxPhysicalAddress) - 1);
        if (!nxe)
            reservedHigh |= XD;

        Span<ulong> entryAddr = stackalloc ulong[5];
        Span<ulong> entries = stackalloc ulong[5];
        int levels;
        ulong table;
        int entrySize = mode == PagingMode.Bits32 ? 4 : 8;
        if (mode == PagingMode.Pae)
        {
            ulong pdpteAddr = (s.Cr3 & 0xFFFF_FFE0) + ((la >> 30) & 3) * 8;
            if (!ReadEntry(memory, pdpteAddr, 8, out ulong pdpte))
                return NotRam(la, out pa, out fault);
            if ((pdpte & P) == 0)
                return PageFault(la, 0, write, user, fetch && (nxe || Smep(s)), out pa, out fault);
            // PDPTEs have reserved bits 2:1, 8:5 and those above MAXPHYADDR; NX is reserved there too.
            if ((pdpte & (0x1E6UL | (reservedHigh & ~XD) | XD)) != 0)
                return PageFault(la, PageFaultError.Present | PageFaultError.Reserved, write, user, fetch && (nxe || Smep(s)), out pa, out fault);
            table = pdpte & physMask;
            levels = 2;
        }
        else
        {
            levels = mode switch { PagingMode.Bits32 => 2, PagingMode.Level4 => 4, _ => 5 };
            table = mode == PagingMode.Bits32 ? s.Cr3 & 0xFFFF_F000 : s.Cr3 & physMask;
        }

        bool writable = true, userOk = true, executable = true;
        int used = 0;
        ulong entry = 0;
        int level;
        for (level = levels; level >= 1; level--)
        {
            int shift = 12 + (level - 1) * (entrySize == 4 ? 10 : 9);
            ulong index = (la >> shift) & (entrySize == 4 ? 0x3FFUL : 0x1FFUL);
            ulong addr = table + index * (ulong)entrySize;
            if (!ReadEntry(memory, addr, entrySize, out entry))
                return NotRam(la, out pa, out fault);
            entryAddr[used] = addr;
            entries[used++] = entry;
            uint ecFetch = fetch && (nxe || Smep(s)) ? PageFaultError.Fetch : 0;
            if ((entry & P) == 0)
                return PageFault(la, ecFetch, write, user, false, out pa, out fault);
            bool large = level > 1 && (entry & PS) != 0 && (mode != PagingMode.Bits32 || (s.Cr4 & PagingState.Cr4PSE) != 0);
            if (Reserved(entry, level, large, mode, reservedHigh, s))
                return PageFault(la, PageFaultError.Present | PageFaultError.Reserved | ecFetch, write, user, false, out pa, out fault);
            writable &= (entry & RW) != 0;
            userOk &= (entry & US) != 0;
            if (nxe && (entry & XD) != 0)
                executable = false;
            if (level == 1 || large)
                break;
            table = entrySize == 4 ? entry & 0xFFFF_F000 : entry & physMask;
        }

        // Permissions, as the SDM's access-rights section lays them out.
        uint fetchBit = fetch && (nxe || Smep(s)) ? PageFaultError.Fetch : 0;
        bool denied;
        if (user)
            denied = !userOk || (write && !writable) || (fetch && !executable);
        else
        {
            bool wp = (s.Cr0 & PagingState.Cr0WP) != 0;
            denied = (write && !writable && wp)
                || (fetch && !executable)
                || (fetch && userOk && (s.Cr4 & PagingState.Cr4SMEP) != 0)
                || (!fetch && userOk && (s.Cr4 & PagingState.Cr4SMAP) != 0 && !supervisorAc);
        }
        if (denied)
            return PageFault(la, PageFaultError.Present | fetchBit, write, user, false, out pa, out fault);

        // The frame: 4 KiB, or a large page at levels 2 (2/4 MiB) and 3 (1 GiB).
        ulong pageMask = level switch
        {
            1 => 0xFFFUL,
            2 when entrySize == 4 => 0x3F_FFFFUL,
            2 => 0x1F_FFFFUL,
            _ => 0x3FFF_FFFFUL,
        };
        if (entrySize == 4 && level == 2)
            pa = (entry & 0xFFC0_0000UL) | (((entry >> 13) & 0xFF) << 32) | (la & pageMask);
        else
            pa = (entry & physMask & ~pageMask) | (la & pageMask);

        // Accessed on every entry used, dirty on the last for a write.
        for (int i = 0; i < used; i++)
        {
            ulong e = entries[i];
            ulong updated = e | A | (write && i == used - 1 ? D : 0);
            if (updated != e)
                WriteEntry(memory, entryAddr[i], entrySize, updated);
        }
        return WalkResult.Ok;
    }

    private static bool Smep(in PagingState s) => (s.Cr4 & PagingState.Cr4SMEP) != 0;

    private static bool Reserved(ulong entry, int level, bool large, PagingMode mode, ulong reservedHigh, in PagingState s)
    {
        if (mode == PagingMode.Bits32)
        {
            // PS is honoured only with CR4.PSE; bit 21 is reserved in a 4 MiB PDE.
            return large && (entry & (1UL << 21)) != 0;
        }
        if ((entry & reservedHigh) != 0)
            return true;
        if (large)
        {
            // PS at the top level(s) is reserved; 1 GiB pages at level 3 are allowed (PDPE1GB).
            if (level > 3 || (level == 3 && mode == PagingMode.Pae))
                return true;
            ulong lowReserved = level == 2 ? 0x1F_E000UL : 0x3FFF_E000UL; // above the PAT bit
            return (entry & lowReserved) != 0;
        }
        return false;
    }

    private static bool ReadEntry(IPhysicalMemory memory, ulong addr, int size, out ulong entry)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        bool ok = memory.ReadRam(addr, b[..size]);
        entry = BinaryPrimitives.ReadUInt64LittleEndian(b);
        return ok;
    }

    private static void WriteEntry(IPhysicalMemory memory, ulong addr, int size, ulong entry)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, entry);
        memory.WriteRam(addr, b[..size]);
    }

    private static WalkResult PageFault(ulong la, uint code, bool write, bool user, bool fetch, out ulong pa, out GuestFault fault)
    {
        code |= (write ? PageFaultError.Write : 0) | (user ? PageFaultError.User : 0) | (fetch ? PageFaultError.Fetch : 0);
        fault = new GuestFault(ExceptionVector.PF, code, la);
        pa = 0;
        return WalkResult.PageFault;
    }

    private static WalkResult NotRam(ulong la, out ulong pa, out GuestFault fault)
    {
        fault = default;
        pa = la;
        return WalkResult.TableNotInRam;
    }
}
