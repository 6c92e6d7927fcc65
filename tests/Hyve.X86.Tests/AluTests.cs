// Alu against the host CPU: random and edge-case operands for every operation and operand size.
using System;
using System.Collections.Generic;
using System.Globalization;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.X86.Tests;

public sealed class AluTests(ITestOutputHelper output)
{
    private static readonly int Cases = int.TryParse(Environment.GetEnvironmentVariable("HYVE_ALU_CASES"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n : 20_000;
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("HYVE_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int s) ? s : 20261122;

    public static IEnumerable<object[]> Sizes() => [[1], [2], [4], [8]];

    // Operands mixing edge values (0, 1, sign bit, all ones, sign-1) with random ones.
    private static ulong Operand(Random rng, int size)
    {
        ulong m = Alu.Mask(size);
        return rng.Next(6) switch
        {
            0 => 0,
            1 => 1,
            2 => Alu.SignBit(size),
            3 => m,
            4 => Alu.SignBit(size) - 1,
            _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40),
        } & m;
    }

    // Random status flags on top of the fixed bit 1 and IF; TF, DF, AC stay clear.
    private static ulong Flags(Random rng) => Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status);

    private static byte[] Encode(int size, ReadOnlySpan<byte> byteForm, ReadOnlySpan<byte> wideForm)
    {
        var list = new List<byte>();
        if (size == 2) list.Add(0x66);
        if (size == 8) list.Add(0x48);
        list.AddRange((size == 1 ? byteForm : wideForm).ToArray());
        return list.ToArray();
    }

    private void Check(string name, int size, byte[] insn, Func<ulong, ulong, ulong, ulong, (ulong Result, ulong Flags, ulong Defined)> model, bool countInCl)
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var cpu = new NativeCpu();
        var rng = new Random(Seed + size * 31 + name.GetHashCode(StringComparison.Ordinal) % 1000);
        int failures = 0;
        string first = "";
        for (int k = 0; k < Cases; k++)
        {
            ulong a = Operand(rng, 8) | ((ulong)rng.NextInt64() & ~Alu.Mask(size));
            ulong b = countInCl ? (ulong)rng.Next(0, 80) : Operand(rng, size);
            ulong fin = Flags(rng);
            var st = new NativeState { Rax = a, Rcx = b, Rdx = 0, FlagsIn = fin };
            cpu.Run(insn, ref st);
            (ulong r, ulong f, ulong defined) = model(a & Alu.Mask(size), b, fin, 0);
            bool ok = (st.RaxOut & Alu.Mask(size)) == r && (st.FlagsOut & defined) == (f & defined);
            if (!ok && failures++ == 0)
                first = $"{name}/{size}: a={a & Alu.Mask(size):X} b={b:X} flags={fin:X}: cpu {st.RaxOut & Alu.Mask(size):X}/{st.FlagsOut & defined:X} alu {r:X}/{f & defined:X}";
        }
        output.WriteLine($"{name} size {size}: {Cases} cases, seed {Seed} (HYVE_SEED), {failures} failed");
        Assert.True(failures == 0, first);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void BinaryOpsMatchHostCpu(int size)
    {
        foreach (Alu.Op op in Enum.GetValues<Alu.Op>())
        {
            byte opc = (byte)((int)op * 8);
            byte[] insn = Encode(size, [opc, 0xC8], [(byte)(opc + 1), 0xC8]); // op al/ax/eax/rax, cl/cx/ecx/rcx
            Check(op.ToString(), size, insn, (a, b, fin, _) =>
            {
                ulong f = fin;
                ulong r = Alu.Binary(op, a, b, size, ref f);
                return (r, f, Alu.DefinedFlags(op));
            }, countInCl: false);
        }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void IncDecNegMatchHostCpu(int size)
    {
        Check("inc", size, Encode(size, [0xFE, 0xC0], [0xFF, 0xC0]), (a, _, fin, _) => { ulong f = fin; ulong r = Alu.Inc(a, size, ref f); return (r, f, Rflags.Status); }, false);
        Check("dec", size, Encode(size, [0xFE, 0xC8], [0xFF, 0xC8]), (a, _, fin, _) => { ulong f = fin; ulong r = Alu.Dec(a, size, ref f); return (r, f, Rflags.Status); }, false);
        Check("neg", size, Encode(size, [0xF6, 0xD8], [0xF7, 0xD8]), (a, _, fin, _) => { ulong f = fin; ulong r = Alu.Neg(a, size, ref f); return (r, f, Rflags.Status); }, false);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ShiftsAndRotatesMatchHostCpu(int size)
    {
        foreach (Alu.Shift op in Enum.GetValues<Alu.Shift>())
        {
            byte modrm = (byte)(0xC0 | ((int)op << 3));
            byte[] insn = Encode(size, [0xD2, modrm], [0xD3, modrm]); // op al/ax/eax/rax, cl
            Check(op.ToString(), size, insn, (a, count, fin, _) =>
            {
                ulong f = fin;
                ulong r = Alu.ShiftRotate(op, a, count, size, ref f);
                return (r, f, Alu.DefinedFlags(op, Alu.MaskCount(count, size), size));
            }, countInCl: true);
        }
    }
}
