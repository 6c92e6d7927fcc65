// Shared driver of the differential tests against the host CPU: random states, one native run
// and one model run per state, the defined flags compared, the first difference reported.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Verification;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.X86.Tests;

/// <summary>What the model predicts for one state, and which parts of it to compare.</summary>
/// <param name="Rax">Expected RAX (compared at the operand size).</param>
/// <param name="Rdx">Expected RDX (compared at the operand size).</param>
/// <param name="Flags">Expected RFLAGS.</param>
/// <param name="Defined">The flags to compare.</param>
/// <param name="CheckRax">Whether to compare RAX.</param>
/// <param name="CheckRdx">Whether to compare RDX.</param>
public readonly record struct Expected(ulong Rax, ulong Rdx, ulong Flags, ulong Defined, bool CheckRax = true, bool CheckRdx = false);

/// <summary>Helpers for the host-CPU differential tests.</summary>
public static class HostCpuCheck
{
    /// <summary>An operand mixing edge values (0, 1, sign bit, all ones) with random ones.</summary>
    public static ulong Operand(Random rng, int size) => rng.Next(5) switch
    {
        0 => 0,
        1 => 1,
        2 => Alu.SignBit(size),
        3 => Alu.Mask(size),
        _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40),
    } & Alu.Mask(size);

    /// <summary>Random status flags on top of bit 1 and IF; TF, DF and AC stay clear.</summary>
    public static ulong Flags(Random rng) => Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status);

    /// <summary>Prefixes in legal order (66, a mandatory F3, REX.W) and then the opcode bytes.</summary>
    public static byte[] Encode(int size, bool f3, params byte[] opcode)
    {
        var b = new List<byte>();
        if (size == 2) b.Add(0x66);
        if (f3) b.Add(0xF3);
        if (size == 8) b.Add(0x48);
        b.AddRange(opcode);
        return b.ToArray();
    }

    /// <summary>Runs <paramref name="cases"/> states from <paramref name="input"/> natively and through
    /// <paramref name="model"/>; fails with the first difference.</summary>
    public static void Run(ITestOutputHelper output, string name, int size, byte[] insn, int cases, int seed,
        Func<Random, NativeState> input, Func<NativeState, Expected> model)
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var cpu = new NativeCpu();
        var rng = new Random(seed + size * 131 + name.Length * 7 + name[0]);
        ulong m = Alu.Mask(size);
        int failures = 0;
        string first = "";
        for (int k = 0; k < cases; k++)
        {
            NativeState st = input(rng);
            NativeState before = st;
            cpu.Run(insn, ref st);
            Expected e = model(before);
            bool ok = (!e.CheckRax || (st.RaxOut & m) == (e.Rax & m))
                && (!e.CheckRdx || (st.RdxOut & m) == (e.Rdx & m))
                && (st.FlagsOut & e.Defined) == (e.Flags & e.Defined);
            if (!ok && failures++ == 0)
                first = $"{name}/{size}: rax={before.Rax:X} rcx={before.Rcx:X} rdx={before.Rdx:X} f={before.FlagsIn:X}: cpu {st.RaxOut & m:X}/{st.RdxOut & m:X}/{st.FlagsOut & e.Defined:X} alu {e.Rax & m:X}/{e.Rdx & m:X}/{e.Flags & e.Defined:X}";
        }
        output.WriteLine($"{name} size {size}: {cases} cases, seed {seed}, {failures} failed");
        Assert.True(failures == 0, first);
    }
}
