// The run loop driven by a fake backend: request/fulfil round trips, re-emission, discard,
// mismatched answers, REP continuation, port I/O, CPUID, MSRs, HLT woken by a timer, INIT/SIPI
// sequences and triple faults.
using System;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VcpuTests : IDisposable
{
    private const ulong Mmio = 0xFE00_0000;
    private readonly FakeBackend _backend = new();
    private readonly Vm _vm;

    public VcpuTests()
    {
        _vm = _backend.NewVm(2);
    }

    public void Dispose() => _vm.Dispose();

    private FakeVcpu Bsp => _backend.Vcpus[0];

    private static BackendExit Stop(FakeVcpu v) => new() { Kind = BackendExitKind.TripleFault };

    [Fact]
    public void MmioRoundTripAdvancesRipOnce()
    {
        Bsp.Gpr[0] = Mmio;
        Bsp.Gpr[1] = 0xAABB_CCDD;
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "8908")); // mov [rax], ecx
        VcpuExitCheck(_vm.Vcpus[0].Run(VmEntry.Default), VmExitCode.Mmio);
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default); // not answered: the same request again
        Assert.Equal(new MmioAccess(Mmio, 4, true, 0xAABB_CCDD), exit.Mmio);
        Assert.Equal(1, _vm.Vcpus[0].Requests);
        Assert.Equal(0x1000UL, Bsp.Rip);
        exit = _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio));
        Assert.Equal(VmExitCode.Suspended, exit.Code); // the script ran out: triple fault
        Assert.Equal(SuspendReason.TripleFault, exit.Suspend);
        Assert.Equal(0x1002UL, Bsp.Rip);
        Assert.Equal(2, _vm.Vcpus[0].ExitCounts[(int)VmExitCode.Mmio]);
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[1].Run(VmEntry.Default).Code); // the whole VM stopped
    }

    private static void VcpuExitCheck(in VmExit exit, VmExitCode code) => Assert.True(exit.Code == code, $"expected {code}, got {exit}");

    [Fact]
    public void ReadsCompleteWithTheAnswerAndMismatchesAreRejected()
    {
        Bsp.Gpr[0] = Mmio;
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "8B08")); // mov ecx, [rax]
        Bsp.Script.Enqueue(v => { Assert.Equal(0x1234UL, v.Gpr[1]); return Stop(v); });
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(new MmioAccess(Mmio, 4, false, 0), exit.Mmio);
        Assert.Throws<VmEntryException>(() => _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio with { Gpa = Mmio + 4 })));
        Assert.Throws<VmEntryException>(() => _vm.Vcpus[0].Run(VmEntry.FulfillInout(new InoutAccess(0x80, 1, true, 0))));
        Assert.Throws<VmEntryException>(() => _vm.Vcpus[0].Run(VmEntry.FulfillMsr(0)));
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio with { Data = 0x1234 })).Code);
        Assert.Empty(Bsp.Script);
    }

    [Fact]
    public void DiscardLeavesRipOnTheInstruction()
    {
        Bsp.Gpr[0] = Mmio;
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "8B08"));
        Bsp.Script.Enqueue(v => { Assert.Equal(0x1000UL, v.Rip); return Stop(v); });
        Assert.Equal(VmExitCode.Mmio, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Discard).Code);
        Assert.Empty(Bsp.Script);
    }

    [Fact]
    public void RepStringsContinueInsideTheVmm()
    {
        Bsp.Gpr[1] = 3;
        Bsp.Gpr[6] = Mmio;
        Bsp.Gpr[7] = 0x2000;
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "F3A4")); // rep movsb from device memory to RAM
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(new MmioAccess(Mmio + (ulong)i, 1, false, 0), exit.Mmio);
            exit = _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio with { Data = (ulong)(0x61 + i) }));
        }
        Assert.Equal(VmExitCode.Suspended, exit.Code);
        Assert.Equal("abc"u8.ToArray(), _vm.Memory.Span(0x2000, 3).ToArray());
        Assert.Equal(0x1002UL, Bsp.Rip);
        Assert.Equal(0UL, Bsp.Gpr[1]);
    }

    [Fact]
    public void RepStringsYieldToAPendingInterrupt()
    {
        var apic = new FakeInterrupts();
        _vm.Vcpus[0].Interrupts = apic;
        Bsp.Gpr[1] = 3;
        Bsp.Gpr[6] = Mmio;
        Bsp.Gpr[7] = 0x2000;
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "F3A4"));
        Bsp.Script.Enqueue(v => { Assert.Equal(0x1000UL, v.Rip); Assert.Equal(2UL, v.Gpr[1]); return Stop(v); });
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        apic.Pending.Add(0x40); // arrives during the first element
        exit = _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio));
        Assert.Equal(VmExitCode.Suspended, exit.Code);
        Assert.Equal([0x40], apic.Accepted);
        Assert.Equal(new Event(0x40, EventType.External), Bsp.Injected[0]);
    }

    [Fact]
    public void PortInputMergesIntoAl()
    {
        Bsp.Gpr[0] = 0xFFFF_FFFF;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Io, Io = new IoExit(0x60, 1, true, false, false, true, 0, Register.ES, 2) });
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(new InoutAccess(0x60, 1, true, 0), exit.Inout);
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.FulfillInout(exit.Inout with { Eax = 0x5A })).Code);
        Assert.Equal(0xFFFF_FF5AUL, Bsp.Gpr[0]);
        Assert.Equal(0x1002UL, Bsp.Rip);
    }

    [Fact]
    public void UnemulatedInstructionsGoOutWithTheirBytes()
    {
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "0F5800")); // addps xmm0, [rax]
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(VmExitCode.InstEmul, exit.Code);
        Assert.Equal([0x0F, 0x58, 0x00], ((ReadOnlySpan<byte>)exit.InstructionBytes)[..exit.InstructionLength].ToArray());
    }

    [Fact]
    public void EmulationFaultsAreInjected()
    {
        Bsp.Gpr[0] = Mmio;
        Bsp.Script.Enqueue(_ => FakeVcpu.Mmio(Mmio, "F730")); // div dword [rax], by zero
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio)).Code);
        Assert.Equal([new Event(ExceptionVector.DE, EventType.HardwareException)], Bsp.Injected);
        Assert.Equal(0x1000UL, Bsp.Rip);
    }

    [Fact]
    public void CodeFetchedFromWhereNoRamIsRaisesUd()
    {
        // A PC's bus reads all ones where nothing answers: FF FF is FF /7, an undefined opcode.
        Bsp.Rip = 0xC37C_78BE;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.DeviceFetch, Gpa = 0xC37C_78BE });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code); // the script ran out
        Assert.Equal([new Event(ExceptionVector.UD, EventType.HardwareException)], Bsp.Injected);
        Assert.Equal(1, _vm.Vcpus[0].DeviceFetches);
        Assert.Equal(0xC37C_78BEUL, Bsp.Rip);
    }

    [Fact]
    public void CpuidAnswersFromThePolicy()
    {
        Bsp.Gpr[0] = 1;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Cpuid, InstructionLength = 2 });
        _vm.Vcpus[0].Run(VmEntry.Default);
        // x86-64-v2 by default: SSE3, SSSE3, SSE4.1, SSE4.2 with CX16 and POPCNT, and XSAVE.
        Assert.Equal(CpuidPolicy.Leaf1Ecx | 1 | (1 << 9) | (1 << 19) | (1 << 20) | (1 << 26), Bsp.Gpr[1]);
        Assert.Equal((1UL << 13) | (1UL << 23), Bsp.Gpr[1] & ((1UL << 13) | (1UL << 23)));
        Assert.Equal(0UL, Bsp.Gpr[1] & (1UL << 22 | 1UL << 27 | 1UL << 28)); // no MOVBE, no OSXSAVE (CR4 has it clear), no AVX
        Assert.Equal(CpuidPolicy.Leaf1Ecx, new CpuidPolicy { Level = CpuLevel.V1 }.Query(1, 0, 0).Ecx);
        Assert.Equal(0x1002UL, Bsp.Rip);
    }

    [Fact]
    public void CpuidFollowsTheVcpusCr4AndXcr0()
    {
        // OSXSAVE is CR4.OSXSAVE; leaf 0xD: x87 and SSE supported, 576 bytes for the legacy region
        // and the header; XSAVEOPT but no XSAVEC/XSAVES (subleaf 1 EAX = 1).
        Bsp.Control = Bsp.Control with { Cr4 = Bsp.Control.Cr4 | PagingState.Cr4OSXSAVE };
        Bsp.Gpr[0] = 1;
        Bsp.Gpr[1] = 0;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Cpuid, InstructionLength = 2 });
        Bsp.Script.Enqueue(v =>
        {
            Assert.Equal(1UL << 27, v.Gpr[1] & (1UL << 27));
            v.Gpr[0] = 0xD;
            v.Gpr[1] = 0;
            return new BackendExit { Kind = BackendExitKind.Cpuid, InstructionLength = 2 };
        });
        Bsp.Script.Enqueue(v =>
        {
            Assert.Equal((3UL, 576UL, 576UL, 0UL), (v.Gpr[0], v.Gpr[3], v.Gpr[1], v.Gpr[2]));
            v.Gpr[0] = 0xD;
            v.Gpr[1] = 1;
            return new BackendExit { Kind = BackendExitKind.Cpuid, InstructionLength = 2 };
        });
        Bsp.Script.Enqueue(v =>
        {
            Assert.Equal((1UL, 0UL, 0UL, 0UL), (v.Gpr[0], v.Gpr[3], v.Gpr[1], v.Gpr[2]));
            return new BackendExit { Kind = BackendExitKind.TripleFault };
        });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Empty(Bsp.Script);
    }

    [Theory]
    [InlineData(0u, 3UL, true)]
    [InlineData(0u, 1UL, true)]
    [InlineData(0u, 2UL, false)]  // x87 must stay on
    [InlineData(0u, 7UL, false)]  // AVX is not offered
    [InlineData(0u, 5UL, false)]  // AVX without SSE
    [InlineData(1u, 1UL, false)]  // only XCR0 exists
    [InlineData(0u, 1UL << 32 | 3, false)]
    public void XsetbvExitsSetXcr0OrRaiseGeneralProtection(uint ecx, ulong value, bool accepted)
    {
        Bsp.Gpr[1] = ecx;
        Bsp.Gpr[0] = value & 0xFFFF_FFFF;
        Bsp.Gpr[2] = value >> 32;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Xsetbv, InstructionLength = 3 });
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.TripleFault });
        _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(accepted ? value : 1UL, Bsp.Xcr0);
        Assert.Equal(accepted ? 0x1003UL : 0x1000UL, Bsp.Rip);
        Assert.Equal(accepted ? [] : [new Event(ExceptionVector.GP, EventType.HardwareException, 0, true)], Bsp.Injected);
    }

    [Fact]
    public void MsrsTheVmmOwnsAndTheOnesItDoesNot()
    {
        Bsp.Gpr[1] = Msr.ApicBase;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Rdmsr, InstructionLength = 2 });
        Bsp.Script.Enqueue(v => { v.Gpr[1] = 0x4B56_4D00; return new BackendExit { Kind = BackendExitKind.Rdmsr, InstructionLength = 2 }; });
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(0xFEE0_0900UL, Bsp.Gpr[0]); // the BSP's APIC base, read in the vmm
        Assert.Equal(VmExitCode.Rdmsr, exit.Code);
        Assert.Equal(0x4B56_4D00u, exit.Msr);
        Assert.Equal(VmExitCode.Rdmsr, _vm.Vcpus[0].Run(VmEntry.Default).Code); // re-emitted
        Bsp.Script.Enqueue(v =>
        {
            // The device half's answer is in EDX:EAX and RIP is past the RDMSR.
            Assert.Equal(0x5566_7788UL, v.Gpr[0]);
            Assert.Equal(0x1122_3344UL, v.Gpr[2]);
            Assert.Equal(0x1004UL, v.Rip);
            v.Gpr[1] = Msr.Pat;
            v.Gpr[0] = 2; // PAT type 2 is reserved
            v.Gpr[2] = 0;
            return new BackendExit { Kind = BackendExitKind.Wrmsr, InstructionLength = 2 };
        });
        exit = _vm.Vcpus[0].Run(VmEntry.FulfillMsr(0x1122_3344_5566_7788));
        Assert.Equal([new Event(ExceptionVector.GP, EventType.HardwareException, 0, true)], Bsp.Injected);
        Assert.Equal(0x1004UL, Bsp.Rip); // a faulting WRMSR does not advance
        Assert.Equal(VmExitCode.Suspended, exit.Code);
    }

    [Fact]
    public void HaltWakesWhenATimerRaisesAnInterrupt()
    {
        var apic = new FakeInterrupts();
        _vm.Vcpus[0].Interrupts = apic;
        var timer = new ClockTimer(() => apic.Pending.Add(0x30));
        _vm.Clock.Add(timer);
        VmClock.Arm(timer, 1_000_000);
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Hlt });
        Bsp.Script.Enqueue(v => { Assert.Equal(new Event(0x30, EventType.External), v.Injected[^1]); return Stop(v); });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal(1_000_000, _vm.Clock.Now); // virtual time skipped to the deadline
        Assert.Empty(Bsp.Script);
    }

    [Fact]
    public void VirtualTimeWaitsForRunningVcpus()
    {
        var apic = new FakeInterrupts();
        _vm.Vcpus[0].Interrupts = apic;
        var timer = new ClockTimer(() => apic.Pending.Add(0x30));
        _vm.Clock.Add(timer);
        VmClock.Arm(timer, 1_000_000);
        _vm.Vcpus[1].SetState(RunState.Run); // an AP that is running somewhere
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Hlt });
        Assert.Equal(VmExitCode.Bogus, _vm.Vcpus[0].Run(VmEntry.Default).Code); // waited, nothing came
        Assert.Equal(0, _vm.Clock.Now);
        _vm.Vcpus[1].SetState(RunState.Init); // now every other vCPU is idle
        Bsp.Script.Enqueue(v => { Assert.Equal(0x30, v.Injected[^1].Vector); return Stop(v); });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal(1_000_000, _vm.Clock.Now);
    }

    [Fact]
    public void HaltWithInterruptsOffGoesToTheDeviceHalf()
    {
        Bsp.Rflags = Rflags.Fixed1;
        Bsp.Script.Enqueue(_ => new BackendExit { Kind = BackendExitKind.Hlt });
        Assert.Equal(VmExitCode.Hlt, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal(RunState.Halt, _vm.Vcpus[0].State);
    }

    [Fact]
    public void InitAndSipiStartAnApplicationProcessor()
    {
        FakeVcpu ap = _backend.Vcpus[1];
        Vcpu vcpu = _vm.Vcpus[1];
        Assert.Equal(RunState.Init, vcpu.State);
        Assert.Equal(VmExitCode.RunState, vcpu.Run(VmEntry.Default).Code); // parked, nothing pending
        _vm.SendInit(1);
        _vm.SendSipi(1, 0x9A);
        ap.Script.Enqueue(v =>
        {
            Assert.Equal(new Segment(0x9A00, 0x9_A000, 0xFFFF, 0x9B), v.Segments[Register.CS]);
            Assert.Equal(0UL, v.Rip);
            Assert.Equal(0UL, v.Control.Cr0 & PagingState.Cr0PE);
            return new BackendExit { Kind = BackendExitKind.Hlt };
        });
        Assert.Equal(VmExitCode.Hlt, RunWithIfClear(vcpu, ap));
        Assert.Empty(ap.Script);

        // A second SIPI to a running (here halted, not parked) vCPU is ignored.
        _vm.SendSipi(1, 0x10);
        Assert.Equal(RunState.Halt, vcpu.State);
    }

    private static VmExitCode RunWithIfClear(Vcpu vcpu, FakeVcpu cpu)
    {
        cpu.Rflags = Rflags.Fixed1;
        return vcpu.Run(VmEntry.Default).Code;
    }

    [Fact]
    public void SipiBeforeInitIsIgnoredAndInitWhileRunningParks()
    {
        _vm.SendSipi(0, 0x20); // the BSP is running: no effect
        Bsp.Script.Enqueue(v =>
        {
            Assert.Equal(0x1000UL, v.Rip);
            _vm.SendInit(0); // arrives while the vCPU runs: it is kicked out
            return new BackendExit { Kind = BackendExitKind.Interrupted };
        });
        Assert.Equal(VmExitCode.RunState, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal(RunState.Init, _vm.Vcpus[0].State);
        Assert.Equal(0xFFF0UL, Bsp.Rip);
        Assert.Equal(0xFFFF_0000UL, Bsp.Segments[Register.CS].Base);
        Assert.Equal(_vm.Cpuid.Signature, Bsp.Gpr[2]);
        Assert.True(Bsp.ExitRequests > 0);
        _vm.SendSipi(0, 0x08);
        _vm.SendSipi(0, 0x09); // the second SIPI of the pair: the first already started the processor
        Bsp.Script.Enqueue(v => { Assert.Equal(0x8000UL, v.Segments[Register.CS].Base); return Stop(v); });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
    }

    [Fact]
    public void ExitRoundTripsAllocateNothing()
    {
        Bsp.Gpr[0] = Mmio;
        Bsp.Forever = FakeVcpu.Mmio(Mmio, "8908");
        Vcpu vcpu = _vm.Vcpus[0];
        VmExit exit = vcpu.Run(VmEntry.Default);
        for (int i = 0; i < 100; i++)
            exit = vcpu.Run(VmEntry.FulfillMmio(exit.Mmio)); // warm up
        // The runtime may allocate once on this thread while it recompiles hot methods; an
        // allocation per exit shows in every round, so the quietest of five rounds must be zero.
        long least = long.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10_000; i++)
                exit = vcpu.Run(VmEntry.FulfillMmio(exit.Mmio));
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Equal(VmExitCode.Mmio, exit.Code);
        Assert.Equal(0, least);
    }
}
