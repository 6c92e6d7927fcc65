// The legacy instructions where the host cannot be the oracle (it would take a signal, or it
// cannot run real mode), checked against the SDM by hand: BOUND out of range (#BR), AAM by zero
// (#DE), the legacy set in 64-bit mode (#UD), ARPL in real mode (#UD), a far-pointer load of a
// null SS (#GP), RDPMC with no counters (#GP), and PUSHA/POPA and LES in real mode as firmware
// runs them.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.SoftCpu.Tests;

public sealed class LegacyTests : IDisposable
{
    private const ulong Code = 0x10000;
    private readonly System.Collections.Generic.List<GuestMemory> _memories = [];

    public void Dispose()
    {
        foreach (GuestMemory m in _memories)
            m.Dispose();
    }

    // Runs code then HLT with every exception exiting: the vector it stopped at (-1 for the HLT),
    // and the vCPU for its registers.
    private (int Vector, VmxVcpu Cpu) Run(string hex, int bits, Action<GuestMemory>? data = null, Action<VmxVcpu>? setup = null)
    {
        var memory = new GuestMemory();
        _memories.Add(memory);
        memory.AddRam(0, 0x20_0000);
        var vcpu = new VmxVcpu(new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory };
        data?.Invoke(memory);
        return (HostCpuHarness.RunToStop(vcpu, memory, hex, bits, 0, setup), vcpu);
    }

    [Fact]
    public void BoundOutOfRangeRaisesBr()
    {
        // bounds [-5, 100] at 0x9000; bound eax, [0x9000] with EAX 101, then -6, then 100.
        void Bounds(GuestMemory m) => m.WriteRam(0x9000, [.. BitConverter.GetBytes(-5), .. BitConverter.GetBytes(100)]);
        Assert.Equal(5, Run("620500900000", 32, Bounds, v => v.SetGpr(0, 101)).Vector);
        Assert.Equal(5, Run("620500900000", 32, Bounds, v => v.SetGpr(0, unchecked((ulong)-6L))).Vector);
        var (vector, cpu) = Run("620500900000", 32, Bounds, v => v.SetGpr(0, 100));
        Assert.Equal(-1, vector);
        Assert.Equal(Code + 7, cpu.Rip);
        Assert.Equal(6, Run("62C0", 32).Vector); // a register operand is not BOUND (an EVEX prefix: #UD)
    }

    [Fact]
    public void AamByZeroRaisesDeAndTheLegacySetIsUdIn64BitMode()
    {
        Assert.Equal(0, Run("D400", 32).Vector);
        foreach (string insn in new[] { "60", "61", "27", "2F", "37", "3F", "D40A", "D50A", "D6" })
            Assert.Equal(6, Run(insn, 64).Vector);
        Assert.Equal(6, Run("63C0", 16).Vector); // ARPL in real mode
    }

    [Fact]
    public void RdpmcRaisesGpWithoutCounters()
    {
        // No performance counters (CPUID leaf 0xA reports none): every ECX is out of range, #GP(0).
        Assert.Equal(13, Run("0F33", 32).Vector);
        Assert.Equal(13, Run("0F33", 64).Vector);
    }

    [Fact]
    public void AFarPointerLoadOfANullStackSegmentRaisesGp()
    {
        // lss eax, [0x9000] with the pointer 0x1234:0000 (a null selector) in 32-bit protected mode.
        void Pointer(GuestMemory m) => m.WriteRam(0x9000, [0x34, 0x12, 0, 0, 0, 0]);
        var (vector, cpu) = Run("0FB20500900000", 32, Pointer, v => v.SetGpr(0, 7));
        Assert.Equal(13, vector);
        Assert.Equal(7UL, cpu.GetGpr(0)); // the register is left as it was
    }

    [Fact]
    public void PushaPopaAndLesInRealMode()
    {
        // pushad (66 60) at SP 0x8000, then popa (16-bit) of the low words, as real-mode firmware
        // runs them; then les di, [0x9000] with the pointer 0x2345:0x6789.
        void Pointer(GuestMemory m) => m.WriteRam(0x9000, [0x89, 0x67, 0x45, 0x23]);
        var (vector, cpu) = Run("6660" + "C43E0090", 16, Pointer, v =>
        {
            for (int r = 0; r < 8; r++)
            {
                if (r != 4)
                    v.SetGpr(r, 0x1111_0000UL * (ulong)(r + 1) + (ulong)r);
            }
        });
        Assert.Equal(-1, vector);
        Assert.Equal(0x8000UL - 32, cpu.GetGpr(4));
        Span<byte> stack = stackalloc byte[32];
        Assert.True(cpu.Memory!.ReadRam(0x8000 - 32, stack));
        // EDI at the lowest address, EAX at the highest; the stored ESP is the one before.
        Assert.Equal(0x8000u, BitConverter.ToUInt32(stack[12..]));
        Assert.Equal(0x1111_0000u * 8 + 7, BitConverter.ToUInt32(stack));
        Assert.Equal(0x1111_0000u, BitConverter.ToUInt32(stack[28..]));
        Assert.Equal(0x6789UL, cpu.GetGpr(7) & 0xFFFF);
        Assert.Equal((ushort)0x2345, cpu.GetSegment(Register.ES).Selector);
        Assert.Equal(0x23450UL, cpu.GetSegment(Register.ES).Base);
    }
}
