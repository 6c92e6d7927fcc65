// The emulation context outside flat 64-bit code: real mode, 16- and 32-bit protected mode,
// compatibility mode, paging, the faults hardware raises (#GP, #SS, #PF, #AC, #UD, #NM), vector
// and stack instructions, and REP strings continued inside the vmm.
using System;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VieModeTests
{
    private const ulong Mmio = MockGuestMemory.MmioBase;

    private static readonly PagingState Real = new(0, 0, 0, 0, 0);
    private static readonly PagingState Protected = new(PagingState.Cr0PE, 0, PagingState.Cr4OSFXSR, 0, 0);
    private static readonly PagingState Long = PagingState.Flat;

    private static (VieStatus Status, Vie Vie) Run(MockCpu cpu, PagingState paging, ulong gpa, ulong gla, string hex, MockGuestMemory? memory = null, MockDeviceHalf? half = null)
    {
        memory ??= new MockGuestMemory();
        half ??= new MockDeviceHalf();
        var vie = new Vie();
        vie.Begin(gpa, gla, glaValid: true, paging, cpu, memory, hex.Length == 0 ? default : Convert.FromHexString(hex));
        return (half.Run(vie, cpu, new MockVmmDevices(), memory).Status, vie);
    }

    private static MockCpu RealModeCpu()
    {
        var cpu = new MockCpu { Rip = 0x100 };
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            cpu.Segments[s] = Segment.Real(0xFE00);      // base 0xFE000: not the MMIO window, set per test
        cpu.Segments[Register.CS] = Segment.Real(0x1000);
        return cpu;
    }

    [Fact]
    public void RealModeFetchesThroughCsAndWrapsIp()
    {
        var cpu = RealModeCpu();
        var memory = new MockGuestMemory();
        Convert.FromHexString("8900").CopyTo(memory.Ram, 0x10100); // mov [bx+si], ax at 1000:0100
        cpu.Segments[Register.DS] = new Segment(0xF000, Mmio - 0x20, 0xFFFF, 0x93); // a base that reaches device memory
        cpu.Gpr[3] = 0x10;
        cpu.Gpr[6] = 0x14;
        cpu.Gpr[0] = 0xAAAA_BEEF;
        var half = new MockDeviceHalf();
        var (st, _) = Run(cpu, Real, Mmio + 4, Mmio + 4, "", memory, half);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal([new MmioAccess(Mmio + 4, 2, true, 0xBEEF)], half.Requests);
        Assert.Equal(0x102UL, cpu.Rip);

        cpu.Rip = 0xFFFF; // the IP wraps at 16 bits
        Convert.FromHexString("C6").CopyTo(memory.Ram, 0x1FFFF);
        Assert.Equal(VieStatus.Fault, Run(cpu, Real, Mmio, Mmio, "").Status); // the rest is past CS's limit: #GP
        cpu.Rip = 0xFFFE;
        Convert.FromHexString("8900").CopyTo(memory.Ram, 0x1FFFE);
        Assert.Equal(VieStatus.Done, Run(cpu, Real, Mmio + 4, Mmio + 4, "", memory).Status);
        Assert.Equal(0UL, cpu.Rip);
    }

    [Fact]
    public void RealModeChecksTheLimitAndStackAccessesRaiseSs()
    {
        var cpu = RealModeCpu();
        cpu.Segments[Register.DS] = new Segment(0, Mmio - 0xFFFF, 0xFFFF, 0x93);
        cpu.Gpr[3] = 0xFFFF; // mov [bx], ax: two bytes at offset 0xFFFF run past the limit
        var (st, vie) = Run(cpu, Real, Mmio, Mmio, "8907");
        Assert.Equal(VieStatus.Fault, st);
        Assert.Equal(new GuestFault(ExceptionVector.GP, 0), vie.Fault);

        cpu.Segments[Register.SS] = cpu.Segments[Register.DS];
        cpu.Gpr[5] = 0xFFFF; // mov [bp+0], ax: SS-relative
        (st, vie) = Run(cpu, Real, Mmio, Mmio, "894600");
        Assert.Equal(new GuestFault(ExceptionVector.SS, 0), vie.Fault);
        Assert.Equal(0x100UL, cpu.Rip);
    }

    [Fact]
    public void ProtectedModeSegmentsAreChecked()
    {
        var cpu = new MockCpu();
        cpu.Segments[Register.CS] = Segment.Code32;
        cpu.Segments[Register.DS] = new Segment(0x10, Mmio - 0x1000, 0xFFFF, 0x91); // read-only data
        cpu.Gpr[3] = 0x1000;
        var half = new MockDeviceHalf();
        half.Store(Mmio, 0x1234_5678, 4);
        var (st, _) = Run(cpu, Protected, Mmio, Mmio, "8B03", half: half); // mov eax, [ebx]
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(0x1234_5678UL, cpu.Gpr[0]);
        var (st2, vie) = Run(cpu, Protected, Mmio, Mmio, "8903"); // mov [ebx], eax: not writable
        Assert.Equal(VieStatus.Fault, st2);
        Assert.Equal(ExceptionVector.GP, vie.Fault.Vector);

        cpu.Segments[Register.DS] = cpu.Segments[Register.DS] with { Access = 0x1_0000 }; // null selector loaded
        Assert.Equal(VieStatus.Fault, Run(cpu, Protected, Mmio, Mmio, "8B03").Status);

        // 16-bit code: operand and address size 16, and an expand-down stack segment.
        cpu.Segments[Register.CS] = new Segment(0x08, 0, 0xFFFF, 0x9B);
        cpu.Segments[Register.SS] = new Segment(0x18, Mmio - 0x8000, 0x7FFF, 0x97);
        cpu.Gpr[5] = 0x8000;
        half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, Protected, Mmio, Mmio, "894600", half: half).Status); // mov [bp+0], ax
        Assert.Equal(2, half.Requests[0].Bytes);
        cpu.Gpr[5] = 0x7FFF; // at or below the limit of an expand-down segment: #SS
        Assert.Equal(ExceptionVector.SS, Run(cpu, Protected, Mmio, Mmio, "894600").Vie.Fault.Vector);
    }

    [Fact]
    public void CompatibilityModeUsesThirtyTwoBitSegmentsUnderLongMode()
    {
        var cpu = new MockCpu();
        cpu.Segments[Register.CS] = Segment.Code32; // L clear under EFER.LMA
        cpu.Segments[Register.DS] = Segment.FlatData with { Base = 0x100 };
        cpu.Gpr[3] = 0xFFFF_FFFF_0000_0000 | (Mmio - 0x100); // the upper half is ignored
        var half = new MockDeviceHalf();
        var (st, vie) = Run(cpu, Long, Mmio, Mmio, "8903", half: half);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(4, half.Requests[0].Bytes);
        Assert.Equal(4, vie.Instruction.AddressSize); // 32-bit code: 32-bit addressing
        Assert.Equal(Mmio, half.Requests[0].Gpa);
    }

    [Fact]
    public void NonCanonicalAddressesRaiseGpOrSs()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = 0x0000_8000_0000_0000;
        Assert.Equal(new GuestFault(ExceptionVector.GP, 0), Run(cpu, Long, Mmio, Mmio, "8B08").Vie.Fault);
        cpu.Gpr[5] = 0x0000_8000_0000_0000;
        Assert.Equal(new GuestFault(ExceptionVector.SS, 0), Run(cpu, Long, Mmio, Mmio, "8B4D00").Vie.Fault); // [rbp]
    }

    [Fact]
    public void AlignmentCheckAtCplThree()
    {
        var cpu = new MockCpu { Rflags = Rflags.Fixed1 | Rflags.AC };
        cpu.Gpr[0] = Mmio + 2;
        var user = PagingState.Flat with { Cpl = 3, Cr0 = PagingState.Flat.Cr0 | PagingState.Cr0AM };
        Assert.Equal(new GuestFault(ExceptionVector.AC, 0), Run(cpu, user, Mmio + 2, Mmio + 2, "8B08").Vie.Fault);
        Assert.Equal(VieStatus.Done, Run(cpu, user, Mmio + 2, Mmio + 2, "668B08").Status); // 2-byte aligned word
        cpu.Rflags = Rflags.Fixed1;
        Assert.Equal(VieStatus.Done, Run(cpu, user, Mmio + 2, Mmio + 2, "8B08").Status);
    }

    [Fact]
    public void InvalidBytesRaiseUd()
    {
        var vie = new Vie();
        Assert.False(vie.Begin(Mmio, Mmio, true, Bitness.Bits64, Convert.FromHexString("F08B00"))); // LOCK MOV
        Assert.Equal(VieStatus.Fault, vie.Emulate(new MockCpu(), new MockVmmDevices()));
        Assert.Equal(ExceptionVector.UD, vie.Fault.Vector);
    }

    // 4-level tables in the mock's RAM mapping la to pa (present, writable, supervisor).
    private static PagingState MapPage(MockGuestMemory m, ulong la, ulong pa, ulong leafFlags = 3)
    {
        ulong table = 0x80000;
        for (int level = 4; level > 1; level--)
        {
            ulong slot = table + ((la >> (12 + 9 * (level - 1))) & 0x1FF) * 8;
            ulong next = 0x80000 + (ulong)(5 - level) * 0x1000;
            BitConverter.GetBytes(next | 3).CopyTo(m.Ram, (int)slot);
            table = next;
        }
        BitConverter.GetBytes(pa | leafFlags).CopyTo(m.Ram, (int)(table + ((la >> 12) & 0x1FF) * 8));
        return PagingState.Flat with { Cr0 = PagingState.Flat.Cr0 | PagingState.Cr0PG, Cr3 = 0x80000, Efer = PagingState.Flat.Efer | PagingState.EferNXE };
    }

    [Fact]
    public void PageFaultsCarryTheErrorCodeAndAddress()
    {
        var m = new MockGuestMemory();
        const ulong la = 0x4000_0000;
        PagingState paging = MapPage(m, la, Mmio, leafFlags: 1); // read-only
        var cpu = new MockCpu();
        cpu.Gpr[0] = la;
        var (st, vie) = Run(cpu, paging, Mmio, la, "8908", m); // mov [rax], ecx
        Assert.Equal(VieStatus.Done, st); // the exit's own page is known to be the device
        cpu.Gpr[0] = la + 0xFFE;          // a dword split into the next page, which is not mapped
        var half = new MockDeviceHalf();
        (st, vie) = Run(cpu, paging, Mmio + 0xFFE, la + 0xFFE, "8B08", m, half);
        Assert.Equal(VieStatus.Fault, st);
        Assert.Equal(new GuestFault(ExceptionVector.PF, 0, la + 0x1000), vie.Fault);
        Assert.Empty(half.Requests); // both pages are translated before either is touched
    }

    [Fact]
    public void FetchFaultsAreReportedOnlyWhenTheBytesWereNeeded()
    {
        var m = new MockGuestMemory();
        const ulong code = 0x7000_0000;
        PagingState paging = MapPage(m, code, 0x3000);
        Convert.FromHexString("8B").CopyTo(m.Ram, 0x3FFF); // the ModRM would be on the next, unmapped page
        var cpu = new MockCpu { Rip = code + 0xFFF };
        var (st, vie) = Run(cpu, paging, Mmio, Mmio, "", m);
        Assert.Equal(VieStatus.Fault, st);
        Assert.Equal(ExceptionVector.PF, vie.Fault.Vector);
        Assert.Equal(code + 0x1000, vie.Fault.Address);
        Assert.Equal(PageFaultError.Fetch, vie.Fault.ErrorCode & PageFaultError.Fetch);
    }

    [Fact]
    public void VectorMovesUseTwoRequestsAndCheckAlignment()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Mmio + 0x10;
        cpu.Xmm[3] = ((UInt128)0x1111_2222_3333_4444 << 64) | 0x5555_6666_7777_8888;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0x10, Mmio + 0x10, "0F2918", half: half).Status); // movaps [rax], xmm3
        Assert.Equal([new MmioAccess(Mmio + 0x10, 8, true, 0x5555_6666_7777_8888), new MmioAccess(Mmio + 0x18, 8, true, 0x1111_2222_3333_4444)], half.Requests);

        cpu.Gpr[0] = Mmio + 0x18;
        var (st, vie) = Run(cpu, Long, Mmio + 0x18, Mmio + 0x18, "0F2818"); // movaps xmm3, [rax]: misaligned
        Assert.Equal(new GuestFault(ExceptionVector.GP, 0), vie.Fault);
        half = new MockDeviceHalf();
        half.Store(Mmio + 0x18, 0xCAFE, 8);
        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0x18, Mmio + 0x18, "F30F7E18", half: half).Status); // movq xmm3, [rax]
        Assert.Equal((UInt128)0xCAFE, cpu.Xmm[3]);
        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0x18, Mmio + 0x18, "0F6F08", half: half).Status); // movq mm1, [rax]
        Assert.Equal(0xCAFEUL, cpu.Mm[1]);
        cpu.Mm[2] = 0xF00D;
        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0x18, Mmio + 0x18, "0F7E10", half: half).Status); // movd [rax], mm2
        Assert.Equal(new MmioAccess(Mmio + 0x18, 4, true, 0xF00D), half.Requests[^1]);

        var ts = PagingState.Flat with { Cr0 = PagingState.Flat.Cr0 | PagingState.Cr0TS };
        Assert.Equal(ExceptionVector.NM, Run(cpu, ts, Mmio + 0x18, Mmio + 0x18, "F30F7E18").Vie.Fault.Vector);
        var em = PagingState.Flat with { Cr0 = PagingState.Flat.Cr0 | PagingState.Cr0EM };
        Assert.Equal(ExceptionVector.UD, Run(cpu, em, Mmio + 0x18, Mmio + 0x18, "F30F7E18").Vie.Fault.Vector);
    }

    [Fact]
    public void CallAndReturnThroughADeviceStack()
    {
        var cpu = new MockCpu { Rip = 0x40_0000 };
        cpu.Gpr[4] = Mmio + 0x100;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0xF8, Mmio + 0xF8, "E810000000", half: half).Status); // call +0x10
        Assert.Equal(new MmioAccess(Mmio + 0xF8, 8, true, 0x40_0005), half.Requests[^1]);
        Assert.Equal(0x40_0015UL, cpu.Rip);
        Assert.Equal(Mmio + 0xF8, cpu.Gpr[4]);

        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0xF8, Mmio + 0xF8, "C20800", half: half).Status); // ret 8
        Assert.Equal(0x40_0005UL, cpu.Rip);
        Assert.Equal(Mmio + 0x108, cpu.Gpr[4]);

        // call [rax] with the target in device memory and the stack in RAM.
        var memory = new MockGuestMemory();
        cpu.Gpr[4] = 0x9000;
        cpu.Gpr[0] = Mmio + 0x40;
        half.Store(Mmio + 0x40, 0x12_3456, 8);
        Assert.Equal(VieStatus.Done, Run(cpu, Long, Mmio + 0x40, Mmio + 0x40, "FF10", memory, half).Status);
        Assert.Equal(0x12_3456UL, cpu.Rip);
        Assert.Equal(0x40_0007UL, BitConverter.ToUInt64(memory.Ram, 0x8FF8));
    }

    [Fact]
    public void StackWidthFollowsSsInLegacyModes()
    {
        var cpu = new MockCpu();
        cpu.Segments[Register.CS] = new Segment(0x08, 0, 0xFFFF, 0x9B);          // 16-bit code
        cpu.Segments[Register.SS] = new Segment(0x10, Mmio, 0xFFFF, 0x93);        // 16-bit stack based at the device
        cpu.Gpr[4] = 0xDEAD_0000_0000_0000;                                        // SP = 0: the push wraps to 0xFFFE
        cpu.Gpr[1] = 0x1234;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, Protected, Mmio + 0xFFFE, Mmio + 0xFFFE, "51", half: half).Status); // push cx
        Assert.Equal([new MmioAccess(Mmio + 0xFFFE, 2, true, 0x1234)], half.Requests);
        Assert.Equal(0xDEAD_0000_0000_FFFEUL, cpu.Gpr[4]); // only SP changes
        cpu.Gpr[4] = 1; // the slot at 0xFFFF runs past the limit: #SS
        Assert.Equal(ExceptionVector.SS, Run(cpu, Protected, Mmio + 0xFFFF, Mmio + 0xFFFF, "51").Vie.Fault.Vector);

        cpu.Segments[Register.CS] = Segment.Code32;
        cpu.Segments[Register.SS] = Segment.FlatData with { Base = Mmio - 0x100 };
        cpu.Gpr[4] = 0x100;
        half = new MockDeviceHalf();
        half.Store(Mmio, 0xAABB_CCDD, 4);
        Assert.Equal(VieStatus.Done, Run(cpu, Protected, Mmio, Mmio, "8F442404", half: half).Status); // pop dword [esp+4]: addressed after the increment
        Assert.Equal(0x104UL, cpu.Gpr[4]);
        Assert.Equal([new MmioAccess(Mmio, 4, false, 0), new MmioAccess(Mmio + 8, 4, true, 0xAABB_CCDD)], half.Requests);
    }

    [Fact]
    public void RepeatContinuesWithoutANewExit()
    {
        var cpu = new MockCpu();
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        for (int i = 0; i < 4; i++)
            half.Store(Mmio + (ulong)i, (ulong)(0x10 + i), 1);
        cpu.Gpr[6] = Mmio;
        cpu.Gpr[7] = 0x2000;
        cpu.Gpr[1] = 4;
        var vie = new Vie();
        Assert.True(vie.Begin(Mmio, Mmio, true, Bitness.Bits64, Convert.FromHexString("F3A4")));
        VieStatus st;
        int rounds = 0;
        do
        {
            st = vie.Emulate(cpu, new MockVmmDevices(), memory);
            if (st == VieStatus.NeedsDevice)
                vie.Fulfill(half.Answer(vie.Pending));
            rounds++;
        }
        while (st is VieStatus.NeedsDevice or VieStatus.Repeat);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(8, rounds); // a request and a completion per element
        Assert.Equal(new byte[] { 0x10, 0x11, 0x12, 0x13 }, memory.Ram.AsSpan(0x2000, 4).ToArray());
        Assert.Equal(0x40_0002UL, cpu.Rip);
    }
}
