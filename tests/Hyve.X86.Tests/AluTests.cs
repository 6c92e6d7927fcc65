// Alu's binary operations, INC/DEC/NEG, shifts and rotates against the host CPU, for every size.
using System;
using System.Collections.Generic;
using Hyve.TestSupport;
using Hyve.Vmm.Verification;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.X86.Tests;

public sealed class AluTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_ALU_CASES", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261122);

    public static IEnumerable<object[]> Sizes() => [[1], [2], [4], [8]];

    // RAX carries random bits above the operand so that writes of each width are checked too.
    private static NativeState Input(Random rng, int size, bool count) => new()
    {
        Rax = HostCpuCheck.Operand(rng, 8) | ((ulong)rng.NextInt64() & ~Alu.Mask(size)),
        Rcx = count ? (ulong)rng.Next(0, 80) : HostCpuCheck.Operand(rng, size),
        FlagsIn = HostCpuCheck.Flags(rng),
    };

    private void Check(string name, int size, byte[] insn, bool countInCl, Func<NativeState, Expected> model) =>
        HostCpuCheck.Run(output, name, size, insn, Cases, Seed, r => Input(r, size, countInCl), model);

    [Theory]
    [MemberData(nameof(Sizes))]
    public void BinaryOpsMatchHostCpu(int size)
    {
        foreach (Alu.Op op in Enum.GetValues<Alu.Op>())
        {
            byte opc = (byte)((int)op * 8);
            // op al/ax/eax/rax, cl/cx/ecx/rcx
            Check(op.ToString(), size, HostCpuCheck.Encode(size, false, size == 1 ? opc : (byte)(opc + 1), 0xC8), false, st =>
            {
                ulong f = st.FlagsIn;
                ulong r = Alu.Binary(op, st.Rax, st.Rcx, size, ref f);
                return new Expected(r, 0, f, Alu.DefinedFlags(op));
            });
        }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void IncDecNegMatchHostCpu(int size)
    {
        byte grp = size == 1 ? (byte)0xFE : (byte)0xFF;
        byte neg = size == 1 ? (byte)0xF6 : (byte)0xF7;
        Check("inc", size, HostCpuCheck.Encode(size, false, grp, 0xC0), false, st => { ulong f = st.FlagsIn; ulong r = Alu.Inc(st.Rax, size, ref f); return new Expected(r, 0, f, Rflags.Status); });
        Check("dec", size, HostCpuCheck.Encode(size, false, grp, 0xC8), false, st => { ulong f = st.FlagsIn; ulong r = Alu.Dec(st.Rax, size, ref f); return new Expected(r, 0, f, Rflags.Status); });
        Check("neg", size, HostCpuCheck.Encode(size, false, neg, 0xD8), false, st => { ulong f = st.FlagsIn; ulong r = Alu.Neg(st.Rax, size, ref f); return new Expected(r, 0, f, Rflags.Status); });
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ShiftsAndRotatesMatchHostCpu(int size)
    {
        foreach (Alu.Shift op in Enum.GetValues<Alu.Shift>())
        {
            byte modrm = (byte)(0xC0 | ((int)op << 3));
            // op al/ax/eax/rax, cl
            Check(op.ToString(), size, HostCpuCheck.Encode(size, false, size == 1 ? (byte)0xD2 : (byte)0xD3, modrm), true, st =>
            {
                ulong f = st.FlagsIn;
                ulong r = Alu.ShiftRotate(op, st.Rax, st.Rcx, size, ref f);
                return new Expected(r, 0, f, Alu.DefinedFlags(op, Alu.MaskCount(st.Rcx, size), size));
            });
        }
    }
}
