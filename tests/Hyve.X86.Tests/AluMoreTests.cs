// Alu's multiply, divide, bit-test, bit-scan and double-shift operations against the host CPU.
using System;
using System.Collections.Generic;
using System.Runtime.Intrinsics.X86;
using Hyve.Vmm.Verification;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.X86.Tests;

public sealed class AluMoreTests(ITestOutputHelper output)
{
    private const int Cases = 20_000;
    private const int Seed = 20261123;

    public static IEnumerable<object[]> Sizes() => [[1], [2], [4], [8]];

    public static IEnumerable<object[]> WideSizes() => [[2], [4], [8]];

    private static ulong Operand(Random rng, int size) => HostCpuCheck.Operand(rng, size);

    private static ulong Flags(Random rng) => HostCpuCheck.Flags(rng);

    private static byte[] Encode(int size, bool f3, params byte[] opcode) => HostCpuCheck.Encode(size, f3, opcode);

    private void Run(string name, int size, byte[] insn, Func<Random, NativeState> input,
        Func<NativeState, (ulong Rax, ulong Rdx, ulong Flags, ulong Defined, bool CheckRax, bool CheckRdx)> model) =>
        HostCpuCheck.Run(output, name, size, insn, Cases, Seed, input, st =>
        {
            var e = model(st);
            return new Expected(e.Rax, e.Rdx, e.Flags, e.Defined, e.CheckRax, e.CheckRdx);
        });

    [Theory]
    [MemberData(nameof(Sizes))]
    public void MulAndImulMatchHostCpu(int size)
    {
        NativeState In(Random r) => new() { Rax = Operand(r, 8), Rcx = Operand(r, size), Rdx = Operand(r, 8), FlagsIn = Flags(r) };
        foreach (bool signed in new[] { false, true })
        {
            byte[] insn = Encode(size, false, size == 1 ? (byte)0xF6 : (byte)0xF7, signed ? (byte)0xE9 : (byte)0xE1);
            Run(signed ? "imul1" : "mul", size, insn, In, s =>
            {
                ulong f = s.FlagsIn;
                ulong lo = signed ? Alu.Imul(s.Rax, s.Rcx, size, out ulong hi, ref f) : Alu.Mul(s.Rax, s.Rcx, size, out hi, ref f);
                // Byte forms leave the product in AX; wider forms in rDX:rAX.
                return size == 1
                    ? (lo | (hi << 8), 0, f, Rflags.CF | Rflags.OF, true, false)
                    : (lo, hi, f, Rflags.CF | Rflags.OF, true, true);
            });
        }
        if (size > 1)
        {
            Run("imul2", size, Encode(size, false, 0x0F, 0xAF, 0xC1), In, s =>
            {
                ulong f = s.FlagsIn;
                ulong lo = Alu.Imul(s.Rax, s.Rcx, size, out _, ref f);
                return (lo, 0, f, Rflags.CF | Rflags.OF, true, false);
            });
        }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void DivAndIdivMatchHostCpu(int size)
    {
        ulong m = Alu.Mask(size);
        // Dividends chosen so that the native instruction cannot fault (#DE would end the process);
        // the faulting cases are covered by DivideErrorCases.
        NativeState Unsigned(Random r)
        {
            ulong d = Operand(r, size) | 1;
            ulong hi = d == 1 ? 0 : (ulong)r.NextInt64() % d;
            ulong lo = Operand(r, size);
            return size == 1
                ? new() { Rax = ((hi << 8) | lo) & 0xFFFF, Rcx = d, Rdx = 0, FlagsIn = Flags(r) }
                : new() { Rax = lo, Rdx = hi, Rcx = d, FlagsIn = Flags(r) };
        }
        NativeState Signed(Random r)
        {
            ulong d = Operand(r, size);
            if (d == 0 || d == m)
                d = 3;
            ulong lo = Operand(r, size);
            ulong hi = (lo & Alu.SignBit(size)) != 0 ? m : 0;
            return size == 1
                ? new() { Rax = ((hi << 8) | lo) & 0xFFFF, Rcx = d, Rdx = 0, FlagsIn = Flags(r) }
                : new() { Rax = lo, Rdx = hi, Rcx = d, FlagsIn = Flags(r) };
        }
        foreach (bool signed in new[] { false, true })
        {
            byte[] insn = Encode(size, false, size == 1 ? (byte)0xF6 : (byte)0xF7, signed ? (byte)0xF9 : (byte)0xF1);
            Run(signed ? "idiv" : "div", size, insn, signed ? Signed : Unsigned, s =>
            {
                ulong hi = size == 1 ? (s.Rax >> 8) & 0xFF : s.Rdx;
                bool ok = signed ? Alu.Idiv(hi, s.Rax, s.Rcx, size, out ulong q, out ulong rem) : Alu.Div(hi, s.Rax, s.Rcx, size, out q, out rem);
                Assert.True(ok, $"model reports #DE for a non-faulting case {s.Rax:X}/{s.Rcx:X}");
                return size == 1 ? (q | (rem << 8), 0UL, 0UL, 0UL, true, false) : (q, rem, 0UL, 0UL, true, true);
            });
        }
    }

    [Fact]
    public void DivideErrorCases()
    {
        Assert.False(Alu.Div(0, 5, 0, 4, out _, out _));                       // divide by zero
        Assert.False(Alu.Div(1, 0, 1, 4, out _, out _));                       // quotient 2^32
        Assert.True(Alu.Div(0, 0xFFFF_FFFF, 1, 4, out ulong q, out _));
        Assert.Equal(0xFFFF_FFFFUL, q);
        Assert.False(Alu.Idiv(0xFF, 0x80, 0xFF, 1, out _, out _));             // -128 / -1
        Assert.False(Alu.Idiv(ulong.MaxValue, 1UL << 63, ulong.MaxValue, 8, out _, out _)); // INT64_MIN / -1
        Assert.True(Alu.Idiv(0xFFFF, 0xFFF9, 2, 2, out q, out ulong r));       // -7 / 2 = -3 rem -1
        Assert.Equal(0xFFFDUL, q);
        Assert.Equal(0xFFFFUL, r);
    }

    [Theory]
    [MemberData(nameof(WideSizes))]
    public void BitTestsMatchHostCpu(int size)
    {
        NativeState In(Random r) => new() { Rax = Operand(r, 8), Rcx = (ulong)r.Next(0, 256), Rdx = 0, FlagsIn = Flags(r) };
        byte[] opcodes = [0xA3, 0xAB, 0xB3, 0xBB];
        foreach (Alu.BitOp op in Enum.GetValues<Alu.BitOp>())
        {
            Run(op.ToString(), size, Encode(size, false, 0x0F, opcodes[(int)op], 0xC8), In, s =>
            {
                ulong f = s.FlagsIn;
                ulong v = Alu.BitTest(op, s.Rax, s.Rcx, size, ref f);
                return (v, 0, f, Rflags.CF, true, false);
            });
        }
    }

    [Theory]
    [MemberData(nameof(WideSizes))]
    public void BitScansAndCountsMatchHostCpu(int size)
    {
        NativeState In(Random r) => new() { Rax = Operand(r, 8), Rcx = r.Next(4) == 0 ? 0 : Operand(r, size), Rdx = 0, FlagsIn = Flags(r) };
        Run("bsf", size, Encode(size, false, 0x0F, 0xBC, 0xC1), In, s =>
        {
            ulong f = s.FlagsIn;
            ulong v = Alu.Bsf(s.Rcx, s.Rax, size, ref f);
            return (v, 0, f, Rflags.ZF, (s.Rcx & Alu.Mask(size)) != 0, false);
        });
        Run("bsr", size, Encode(size, false, 0x0F, 0xBD, 0xC1), In, s =>
        {
            ulong f = s.FlagsIn;
            ulong v = Alu.Bsr(s.Rcx, s.Rax, size, ref f);
            return (v, 0, f, Rflags.ZF, (s.Rcx & Alu.Mask(size)) != 0, false);
        });
        Run("popcnt", size, Encode(size, true, 0x0F, 0xB8, 0xC1), In, s =>
        {
            ulong f = s.FlagsIn;
            return (Alu.Popcnt(s.Rcx, size, ref f), 0, f, Rflags.Status, true, false);
        });
        if (Bmi1.IsSupported)
        {
            Run("tzcnt", size, Encode(size, true, 0x0F, 0xBC, 0xC1), In, s =>
            {
                ulong f = s.FlagsIn;
                return (Alu.Tzcnt(s.Rcx, size, ref f), 0, f, Rflags.CF | Rflags.ZF, true, false);
            });
        }
        if (Lzcnt.IsSupported)
        {
            Run("lzcnt", size, Encode(size, true, 0x0F, 0xBD, 0xC1), In, s =>
            {
                ulong f = s.FlagsIn;
                return (Alu.Lzcnt(s.Rcx, size, ref f), 0, f, Rflags.CF | Rflags.ZF, true, false);
            });
        }
    }

    [Theory]
    [MemberData(nameof(WideSizes))]
    public void DoubleShiftsMatchHostCpu(int size)
    {
        NativeState In(Random r) => new() { Rax = Operand(r, 8), Rdx = Operand(r, size), Rcx = (ulong)r.Next(0, 70), FlagsIn = Flags(r) };
        foreach (bool left in new[] { true, false })
        {
            Run(left ? "shld" : "shrd", size, Encode(size, false, 0x0F, left ? (byte)0xA5 : (byte)0xAD, 0xD0), In, s =>
            {
                ulong f = s.FlagsIn;
                ulong v = left ? Alu.Shld(s.Rax, s.Rdx, s.Rcx, size, ref f) : Alu.Shrd(s.Rax, s.Rdx, s.Rcx, size, ref f);
                int c = Alu.MaskCount(s.Rcx, size);
                return (v, 0, f, Alu.DefinedDoubleShiftFlags(c, size), c <= 8 * size, false);
            });
        }
    }
}
