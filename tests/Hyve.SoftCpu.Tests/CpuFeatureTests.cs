// What CPUID reports and what the software CPU runs agree both ways: an extension the policy
// hides raises #UD (not counted as unimplemented: hardware without it does the same), LZCNT and
// TZCNT fall back to the BSR and BSF their encodings are without LZCNT and BMI1, and the vmm's
// policy reaches the processor through VM creation. Expected results from the SDM.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.SoftCpu.Tests;

public sealed class CpuFeatureTests : IDisposable
{
    private readonly GuestMemory _memory = new();

    public void Dispose() => _memory.Dispose();

    // Runs code then HLT in 64-bit mode with SSE enabled and every exception exiting: the vector
    // it stopped at (-1 for the HLT) and the vCPU.
    private (int Vector, VmxVcpu Cpu, SoftProcessor Processor) Run(string hex, CpuFeatures features, Action<VmxVcpu>? setup = null, ulong seed = 0)
    {
        if (_memory.RamSize == 0)
            _memory.AddRam(0, 0x20_0000);
        var cpu = new SoftProcessor(_memory, new VmClock()) { Features = features, RandomSeed = seed };
        var vcpu = new VmxVcpu(cpu, 0xF000_0000) { Memory = _memory };
        int vector = HostCpuHarness.RunToStop(vcpu, _memory, hex, 64, PagingState.Cr4OSFXSR, v =>
        {
            v.SetGpr(6, 0x9000); // rsi: a memory operand
            setup?.Invoke(v);
        });
        return (vector, vcpu, cpu);
    }

    [Theory]
    [InlineData("660F3817C1", CpuFeatures.Sse41)]   // ptest xmm0, xmm1
    [InlineData("660F3A0BC100", CpuFeatures.Sse41)] // roundsd xmm0, xmm1, 0
    [InlineData("660F3837C1", CpuFeatures.Sse42)]   // pcmpgtq xmm0, xmm1
    [InlineData("660F3A63C100", CpuFeatures.Sse42)] // pcmpistri xmm0, xmm1, 0
    [InlineData("F20F38F1C1", CpuFeatures.Sse42)]   // crc32 eax, ecx
    [InlineData("660F3800C1", CpuFeatures.Ssse3)]   // pshufb xmm0, xmm1
    [InlineData("0F3800C1", CpuFeatures.Ssse3)]     // pshufb mm0, mm1
    [InlineData("F20F7CC1", CpuFeatures.Sse3)]      // haddps xmm0, xmm1
    [InlineData("DD0E", CpuFeatures.Sse3)]          // fisttp qword [rsi]
    [InlineData("F30FB8C1", CpuFeatures.Popcnt)]    // popcnt eax, ecx
    [InlineData("0F38F006", CpuFeatures.Movbe)]     // movbe eax, [rsi]
    [InlineData("0FC7F0", CpuFeatures.Rdrand)]      // rdrand eax
    [InlineData("0FC7F8", CpuFeatures.Rdseed)]      // rdseed eax
    [InlineData("0F01F9", CpuFeatures.Rdtscp)]      // rdtscp
    [InlineData("C4E270F2C2", CpuFeatures.Bmi1)]    // andn eax, ecx, edx
    [InlineData("C4E268F5C1", CpuFeatures.Bmi2)]    // bzhi eax, ecx, edx
    [InlineData("C5F458C2", CpuFeatures.Avx)]       // vaddps ymm0, ymm1, ymm2
    [InlineData("C5F5FEC2", CpuFeatures.Avx2)]      // vpaddd ymm0, ymm1, ymm2
    [InlineData("C4E271B8C2", CpuFeatures.Fma)]     // vfmadd231ps xmm0, xmm1, xmm2
    [InlineData("C4E27913C1", CpuFeatures.F16c)]    // vcvtph2ps xmm0, xmm1
    [InlineData("C4E26990048E", CpuFeatures.Avx2)]  // vpgatherdd xmm0, [rsi+xmm1*4], xmm2
    public void AHiddenExtensionRaisesUdAndAnOfferedOneRuns(string insn, CpuFeatures feature)
    {
        var (offered, _, _) = Run(insn, CpuFeatures.All, AvxState);
        Assert.Equal(-1, offered);
        var (hidden, _, cpu) = Run(insn, CpuFeatures.All & ~feature, AvxState);
        Assert.Equal(6, hidden);
        Assert.Equal(0, cpu.Unimplemented);
    }

    // CR4.OSXSAVE with XCR0 = x87 | SSE | AVX, as an operating system that uses AVX sets them.
    private static void AvxState(VmxVcpu v)
    {
        v.Control = v.Control with { Cr4 = v.Control.Cr4 | PagingState.Cr4OSXSAVE };
        v.SetXcr0(7);
    }

    [Theory]
    [InlineData(false, 7UL)]   // CR4.OSXSAVE clear
    [InlineData(true, 3UL)]    // XCR0 without AVX's state
    [InlineData(true, 5UL)]    // XCR0 without SSE's
    public void AvxNeedsOsxsaveAndXcr0(bool osxsave, ulong xcr0)
    {
        // vaddps ymm0, ymm1, ymm2 raises #UD unless the OS enabled both state components; the BMI
        // forms do not care (andn runs either way).
        void Setup(VmxVcpu v)
        {
            if (osxsave)
                v.Control = v.Control with { Cr4 = v.Control.Cr4 | PagingState.Cr4OSXSAVE };
            v.SetXcr0(xcr0);
        }
        Assert.Equal(6, Run("C5F458C2", CpuFeatures.All, Setup).Vector);
        Assert.Equal(-1, Run("C4E270F2C2", CpuFeatures.All, Setup).Vector);
    }

    [Fact]
    public void WithoutLzcntAndBmi1TheirEncodingsAreBsrAndBsf()
    {
        // lzcnt eax, ecx / tzcnt eax, ecx with ECX = 0x10 and EAX = 7.
        void Setup(VmxVcpu v)
        {
            v.SetGpr(0, 7);
            v.SetGpr(1, 0x10);
        }
        Assert.Equal(27UL, Run("F30FBDC1", CpuFeatures.All, Setup).Cpu.GetGpr(0));
        Assert.Equal(4UL, Run("F30FBDC1", CpuFeatures.All & ~CpuFeatures.Lzcnt, Setup).Cpu.GetGpr(0));
        Assert.Equal(4UL, Run("F30FBCC1", CpuFeatures.All, Setup).Cpu.GetGpr(0));
        // Of zero: TZCNT gives the operand size and CF; BSF leaves the destination and sets ZF.
        var (_, tz, _) = Run("F30FBCC1", CpuFeatures.All, v => v.SetGpr(0, 7));
        Assert.Equal(32UL, tz.GetGpr(0));
        Assert.NotEqual(0UL, tz.Rflags & Rflags.CF);
        var (_, bsf, _) = Run("F30FBCC1", CpuFeatures.All & ~CpuFeatures.Bmi1, v => v.SetGpr(0, 7));
        Assert.Equal(7UL, bsf.GetGpr(0));
        Assert.NotEqual(0UL, bsf.Rflags & Rflags.ZF);
    }

    [Fact]
    public void ThePolicyLevelDecidesWhatRuns()
    {
        CpuFeatures v2 = CpuFeatureBits.From(new CpuidPolicy());
        const CpuFeatures Always = CpuFeatures.Popcnt | CpuFeatures.Lzcnt | CpuFeatures.Rdrand | CpuFeatures.Rdseed | CpuFeatures.Rdtscp;
        Assert.Equal(Always | CpuFeatures.Sse3 | CpuFeatures.Ssse3 | CpuFeatures.Sse41 | CpuFeatures.Sse42 | CpuFeatures.Xsave, v2);
        CpuFeatures v1 = CpuFeatureBits.From(new CpuidPolicy { Level = CpuLevel.V1 });
        Assert.Equal(Always, v1);
        CpuFeatures v3 = CpuFeatureBits.From(new CpuidPolicy { Level = CpuLevel.V3 });
        Assert.Equal(CpuFeatures.All, v3);

        // Through a VM: the processor of a v1 VM refuses PTEST.
        _memory.AddRam(0, 0x20_0000);
        var cpu = new SoftProcessor(_memory, new VmClock());
        using var vm = new Vm(new VmxBackend(_memory, _ => cpu, "soft"), 1, _memory, null, CpuLevel.V1);
        Assert.Equal(v1, cpu.Features);
    }

    [Fact]
    public void RdrandRepeatsFromItsSeed()
    {
        // rdrand rax; rdrand rbx; rdseed cx: CF set, the other status flags clear, and the same
        // values again from the same seed (different ones from another).
        ulong[] Values(ulong seed)
        {
            var (_, cpu, _) = Run("480FC7F0480FC7F3660FC7F9", CpuFeatures.All, v => v.Rflags = 0x2 | Rflags.Status, seed);
            return [cpu.GetGpr(0), cpu.GetGpr(3), cpu.GetGpr(1), cpu.Rflags & Rflags.Status];
        }
        ulong[] a = Values(1), b = Values(1);
        Assert.Equal(a, b);
        Assert.NotEqual(a[0], Values(2)[0]);
        Assert.Equal(Rflags.CF, a[3]);
        Assert.NotEqual(a[0], a[1]);
        Assert.True(a[2] <= 0xFFFF);
    }
}
