// Guest memory, the VM clock, the CPUID policy and the vmm's MSRs.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Backend;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VmPartsTests
{
    [Fact]
    public void GuestMemoryHasRamRegionsAndHolesBetweenThem()
    {
        using var m = new GuestMemory();
        m.AddRam(0, 0xA_0000);
        m.AddRam(0x10_0000, 0x10_0000);
        Assert.Throws<ArgumentException>(() => m.AddRam(0x1F_F000, 0x2000)); // overlaps
        Assert.Throws<ArgumentException>(() => m.AddRam(0x30_0800, 0x1000)); // not page-aligned
        Assert.Equal(0x1A_0000UL, m.RamSize);
        Assert.True(m.WriteRam(0x9_FFFC, [1, 2, 3, 4]));
        Assert.False(m.WriteRam(0x9_FFFE, [1, 2, 3, 4])); // runs into the hole
        Assert.False(m.IsRam(0xB_8000));
        Span<byte> b = stackalloc byte[4];
        Assert.True(m.ReadRam(0x9_FFFC, b));
        Assert.Equal([1, 2, 3, 4], b.ToArray());
        m.Span(0x10_0000, 2)[1] = 7;
        Assert.True(m.ReadRam(0x10_0001, b[..1]));
        Assert.Equal(7, b[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Span(0x1F_FFFF, 2));
    }

    [Fact]
    public void VirtualClockMovesOnlyWhenTold()
    {
        var clock = new VmClock();
        var fired = new List<long>();
        var a = new ClockTimer(() => fired.Add(clock.Now));
        var b = new ClockTimer(() => fired.Add(-clock.Now));
        clock.Add(a);
        clock.Add(b);
        Assert.False(clock.SkipToNextDeadline());
        VmClock.Arm(a, 500);
        VmClock.Arm(b, 200);
        Assert.Equal(200, clock.NextDeadline);
        clock.Advance(100);
        Assert.Empty(fired);
        Assert.True(clock.SkipToNextDeadline());
        Assert.Equal([-200L], fired);
        Assert.False(b.Armed);
        clock.Advance(1000);
        Assert.Equal([-200L, 1200L], fired);
        Assert.Equal(long.MaxValue, clock.NextDeadline);
    }

    [Fact]
    public void CpuidIsConsistent()
    {
        var p = new CpuidPolicy { Vcpus = 4 };
        var (maxBasic, b, c, d) = p.Query(0, 0, 0);
        Assert.Equal("GenuineIntel", string.Concat(Text(b), Text(d), Text(c)));
        Assert.True(maxBasic >= 7);
        var (_, ebx1, ecx1, edx1) = p.Query(1, 0, 3);
        Assert.Equal(3u, ebx1 >> 24);                // APIC ID
        Assert.Equal(4u, (ebx1 >> 16) & 0xFF);       // logical processors
        Assert.NotEqual(0u, edx1 & (1u << 28));      // HTT with more than one
        Assert.Equal(1u << 26, ecx1 & ((1u << 26) | (1u << 27) | (1u << 28) | (1u << 12) | (1u << 29))); // XSAVE; OSXSAVE clear after reset; no AVX, FMA, F16C
        Assert.Equal(1u << 27, p.Query(1, 0, 0, PagingState.Cr4OSXSAVE, 1).Ecx & (1u << 27)); // OSXSAVE is CR4's
        Assert.Equal(0u, new CpuidPolicy { Level = CpuLevel.V1 }.Query(1, 0, 0, PagingState.Cr4OSXSAVE, 1).Ecx & ((1u << 26) | (1u << 27)));
        Assert.Equal((0u, 0u, 0u, 0u), new CpuidPolicy { Level = CpuLevel.V1 }.Query(0xD, 0, 0));
        // x86-64-v3: FMA, MOVBE, AVX, F16C; BMI1, AVX2, BMI2; AVX's XSAVE component (256 bytes at 576).
        var v3 = new CpuidPolicy { Level = CpuLevel.V3 };
        uint v3Ecx = (1u << 12) | (1u << 22) | (1u << 28) | (1u << 29);
        Assert.Equal(v3Ecx, v3.Query(1, 0, 0).Ecx & v3Ecx);
        Assert.Equal((1u << 3) | (1u << 5) | (1u << 8), v3.Query(7, 0, 0).Ebx & ((1u << 3) | (1u << 5) | (1u << 8)));
        Assert.Equal((7u, 576u, 832u, 0u), v3.Query(0xD, 0, 0, PagingState.Cr4OSXSAVE, 3));
        Assert.Equal(832u, v3.Query(0xD, 0, 0, PagingState.Cr4OSXSAVE, 7).Ebx);
        Assert.Equal((256u, 576u, 0u, 0u), v3.Query(0xD, 2, 0));
        Assert.Equal((0u, 0u, 0u, 0u), p.Query(0xD, 2, 0)); // no AVX state at v2
        Assert.True(v3.ValidXcr0(7));
        Assert.False(p.ValidXcr0(7));
        Assert.Equal(0u, p.Query(7, 0, 0).Ebx & ((1u << 3) | (1u << 5) | (1u << 8) | (1u << 16))); // no BMI1, AVX2, BMI2, AVX-512
        Assert.Equal(0x8000_0008u, p.Query(0x8000_0000, 0, 0).Eax);
        Assert.NotEqual(0u, p.Query(0x8000_0001, 0, 0).Edx & (1u << 29)); // long mode
        Assert.Equal(46u, p.Query(0x8000_0008, 0, 0).Eax & 0xFF);
        Assert.Equal("HyveHyveHyve", string.Concat(Text(p.Query(0x4000_0000, 0, 0).Ebx), Text(p.Query(0x4000_0000, 0, 0).Ecx), Text(p.Query(0x4000_0000, 0, 0).Edx)));
        Assert.Equal((0u, 0u, 0u, 0u), p.Query(0x1234, 0, 0));
    }

    [Theory]
    [InlineData(1_000_000_000UL)]
    [InlineData(2_596_096_000UL)]
    [InlineData(4_500_000_000UL)] // above 32 bits: a 1 kHz crystal and a multiplier
    public void Leaf15GivesTheTscFrequency(ulong hz)
    {
        var (den, num, crystal, _) = new CpuidPolicy { TscHz = hz }.Query(0x15, 0, 0);
        Assert.Equal(hz, (ulong)crystal * num / den); // the SDM's formula: crystal * EBX / EAX
    }

    private static string Text(uint w) => System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(w));

    [Fact]
    public void MsrsCheckTheirValues()
    {
        var cpu = new FakeVcpu { Control = new ControlState(PagingState.Cr0PE, 0, 0, 0, 0) };
        var msrs = new MsrFile(bootstrap: false);
        Assert.Equal(MsrResult.Handled, msrs.Read(Msr.ApicBase, cpu, 0, out ulong v));
        Assert.Equal(0xFEE0_0800UL, v); // an AP: no BSP flag
        Assert.Equal(MsrResult.Handled, msrs.Write(Msr.Efer, PagingState.EferLME | PagingState.EferNXE | 1, cpu, 0));
        Assert.Equal(PagingState.EferLME | PagingState.EferNXE | 1, cpu.Control.Efer);
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.Efer, 1UL << 20, cpu, 0)); // reserved bit
        cpu.Control = cpu.Control with { Cr0 = cpu.Control.Cr0 | PagingState.Cr0PG };
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.Efer, 1, cpu, 0)); // LME cannot change under paging
        Assert.Equal(MsrResult.Handled, msrs.Write(Msr.Tsc, 1000, cpu, 400));
        Assert.Equal(1600UL, msrs.Tsc(1000));
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.Pat, 0x0000_0000_0000_0002, cpu, 0));
        Assert.Equal(MsrResult.Handled, msrs.Write(Msr.Lstar, 0xFFFF_FFFF_8100_0000, cpu, 0));
        Assert.Equal(0xFFFF_FFFF_8100_0000UL, cpu.KeptMsrs[Msr.Lstar]);
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.Lstar, 0x0000_8000_0000_0000, cpu, 0)); // not canonical
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.FeatureControl, 0, cpu, 0));
        Assert.Equal(MsrResult.Fault, msrs.Read(0x830, cpu, 0, out _)); // x2APIC off
        Assert.Equal(MsrResult.NotOwned, msrs.Read(0x4B56_4D00, cpu, 0, out _));
        Assert.Equal(MsrResult.Handled, msrs.Write(0x20D, 0xFFF0_0000_0800, cpu, 0)); // a variable MTRR mask
        Assert.Equal(MsrResult.Handled, msrs.Read(0x20D, cpu, 0, out v));
        Assert.Equal(0xFFF0_0000_0800UL, v);
    }
}
