// The guest page walk against hand-built tables: every paging mode and page size, the A/D
// updates, and the #PF error codes the SDM's access-rights rules give.
using System;
using System.Collections.Generic;
using Xunit;

namespace Hyve.X86.Tests;

public sealed class PagingTests
{
    /// <summary>Sparse physical memory: 4 KiB pages that exist once touched by the test.</summary>
    private sealed class Memory : IPhysicalMemory
    {
        private readonly Dictionary<ulong, byte[]> _pages = [];

        public ulong Read(ulong pa, int size)
        {
            Span<byte> b = stackalloc byte[8];
            b.Clear();
            Assert.True(ReadRam(pa, b[..size]));
            return BitConverter.ToUInt64(b);
        }

        public void Write(ulong pa, ulong v, int size = 8) => WriteRam(pa, BitConverter.GetBytes(v).AsSpan(0, size));

        public bool ReadRam(ulong gpa, Span<byte> data)
        {
            if (gpa >= 0x1_0000_0000)
                return false; // beyond "RAM"
            for (int i = 0; i < data.Length; i++)
                data[i] = Page(gpa + (ulong)i)[(gpa + (ulong)i) & 0xFFF];
            return true;
        }

        public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
        {
            for (int i = 0; i < data.Length; i++)
                Page(gpa + (ulong)i)[(gpa + (ulong)i) & 0xFFF] = data[i];
            return true;
        }

        private byte[] Page(ulong pa)
        {
            if (!_pages.TryGetValue(pa & ~0xFFFUL, out byte[]? p))
                _pages[pa & ~0xFFFUL] = p = new byte[0x1000];
            return p;
        }
    }

    private const ulong P = 1, RW = 2, US = 4, A = 0x20, D = 0x40, PS = 0x80, XD = 1UL << 63;
    private const ulong Cr0 = PagingState.Cr0PE | PagingState.Cr0PG | PagingState.Cr0WP;
    private const ulong Long = PagingState.EferLME | PagingState.EferLMA | PagingState.EferNXE;

    private static WalkResult Walk(Memory m, PagingState s, ulong la, AccessType t, out ulong pa, out GuestFault f, bool ac = false) =>
        PageWalker.Translate(m, s, la, t, ac, out pa, out f);

    // 4-level tables for la with the given flags at every level, the leaf at level leafLevel.
    private static (Memory M, PagingState S, ulong[] Entries) FourLevel(ulong la, ulong flags, int leafLevel = 1, ulong frame = 0x0123_4000)
    {
        var m = new Memory();
        ulong[] tables = [0x1000, 0x2000, 0x3000, 0x4000];
        var entries = new ulong[5 - leafLevel];
        int k = 0;
        for (int level = 4; level >= leafLevel; level--)
        {
            ulong slot = tables[4 - level] + ((la >> (12 + 9 * (level - 1))) & 0x1FF) * 8;
            ulong e = level == leafLevel ? frame | flags | (level > 1 ? PS : 0) : tables[5 - level] | (flags & ~XD & ~(D)) | (flags & XD);
            m.Write(slot, e);
            entries[k++] = slot;
        }
        return (m, new PagingState(Cr0, 0x1000, PagingState.Cr4PAE, Long, 0), entries);
    }

    [Fact]
    public void PagingOffIsIdentity()
    {
        var s = new PagingState(PagingState.Cr0PE, 0, 0, 0, 0);
        Assert.Equal(WalkResult.Ok, Walk(new Memory(), s, 0x1234_5678, AccessType.Write, out ulong pa, out _));
        Assert.Equal(0x1234_5678UL, pa);
    }

    [Fact]
    public void FourLevelTranslatesAndSetsAccessedAndDirty()
    {
        const ulong la = 0x0000_7F12_3456_7ABC;
        var (m, s, slots) = FourLevel(la, P | RW);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Read, out ulong pa, out _));
        Assert.Equal(0x0123_4ABCUL, pa);
        foreach (ulong slot in slots)
            Assert.Equal(A, m.Read(slot, 8) & (A | D));
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Write, out _, out _));
        Assert.Equal(A | D, m.Read(slots[^1], 8) & (A | D)); // dirty on the leaf only
        Assert.Equal(A, m.Read(slots[0], 8) & (A | D));
    }

    [Theory]
    [InlineData(2, 0x1F_FFFFUL)]    // 2 MiB
    [InlineData(3, 0x3FFF_FFFFUL)]  // 1 GiB
    public void LargePagesKeepTheLowBitsOfTheAddress(int level, ulong offsetMask)
    {
        const ulong la = 0x0000_0040_5A5A_5A5A;
        ulong frame = level == 2 ? 0x8000_0000UL : 0x1_C000_0000UL;
        var (m, s, _) = FourLevel(la, P | RW, level, frame);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Read, out ulong pa, out _));
        Assert.Equal(frame | (la & offsetMask), pa);
    }

    [Fact]
    public void NotPresentGivesTheAccessKindInTheErrorCode()
    {
        var m = new Memory();
        var s = new PagingState(Cr0, 0x1000, PagingState.Cr4PAE, Long, 0);
        const ulong la = 0x7000_0000;
        Assert.Equal(WalkResult.PageFault, Walk(m, s, la, AccessType.Read, out _, out GuestFault f));
        Assert.Equal(new GuestFault(ExceptionVector.PF, 0, la), f);
        Walk(m, s, la, AccessType.Write, out _, out f);
        Assert.Equal(PageFaultError.Write, f.ErrorCode);
        Walk(m, s with { Cpl = 3 }, la, AccessType.Write, out _, out f);
        Assert.Equal(PageFaultError.Write | PageFaultError.User, f.ErrorCode);
        Walk(m, s, la, AccessType.Fetch, out _, out f);
        Assert.Equal(PageFaultError.Fetch, f.ErrorCode); // NX is enabled, so fetches say so
    }

    [Fact]
    public void ProtectionFaultsFollowTheAccessRightsRules()
    {
        const ulong la = 0x0000_0000_4000_1000;
        // Read-only supervisor page.
        var (m, s, _) = FourLevel(la, P);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Read, out _, out _));
        Assert.Equal(WalkResult.PageFault, Walk(m, s, la, AccessType.Write, out _, out GuestFault f));
        Assert.Equal(PageFaultError.Present | PageFaultError.Write, f.ErrorCode); // CR0.WP
        Assert.Equal(WalkResult.Ok, Walk(m, s with { Cr0 = Cr0 & ~PagingState.Cr0WP }, la, AccessType.Write, out _, out _));
        Walk(m, s with { Cpl = 3 }, la, AccessType.Read, out _, out f);
        Assert.Equal(PageFaultError.Present | PageFaultError.User, f.ErrorCode);

        // User page, read-only: user writes fault even without WP.
        (m, s, _) = FourLevel(la, P | US);
        Walk(m, s with { Cpl = 3, Cr0 = Cr0 & ~PagingState.Cr0WP }, la, AccessType.Write, out _, out f);
        Assert.Equal(PageFaultError.Present | PageFaultError.Write | PageFaultError.User, f.ErrorCode);

        // SMAP: supervisor data access to a user page, unless RFLAGS.AC; SMEP: supervisor fetch.
        (m, s, _) = FourLevel(la, P | RW | US);
        var smap = s with { Cr4 = s.Cr4 | PagingState.Cr4SMAP | PagingState.Cr4SMEP };
        Assert.Equal(WalkResult.PageFault, Walk(m, smap, la, AccessType.Read, out _, out f));
        Assert.Equal(PageFaultError.Present, f.ErrorCode);
        Assert.Equal(WalkResult.Ok, Walk(m, smap, la, AccessType.Read, out _, out _, ac: true));
        Walk(m, smap, la, AccessType.Fetch, out _, out f);
        Assert.Equal(PageFaultError.Present | PageFaultError.Fetch, f.ErrorCode);
        Assert.Equal(WalkResult.Ok, Walk(m, smap with { Cpl = 3 }, la, AccessType.Fetch, out _, out _));

        // NX on any level forbids fetches.
        (m, s, _) = FourLevel(la, P | RW | XD);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Read, out _, out _));
        Walk(m, s, la, AccessType.Fetch, out _, out f);
        Assert.Equal(PageFaultError.Present | PageFaultError.Fetch, f.ErrorCode);
    }

    [Fact]
    public void ReservedBitsFaultWithTheReservedFlag()
    {
        const ulong la = 0x0000_0000_4000_1000;
        var (m, s, slots) = FourLevel(la, P | RW);
        m.Write(slots[^1], m.Read(slots[^1], 8) | (1UL << 50)); // above MAXPHYADDR (46)
        Walk(m, s, la, AccessType.Read, out _, out GuestFault f);
        Assert.Equal(PageFaultError.Present | PageFaultError.Reserved, f.ErrorCode);

        (m, s, slots) = FourLevel(la, P | RW | XD);
        Walk(m, s with { Efer = PagingState.EferLME | PagingState.EferLMA }, la, AccessType.Read, out _, out f);
        Assert.Equal(PageFaultError.Present | PageFaultError.Reserved, f.ErrorCode); // XD without EFER.NXE

        (m, s, _) = FourLevel(la, P | RW, leafLevel: 2, frame: 0x8010_0000); // bit 20 of a 2 MiB frame
        Walk(m, s, la, AccessType.Read, out _, out f);
        Assert.Equal(PageFaultError.Present | PageFaultError.Reserved, f.ErrorCode);
    }

    [Fact]
    public void ThirtyTwoBitPagingWithAndWithoutPse()
    {
        var m = new Memory();
        const ulong la = 0x8040_3123;
        // PDE 0x201 maps 4 MiB at 0x0C00_0000 when PSE is on.
        m.Write(0x5000 + (la >> 22) * 4, 0x0C00_0000 | P | RW | PS, 4);
        var s = new PagingState(Cr0, 0x5000, PagingState.Cr4PSE, 0, 0);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Write, out ulong pa, out _));
        Assert.Equal(0x0C00_0000UL | (la & 0x3F_FFFF), pa);
        Assert.Equal(A | D, m.Read(0x5000 + (la >> 22) * 4, 4) & (A | D));

        // Without PSE the same entry points to a page table at 0x0C00_0000.
        m.Write(0x0C00_0000 + ((la >> 12) & 0x3FF) * 4, 0x0077_7000 | P, 4);
        Assert.Equal(WalkResult.Ok, Walk(m, s with { Cr4 = 0 }, la, AccessType.Read, out pa, out _));
        Assert.Equal(0x0077_7123UL, pa);
    }

    [Fact]
    public void PaeUsesFourPdptes()
    {
        var m = new Memory();
        const ulong la = 0xC020_1456;
        m.Write(0x6000 + 3 * 8, 0x7000 | P);                          // PDPTE 3
        m.Write(0x7000 + ((la >> 21) & 0x1FF) * 8, 0x8000 | P | RW);  // PDE
        m.Write(0x8000 + ((la >> 12) & 0x1FF) * 8, 0xABC_D000 | P | RW | XD);
        var s = new PagingState(Cr0, 0x6000, PagingState.Cr4PAE, PagingState.EferNXE, 0);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Read, out ulong pa, out _));
        Assert.Equal(0xABC_D456UL, pa);
        Assert.Equal(WalkResult.PageFault, Walk(m, s, la, AccessType.Fetch, out _, out GuestFault f));
        Assert.Equal(PageFaultError.Present | PageFaultError.Fetch, f.ErrorCode);
    }

    [Fact]
    public void FiveLevelPagingAndItsCanonicalWidth()
    {
        var m = new Memory();
        const ulong la = 0x00AB_CDEF_1234_5000;
        ulong table = 0x1000;
        for (int level = 5; level > 1; level--)
        {
            m.Write(table + ((la >> (12 + 9 * (level - 1))) & 0x1FF) * 8, (table + 0x1000) | P | RW);
            table += 0x1000;
        }
        m.Write(table + ((la >> 12) & 0x1FF) * 8, 0x9_9000 | P | RW);
        var s = new PagingState(Cr0, 0x1000, PagingState.Cr4PAE | PagingState.Cr4LA57, Long, 0);
        Assert.Equal(PagingMode.Level5, s.Mode);
        Assert.Equal(WalkResult.Ok, Walk(m, s, la, AccessType.Read, out ulong pa, out _));
        Assert.Equal(0x9_9000UL, pa);
        Assert.True(s.IsCanonical(la));
        Assert.False((s with { Cr4 = PagingState.Cr4PAE }).IsCanonical(la));
    }

    [Fact]
    public void TablesOutsideRamCannotBeWalked()
    {
        var s = new PagingState(Cr0, 0x2_0000_0000, PagingState.Cr4PAE, Long, 0);
        Assert.Equal(WalkResult.TableNotInRam, Walk(new Memory(), s, 0x1000, AccessType.Read, out _, out _));
    }
}
