// The emulation context through its request/fulfil cycle: exactly-once accesses, replay,
// register semantics, fulfilment validation, in-vmm devices and fallbacks.
using System;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VieTests
{
    private const ulong Gla = 0x1010; // same offset in its page as Gpa
    private const ulong Gpa = 0xFE00_0010;

    private static (Vie Vie, MockCpu Cpu, MockDeviceHalf Half) Start(string hex, Bitness bitness = Bitness.Bits64, ulong gla = Gla)
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Gla; // RAX: the operand's address
        var vie = new Vie();
        Assert.True(vie.Begin(Gpa, gla, glaValid: true, bitness, Convert.FromHexString(hex)));
        return (vie, cpu, new MockDeviceHalf());
    }

    [Fact]
    public void StoreSendsOneWriteAndAdvancesRip()
    {
        var (vie, cpu, half) = Start("8908"); // mov [rax], ecx
        cpu.Gpr[1] = 0xAAAA_BBBB_1122_3344;
        var (st, passes) = half.Run(vie, cpu, new MockVmmDevices());
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(2, passes);
        Assert.Equal([new MmioAccess(Gpa, 4, true, 0x1122_3344)], half.Requests);
        Assert.Equal(0x40_0002UL, cpu.Rip);
        Assert.False(vie.Active);
    }

    [Fact]
    public void LoadZeroExtends32AndMergesNarrowerWrites()
    {
        var (vie, cpu, half) = Start("8B08"); // mov ecx, [rax]
        cpu.Gpr[1] = ulong.MaxValue;
        half.Store(Gpa, 0x8877_6655, 4);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Equal(0x8877_6655UL, cpu.Gpr[1]);

        (vie, cpu, half) = Start("8A20"); // mov ah, [rax]
        const ulong High = Gla | 0xFFFF_8000_0000_0000; // the upper half of the address space
        cpu.Gpr[0] = High;
        Assert.True(vie.Begin(Gpa, High, glaValid: true, Bitness.Bits64, Convert.FromHexString("8A20")));
        half.Store(Gpa, 0x5A, 1);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Equal(High & ~0xFF00UL | 0x5A00, cpu.Gpr[0]);

        (vie, cpu, half) = Start("480FBF08"); // movsx rcx, word [rax]
        half.Store(Gpa, 0x8001, 2);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Equal(0xFFFF_FFFF_FFFF_8001UL, cpu.Gpr[1]);
    }

    [Fact]
    public void ReadModifyWriteTakesThreePassesAndTouchesTheDeviceOnceEach()
    {
        var (vie, cpu, half) = Start("830005"); // add dword [rax], 5
        half.Store(Gpa, 0xFFFF_FFFE, 4);
        var (st, passes) = half.Run(vie, cpu, new MockVmmDevices());
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(3, passes);
        Assert.Equal([new MmioAccess(Gpa, 4, false, 0), new MmioAccess(Gpa, 4, true, 3)], half.Requests); // a read carries 0 out
        // 0xFFFFFFFE + 5 = 3 carry out: CF, and AF (carry out of bit 3); PF (3 has two bits set).
        Assert.Equal(Rflags.Fixed1 | Rflags.CF | Rflags.AF | Rflags.PF, cpu.Rflags);
        Assert.Equal(2, vie.Requests);
    }

    [Fact]
    public void CompareAndTestOnlyRead()
    {
        var (vie, cpu, half) = Start("3908"); // cmp [rax], ecx
        cpu.Gpr[1] = 7;
        half.Store(Gpa, 7, 4);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Single(half.Requests);
        Assert.NotEqual(0UL, cpu.Rflags & Rflags.ZF);

        (vie, cpu, half) = Start("F60080"); // test byte [rax], 0x80
        half.Store(Gpa, 0x80, 1);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Single(half.Requests);
        Assert.NotEqual(0UL, cpu.Rflags & Rflags.SF);
    }

    [Fact]
    public void RegisterDestinationFormsUpdateTheRegister()
    {
        var (vie, cpu, half) = Start("482B08"); // sub rcx, [rax]
        cpu.Gpr[1] = 10;
        half.Store(Gpa, 3, 8);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Equal(7UL, cpu.Gpr[1]);
    }

    [Fact]
    public void ReenteringWithoutAnAnswerReemitsTheSameRequest()
    {
        var (vie, cpu, _) = Start("8B08");
        var devices = new MockVmmDevices();
        Assert.Equal(VieStatus.NeedsDevice, vie.Emulate(cpu, devices));
        MmioAccess first = vie.Pending;
        Assert.Equal(VieStatus.NeedsDevice, vie.Emulate(cpu, devices));
        Assert.Equal(first, vie.Pending);
        Assert.Equal(1, vie.Requests);
        Assert.Equal(0x40_0000UL, cpu.Rip);
    }

    [Fact]
    public void MismatchedAnswersAreRejected()
    {
        var (vie, cpu, _) = Start("8B08"); // 4-byte read
        Assert.Equal(FulfillResult.NotPending, vie.Fulfill(new MmioAccess(Gpa, 4, false, 1)));
        Assert.Equal(VieStatus.NeedsDevice, vie.Emulate(cpu, new MockVmmDevices()));
        Assert.Equal(FulfillResult.Mismatch, vie.Fulfill(new MmioAccess(Gpa + 4, 4, false, 1)));
        Assert.Equal(FulfillResult.Mismatch, vie.Fulfill(new MmioAccess(Gpa, 2, false, 1)));
        Assert.Equal(FulfillResult.Mismatch, vie.Fulfill(new MmioAccess(Gpa, 4, true, 1)));
        Assert.Equal(FulfillResult.Ok, vie.Fulfill(new MmioAccess(Gpa, 4, false, 0x1_0000_0002)));
        Assert.Equal(VieStatus.Done, vie.Emulate(cpu, new MockVmmDevices()));
        Assert.Equal(2UL, cpu.Gpr[1]); // read data is masked to the access size
    }

    [Fact]
    public void VmmDevicesAreTriedFirstAndNeverCrossTheBoundary()
    {
        var (vie, cpu, half) = Start("830101"); // add dword [rcx], 1
        cpu.Gpr[1] = Gla;
        var vmm = new MockVmmDevices(Gpa, 0x10);
        vmm.Registers[Gpa] = 41;
        var (st, passes) = half.Run(vie, cpu, vmm);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(1, passes);
        Assert.Empty(half.Requests);
        Assert.Equal(42UL, vmm.Registers[Gpa]);
        Assert.Equal(2, vmm.Seen.Count); // one read, one write
    }

    [Fact]
    public void SixteenBitAddressingChecksTheLinearAddress()
    {
        var cpu = new MockCpu();
        cpu.Segments[Register.DS] = Segment.FlatData with { Base = 0x10000 };
        cpu.Gpr[3] = 0x100; // BX
        cpu.Gpr[6] = 0x20;  // SI
        cpu.Gpr[0] = 0xBEEF;
        var vie = new Vie();
        Assert.True(vie.Begin(0xFE00_0124, 0x10124, glaValid: true, Bitness.Bits16, Convert.FromHexString("894004"))); // mov [bx+si+4], ax
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Equal([new MmioAccess(0xFE00_0124, 2, true, 0xBEEF)], half.Requests);
    }

    [Fact]
    public void FallsBackWhenTheBytesAreNotTheFaultingInstruction()
    {
        var (vie, cpu, half) = Start("8B08", gla: Gla + 0x40); // RAX does not point at the faulting address
        Assert.Equal(VieStatus.Fallback, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Empty(half.Requests);
    }

    [Theory]
    [InlineData("A4")]       // movsb without guest memory to reach the RAM side
    [InlineData("0F0B")]     // ud2: no memory operand
    [InlineData("0F5800")]   // addps xmm0, [rax]: arithmetic on vectors is not emulated
    [InlineData("F20FC20000")] // SSE cmpsd xmm0, [rax], 0
    public void FallsBackOnWhatItDoesNotEmulate(string hex)
    {
        var vie = new Vie();
        Assert.True(vie.Begin(Gpa, Gla, glaValid: false, Bitness.Bits64, Convert.FromHexString(hex)));
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Fallback, half.Run(vie, new MockCpu(), new MockVmmDevices()).Status);
        Assert.Empty(half.Requests);
        Assert.Equal(Convert.FromHexString(hex), vie.InstructionBytes.ToArray()); // what the fallback exit carries
    }

    [Theory]
    [InlineData("0FAE38")]   // clflush [rax]
    [InlineData("660FAE38")] // clflushopt [rax]
    public void CacheFlushesCompleteWithoutTouchingTheDevice(string hex)
    {
        var (vie, cpu, half) = Start(hex);
        Assert.Equal(VieStatus.Done, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Empty(half.Requests);
        Assert.Equal(0x40_0000UL + (ulong)(hex.Length / 2), cpu.Rip);
    }

    [Theory]
    [InlineData("C4E2791800")]   // vbroadcastss xmm0, [rax]
    [InlineData("C5FC5800")]     // vaddps ymm0, ymm0, [rax]
    [InlineData("C4E26990048E")] // vpgatherdd xmm0, [rsi+xmm1*4], xmm2: VSIB memory
    public void VexVectorInstructionsFallBack(string hex)
    {
        var (vie, cpu, half) = Start(hex);
        Assert.Equal(VieStatus.Fallback, half.Run(vie, cpu, new MockVmmDevices()).Status);
        Assert.Empty(half.Requests);
    }

    [Fact]
    public void DivideErrorsAreFaultsAndLeaveRipAlone()
    {
        var (vie, cpu, half) = Start("F730"); // div dword [rax], device returns 0
        var (st, _) = half.Run(vie, cpu, new MockVmmDevices());
        Assert.Equal(VieStatus.Fault, st);
        Assert.Equal(0, vie.FaultVector);
        Assert.Equal(0x40_0000UL, cpu.Rip);

        (vie, cpu, half) = Start("48F738"); // idiv qword [rax]: INT64_MIN:0 / -1 overflows
        cpu.Gpr[2] = 0x8000_0000_0000_0000;
        cpu.Gpr[0] = Gla;
        half.Store(Gpa, ulong.MaxValue, 8);
        Assert.Equal(VieStatus.Fault, half.Run(vie, cpu, new MockVmmDevices()).Status);
    }
}
