// The emulator on instructions firmware and drivers point at device memory beyond the data
// moves: PUSHA/POPA and ENTER/LEAVE with the stack in device memory, SGDT/SIDT/SMSW into device
// memory, MOVNTDQA from it. Expected requests and registers derived by hand from the SDM.
using System;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VieLegacyTests
{
    private const ulong Mmio = MockGuestMemory.MmioBase;

    private static readonly PagingState Protected = new(PagingState.Cr0PE | 0x20, 0, PagingState.Cr4OSFXSR, 0, 0);

    private static (VieStatus Status, Vie Vie) Run(MockCpu cpu, PagingState paging, ulong gpa, string hex, MockDeviceHalf half, MockGuestMemory? memory = null)
    {
        memory ??= new MockGuestMemory();
        var vie = new Vie();
        Assert.True(vie.Begin(gpa, gpa, glaValid: true, paging, cpu, memory, Convert.FromHexString(hex)));
        return (half.Run(vie, cpu, new MockVmmDevices(), memory).Status, vie);
    }

    // A 32-bit protected-mode vCPU whose stack (SS based at 0) sits at the device.
    private static MockCpu Cpu32()
    {
        var cpu = new MockCpu();
        cpu.Segments[Register.CS] = Segment.Code32;
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            cpu.Segments[s] = Segment.FlatData;
        return cpu;
    }

    [Fact]
    public void PushadAndPopadUseADeviceStackInOrder()
    {
        var cpu = Cpu32();
        for (int r = 0; r < 8; r++)
            cpu.Gpr[r] = 0x1111_1111UL * (ulong)(r + 1);
        cpu.Gpr[4] = Mmio + 0x40;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, Protected, Mmio + 0x3C, "60", half).Status); // pushad
        Assert.Equal(8, half.Requests.Count);
        // EAX first, just below ESP; the ESP pushed is the one before; EDI last, at ESP - 32.
        Assert.Equal(new MmioAccess(Mmio + 0x3C, 4, true, 0x1111_1111), half.Requests[0]);
        Assert.Equal(new MmioAccess(Mmio + 0x2C, 4, true, (uint)(Mmio + 0x40)), half.Requests[4]);
        Assert.Equal(new MmioAccess(Mmio + 0x20, 4, true, 0x8888_8888), half.Requests[7]);
        Assert.Equal(Mmio + 0x20, cpu.Gpr[4]);

        for (int r = 0; r < 8; r++)
        {
            if (r != 4)
                cpu.Gpr[r] = 0;
        }
        half.Store(Mmio + 0x2C, 0xDEAD_BEEF, 4); // the ESP slot is skipped
        Assert.Equal(VieStatus.Done, Run(cpu, Protected, Mmio + 0x20, "61", half).Status); // popad
        for (int r = 0; r < 8; r++)
        {
            if (r != 4)
                Assert.Equal(0x1111_1111UL * (ulong)(r + 1), cpu.Gpr[r]);
        }
        Assert.Equal(Mmio + 0x40, cpu.Gpr[4]);
    }

    [Fact]
    public void PushaInSixteenBitCodePushesWords()
    {
        var cpu = Cpu32();
        cpu.Segments[Register.CS] = new Segment(0x08, 0, 0xFFFF, 0x9B);  // 16-bit code
        cpu.Segments[Register.SS] = new Segment(0x10, Mmio, 0xFFFF, 0x93); // 16-bit stack at the device
        cpu.Gpr[4] = 0x0010;
        cpu.Gpr[1] = 0xABCD_0102;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, Protected, Mmio + 0xE, "60", half).Status); // pusha
        Assert.Equal(new MmioAccess(Mmio + 0xC, 2, true, 0x0102), half.Requests[1]); // CX
        Assert.Equal(new MmioAccess(Mmio + 0x6, 2, true, 0x0010), half.Requests[4]); // SP before
        Assert.Equal(0x0UL, cpu.Gpr[4]);
    }

    [Fact]
    public void EnterWithNestingAndLeaveUseADeviceStack()
    {
        // 64-bit ENTER 0x10, 3 with RBP pointing at an old frame in device memory: push RBP,
        // copy the quadwords at RBP - 8 and RBP - 16, push the new frame pointer, RSP drops 0x10.
        var cpu = new MockCpu();
        cpu.Gpr[4] = Mmio + 0x100;
        cpu.Gpr[5] = Mmio + 0x200;
        var half = new MockDeviceHalf();
        half.Store(Mmio + 0x1F8, 0xAAAA, 8);
        half.Store(Mmio + 0x1F0, 0xBBBB, 8);
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0xF8, "C8100003", half).Status); // enter 0x10, 3
        Assert.Equal(
            [
                new MmioAccess(Mmio + 0xF8, 8, true, Mmio + 0x200),
                new MmioAccess(Mmio + 0x1F8, 8, false, 0), new MmioAccess(Mmio + 0xF0, 8, true, 0xAAAA),
                new MmioAccess(Mmio + 0x1F0, 8, false, 0), new MmioAccess(Mmio + 0xE8, 8, true, 0xBBBB),
                new MmioAccess(Mmio + 0xE0, 8, true, Mmio + 0xF8),
            ], half.Requests);
        Assert.Equal(Mmio + 0xF8, cpu.Gpr[5]);
        Assert.Equal(Mmio + 0xD0, cpu.Gpr[4]);

        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0xF8, "C9", half).Status); // leave
        Assert.Equal(Mmio + 0x200, cpu.Gpr[5]);
        Assert.Equal(Mmio + 0x100, cpu.Gpr[4]);
    }

    [Fact]
    public void SgdtSidtSmswStrAndSldtStoreIntoDeviceMemory()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Mmio + 0x10;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x10, "0F0100", half).Status); // sgdt [rax]
        Assert.Equal([new MmioAccess(Mmio + 0x10, 2, true, 0x7F), new MmioAccess(Mmio + 0x12, 8, true, 0x12_3456_7000)], half.Requests);
        half.Requests.Clear();
        Assert.Equal(VieStatus.Done, Run(Cpu32WithRax(Mmio + 0x20), Protected, Mmio + 0x20, "0F0108", half).Status); // sidt [eax]
        Assert.Equal([new MmioAccess(Mmio + 0x20, 2, true, 0xFFF), new MmioAccess(Mmio + 0x22, 4, true, 0x3456_8000)], half.Requests);
        half.Requests.Clear();
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x10, "0F0120", half).Status); // smsw [rax]
        Assert.Equal([new MmioAccess(Mmio + 0x10, 2, true, PagingState.Flat.Cr0 & 0xFFFF)], half.Requests);
        half.Requests.Clear();
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x10, "0F0008", half).Status); // str [rax]
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x10, "0F0000", half).Status); // sldt [rax]
        Assert.Equal([new MmioAccess(Mmio + 0x10, 2, true, 0x40), new MmioAccess(Mmio + 0x10, 2, true, 0x50)], half.Requests);
    }

    private static MockCpu Cpu32WithRax(ulong rax)
    {
        MockCpu cpu = Cpu32();
        cpu.Gpr[0] = rax;
        return cpu;
    }

    [Fact]
    public void FarJumpThroughAPointerInDeviceMemoryInRealMode()
    {
        // jmp far [bx] with DS based at the device: CS becomes 0x2000 (base 0x20000), IP 0x1234.
        var cpu = new MockCpu { Rip = 0x100 };
        foreach (Register s in new[] { Register.ES, Register.SS, Register.FS, Register.GS })
            cpu.Segments[s] = Segment.Real(0);
        cpu.Segments[Register.CS] = new Segment(0x1000, 0x10000, 0xFFFF, 0x9B);
        cpu.Segments[Register.DS] = new Segment(0xF000, Mmio - 0x10, 0xFFFF, 0x93);
        cpu.Gpr[3] = 0x10; // BX
        var memory = new MockGuestMemory();
        Convert.FromHexString("FF2F").CopyTo(memory.Ram, 0x10100);
        var half = new MockDeviceHalf();
        half.Store(Mmio, 0x2000_1234, 4);
        Assert.Equal(VieStatus.Done, Run(cpu, new PagingState(0, 0, 0, 0, 0), Mmio, "", half, memory).Status);
        Assert.Equal(new Segment(0x2000, 0x20000, 0xFFFF, 0x9B), cpu.Segments[Register.CS]);
        Assert.Equal(0x1234UL, cpu.Rip);
    }

    [Fact]
    public void FarCallThroughAPointerInDeviceMemoryTakesACodeSegmentFromTheGdt()
    {
        // 64-bit call far [rax] (m16:64): the GDT at 0x3000 has a 64-bit code segment at 0x08 and a
        // not-present one at 0x10; the stack is RAM. CS and the return RIP are pushed, the accessed
        // bit is set, CS is loaded with RPL = CPL and RIP is the pointer's offset.
        var cpu = new MockCpu { Gdtr = new(0x3000, 0x27) };
        cpu.Gpr[0] = Mmio + 0x20;
        cpu.Gpr[4] = 0x8000;
        cpu.Segments[Register.CS] = new Segment(0x18, 0, 0xFFFF_FFFF, 0xA09B);
        var memory = new MockGuestMemory();
        BitConverter.GetBytes(0x00AF_9A00_0000_FFFFUL).CopyTo(memory.Ram, 0x3008); // present, not yet accessed
        BitConverter.GetBytes(0x00AF_1A00_0000_FFFFUL).CopyTo(memory.Ram, 0x3010); // not present
        BitConverter.GetBytes(0x0000_8C00_0008_0000UL).CopyTo(memory.Ram, 0x3018); // a call gate
        var half = new MockDeviceHalf();
        half.Store(Mmio + 0x20, 0x0000_0000_4000_1000, 8);
        half.Store(Mmio + 0x28, 0x0008, 2);
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x20, "48FF18", half, memory).Status);
        Assert.Equal(new Segment(0x08, 0, 0xFFFF_FFFF, 0xA09B), cpu.Segments[Register.CS]);
        Assert.Equal(0x4000_1000UL, cpu.Rip);
        Assert.Equal(0x7FF0UL, cpu.Gpr[4]);
        Assert.Equal(0x18UL, BitConverter.ToUInt64(memory.Ram, 0x7FF8));         // the old CS
        Assert.Equal(0x40_0003UL, BitConverter.ToUInt64(memory.Ram, 0x7FF0));    // the return RIP
        Assert.Equal(0x9B, memory.Ram[0x300D]);                                  // accessed

        half.Store(Mmio + 0x28, 0x0010, 2);
        cpu.Rip = 0x40_0000;
        var (st, vie) = Run(cpu, PagingState.Flat, Mmio + 0x20, "48FF18", half, memory);
        Assert.Equal((VieStatus.Fault, ExceptionVector.NP, 0x10u), (st, vie.Fault.Vector, vie.Fault.ErrorCode));
        half.Store(Mmio + 0x28, 0x0030, 2); // beyond the GDT's limit
        (st, vie) = Run(cpu, PagingState.Flat, Mmio + 0x20, "48FF18", half, memory);
        Assert.Equal((VieStatus.Fault, ExceptionVector.GP, 0x30u), (st, vie.Fault.Vector, vie.Fault.ErrorCode));
        half.Store(Mmio + 0x28, 0x0018, 2); // a call gate: the CPU's
        Assert.Equal(VieStatus.Fallback, Run(cpu, PagingState.Flat, Mmio + 0x20, "48FF18", half, memory).Status);
        half.Store(Mmio + 0x28, 0x0000, 2); // null
        Assert.Equal(ExceptionVector.GP, Run(cpu, PagingState.Flat, Mmio + 0x20, "48FF18", half, memory).Vie.Fault.Vector);
        Assert.Equal(0x40_0000UL, cpu.Rip); // no fault moved RIP
    }

    private static readonly PagingState LongWithXsave = PagingState.Flat with { Cr4 = PagingState.Flat.Cr4 | PagingState.Cr4OSXSAVE };

    [Fact]
    public void AvxMovesReachDeviceMemory()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Mmio + 0x40;
        cpu.Xmm[1] = ((UInt128)0x1112_1314_1516_1718 << 64) | 0x0102_0304_0506_0708;
        cpu.YmmHigh[1] = ((UInt128)0x3132_3334_3536_3738 << 64) | 0x2122_2324_2526_2728;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, LongWithXsave, Mmio + 0x40, "C5FE7F08", half).Status); // vmovdqu [rax], ymm1
        Assert.Equal(
            [
                new MmioAccess(Mmio + 0x40, 8, true, 0x0102_0304_0506_0708), new MmioAccess(Mmio + 0x48, 8, true, 0x1112_1314_1516_1718),
                new MmioAccess(Mmio + 0x50, 8, true, 0x2122_2324_2526_2728), new MmioAccess(Mmio + 0x58, 8, true, 0x3132_3334_3536_3738),
            ], half.Requests);
        Assert.Equal(VieStatus.Done, Run(cpu, LongWithXsave, Mmio + 0x40, "C5FD6F10", half).Status); // vmovdqa ymm2, [rax]
        Assert.Equal((cpu.Xmm[1], cpu.YmmHigh[1]), (cpu.Xmm[2], cpu.YmmHigh[2]));
        Assert.Equal(VieStatus.Done, Run(cpu, LongWithXsave, Mmio + 0x40, "C5FA7E18", half).Status); // vmovq xmm3, [rax]
        Assert.Equal(((UInt128)0, (UInt128)0x0102_0304_0506_0708), (cpu.YmmHigh[3], cpu.Xmm[3]));
        cpu.Gpr[0] = Mmio + 0x50; // 16 off a 32-byte boundary: VMOVDQA's #GP(0), VMOVDQU's fine
        Assert.Equal(ExceptionVector.GP, Run(cpu, LongWithXsave, Mmio + 0x50, "C5FD6F10", half).Vie.Fault.Vector);
        Assert.Equal(VieStatus.Done, Run(cpu, LongWithXsave, Mmio + 0x50, "C5FE6F10", half).Status);
        // Without CR4.OSXSAVE, or with XCR0 lacking AVX's state: #UD.
        Assert.Equal(ExceptionVector.UD, Run(cpu, PagingState.Flat, Mmio + 0x50, "C5FE6F10", half).Vie.Fault.Vector);
        cpu.Xcr0 = 3;
        Assert.Equal(ExceptionVector.UD, Run(cpu, LongWithXsave, Mmio + 0x50, "C5FE6F10", half).Vie.Fault.Vector);
    }

    [Fact]
    public void Sse41ElementMovesReachDeviceMemory()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Mmio + 0x40;
        cpu.Xmm[1] = ((UInt128)0x1112_1314_1516_1718 << 64) | 0x0102_0304_0506_0708;
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "660F3A14080D", half).Status); // pextrb [rax], xmm1, 13
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "660F3A160803", half).Status); // pextrd [rax], xmm1, 3
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "66480F3A160801", half).Status); // pextrq [rax], xmm1, 1
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "660F3A170802", half).Status); // extractps [rax], xmm1, 2
        Assert.Equal(
            [
                new MmioAccess(Mmio + 0x40, 1, true, 0x13), new MmioAccess(Mmio + 0x40, 4, true, 0x1112_1314),
                new MmioAccess(Mmio + 0x40, 8, true, 0x1112_1314_1516_1718), new MmioAccess(Mmio + 0x40, 4, true, 0x1516_1718),
            ], half.Requests);
        half.Store(Mmio + 0x40, 0xAABB_CCDD, 4);
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "660F3A200805", half).Status); // pinsrb xmm1, [rax], 5
        Assert.Equal(((UInt128)0x1112_1314_1516_1718 << 64) | 0x0102_DD04_0506_0708, cpu.Xmm[1]);
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "660F3A210869", half).Status); // insertps xmm1, [rax], 0x69
        // imm 0x69: the dword into element 2, then elements 0 and 3 cleared.
        Assert.Equal(((UInt128)0x0000_0000_AABB_CCDD << 64) | 0x0102_DD04_0000_0000, cpu.Xmm[1]);
    }

    [Fact]
    public void MovntdqaLoadsFromDeviceMemoryAndChecksAlignment()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Mmio + 0x40;
        var half = new MockDeviceHalf();
        half.Store(Mmio + 0x40, 0x0102_0304_0506_0708, 8);
        half.Store(Mmio + 0x48, 0x1112_1314_1516_1718, 8);
        Assert.Equal(VieStatus.Done, Run(cpu, PagingState.Flat, Mmio + 0x40, "660F382A08", half).Status); // movntdqa xmm1, [rax]
        Assert.Equal(((UInt128)0x1112_1314_1516_1718 << 64) | 0x0102_0304_0506_0708, cpu.Xmm[1]);
        cpu.Gpr[0] = Mmio + 0x48;
        Assert.Equal(ExceptionVector.GP, Run(cpu, PagingState.Flat, Mmio + 0x48, "660F382A08", half).Vie.Fault.Vector);
    }
}
