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
    public void SgdtSidtAndSmswStoreIntoDeviceMemory()
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
    }

    private static MockCpu Cpu32WithRax(ulong rax)
    {
        MockCpu cpu = Cpu32();
        cpu.Gpr[0] = rax;
        return cpu;
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
