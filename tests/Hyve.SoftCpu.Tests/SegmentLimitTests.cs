// Segment checks outside 64-bit mode, against the SDM's rules written out by hand: limits of
// expand-up and expand-down data segments, read-only data, the stack segment's #SS, real mode's
// 64 KiB, and CS's limit on instruction fetch. #GP and #SS exit through the exception bitmap, so
// each case shows the vector and the RIP of the instruction that faulted (nothing retired).
using System;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.SoftCpu.Tests;

public sealed class SegmentLimitTests
{
    private const ulong Code = 0x10000;
    private const uint Data32 = 0x4093, ExpandDown32 = 0x4097, ReadOnlyFlat = 0xC091;

    // Runs code (then HLT) in 32-bit protected mode, or real mode, with DS and SS as given: the
    // vector of the exception it stopped at and the RIP there, or -1 and the RIP past the HLT.
    private static (int Vector, ulong Rip) Run(string hex, Segment ds, Segment ss, ulong esp = 0x8000, bool real = false,
        uint csLimit = 0xFFFF_FFFF, Action<VmxVcpu>? after = null)
    {
        using var memory = new GuestMemory();
        memory.AddRam(0, 0x20_0000);
        var vcpu = new VmxVcpu(new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory };
        memory.WriteRam(Code, [.. Convert.FromHexString(hex), 0xF4]);
        vcpu.SetSegment(Register.CS, real ? Segment.Real(0x1000) : new Segment(0x08, 0, csLimit, csLimit > 0xFFFFF ? 0xC09Bu : 0x409Bu));
        vcpu.SetSegment(Register.DS, ds);
        vcpu.SetSegment(Register.SS, ss);
        foreach (Register s in new[] { Register.ES, Register.FS, Register.GS })
            vcpu.SetSegment(s, real ? Segment.Real(0) : Segment.FlatData);
        vcpu.Control = new ControlState(real ? 0x10UL : PagingState.Cr0PE | 0x10, 0, 0, 0, 0);
        vcpu.Rip = real ? 0 : Code;
        vcpu.SetGpr(4, esp);
        Vmcs.Write(vcpu.State, VmcsField.ExceptionBitmap, (1UL << ExceptionVector.SS) | (1UL << ExceptionVector.GP));
        BackendExit exit = vcpu.Run();
        after?.Invoke(vcpu);
        return (HostCpuHarness.ExitVector(vcpu, exit), vcpu.Rip);
    }

    private static Segment Data(uint limit, uint access) => new(0x10, 0, limit, access);

    [Fact]
    public void ExpandUpDataStopsAtItsLimit()
    {
        Assert.Equal((-1, Code + 6), Run("A1FC0F0000", Data(0xFFF, Data32), Segment.FlatData));        // mov eax, [0xFFC]: the last dword
        Assert.Equal((13, Code), Run("A1FD0F0000", Data(0xFFF, Data32), Segment.FlatData));            // mov eax, [0xFFD]: one byte past
    }

    [Fact]
    public void ExpandDownDataHoldsTheOffsetsAboveItsLimit()
    {
        // mov eax, [0x1000] (allowed: above the limit); mov eax, [0xFFF] (the limit itself: #GP).
        Assert.Equal((13, Code + 5), Run("A100100000" + "A1FF0F0000", Data(0xFFF, ExpandDown32), Segment.FlatData));
    }

    [Fact]
    public void ReadOnlyDataRefusesWrites()
    {
        Assert.Equal((-1, Code + 6), Run("A100010000", Data(0xFFFF_FFFF, ReadOnlyFlat), Segment.FlatData)); // mov eax, [0x100]
        Assert.Equal((13, Code), Run("A300010000", Data(0xFFFF_FFFF, ReadOnlyFlat), Segment.FlatData));     // mov [0x100], eax
    }

    [Fact]
    public void TheStackSegmentRaisesStackFaults()
    {
        // push eax (to 0xFFC: inside); mov esp, 0x1002; push eax (0xFFE-0x1001: past the limit).
        Assert.Equal((12, Code + 6), Run("50" + "BC02100000" + "50", Segment.FlatData, Data(0xFFF, Data32), esp: 0x1000));
    }

    [Fact]
    public void RealModeSegmentsEndAt64KiB()
    {
        Assert.Equal((13, 0UL), Run("A1FFFF", Segment.Real(0), Segment.Real(0), real: true)); // mov ax, [0xFFFF]: a word past the end
        Assert.Equal((-1, 4UL), Run("A1FEFF", Segment.Real(0), Segment.Real(0), real: true));  // mov ax, [0xFFFE]
    }

    [Fact]
    public void InstructionsMustEndWithinTheCodeSegment()
    {
        // Four NOPs, then a two-byte JMP whose second byte lies past CS's limit.
        Assert.Equal((13, Code + 4), Run("90909090" + "EBFE", Segment.FlatData, Segment.FlatData, csLimit: (uint)Code + 4));
    }

    [Fact]
    public void NearBranchesPastTheLimitFaultOnTheBranch()
    {
        uint limit = (uint)Code + 0x10;
        // jmp +0x20, call +0x20: #GP with RIP on the branch, and the CALL pushed nothing.
        Assert.Equal((13, Code), Run("EB20", Segment.FlatData, Segment.FlatData, csLimit: limit));
        Assert.Equal((13, Code), Run("E820000000", Segment.FlatData, Segment.FlatData, csLimit: limit,
            after: v => Assert.Equal(0x8000UL, v.GetGpr(4))));
        // A taken JNZ past the limit faults; a JZ not taken (ZF clear after OR of a non-zero EAX) runs on.
        Assert.Equal((13, Code + 7), Run("B801000000" + "09C0" + "7520", Segment.FlatData, Segment.FlatData, csLimit: limit));
        Assert.Equal((-1, Code + 10), Run("B801000000" + "09C0" + "7420", Segment.FlatData, Segment.FlatData, csLimit: limit));
    }
}
