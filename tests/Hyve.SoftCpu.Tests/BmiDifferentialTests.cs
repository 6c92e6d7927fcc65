// BMI1 and BMI2 against the host CPU: random VEX-encoded register and memory forms run natively
// and on the software CPU from the same registers, flags and data; every register but RSP, the
// data area and the flags each instruction defines must agree.
using System;
using System.Runtime.Intrinsics.X86;
using Hyve.TestSupport;
using Hyve.Vmm;
using Hyve.Vmm.Verification;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.SoftCpu.Tests;

public sealed class BmiDifferentialTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_SOFTCPU_CASES", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261122) + 31;

    // VEX map, opcode, VEX.pp, ModRM.reg (-1: a register), whether an imm8 follows.
    private static readonly (int Map, byte Opcode, int Pp, int Digit, bool Imm)[] Forms =
    [
        (2, 0xF2, 0, -1, false), // andn
        (2, 0xF3, 0, 1, false),  // blsr
        (2, 0xF3, 0, 2, false),  // blsmsk
        (2, 0xF3, 0, 3, false),  // blsi
        (2, 0xF7, 0, -1, false), // bextr
        (2, 0xF5, 0, -1, false), // bzhi
        (2, 0xF5, 2, -1, false), // pext
        (2, 0xF5, 3, -1, false), // pdep
        (2, 0xF6, 3, -1, false), // mulx
        (2, 0xF7, 1, -1, false), // shlx
        (2, 0xF7, 2, -1, false), // sarx
        (2, 0xF7, 3, -1, false), // shrx
        (3, 0xF0, 3, -1, true),  // rorx
    ];

    [SkippableFact]
    public void BmiInstructionsMatchTheHostCpu()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        Skip.IfNot(Bmi1.X64.IsSupported && Bmi2.X64.IsSupported, "this host CPU has no BMI1/BMI2 to compare with");
        using var native = new NativeCpu();
        var rng = new Random(Seed);
        using var memory = new GuestMemory();
        VmxVcpu vcpu = HostCpuHarness.LongModeVcpu(memory, PagingState.Cr4PAE);
        HostCpuHarness.MapHostData(memory, native);
        byte[] data = new byte[native.Data.Length], soft = new byte[native.Data.Length];
        int failures = 0, run = 0, memoryForms = 0;
        var seen = new System.Collections.Generic.HashSet<Mnemonic>();
        string first = "";
        for (int k = 0; run < Cases; k++) // skipped draws (RSP, a base that is not plain) do not count
        {
            var (map, opcode, pp, digit, imm) = Forms[rng.Next(Forms.Length)];
            bool wide = rng.Next(2) == 0;
            int reg = digit >= 0 ? digit : rng.Next(16), rm = rng.Next(16), vvvv = imm ? 0 : rng.Next(16); // RORX has no VEX.vvvv operand
            bool mem = rng.Next(4) == 0;
            if ((digit < 0 && reg == 4) || vvvv == 4 || (!mem && rm == 4) || (mem && (rm & 7) is 4 or 5))
                continue; // RSP stays the host's; memory through a plain base register
            int r = digit >= 0 ? 0 : (reg >> 3) & 1, b = (rm >> 3) & 1;
            byte[] code =
            [
                0xC4, (byte)(((r ^ 1) << 7) | (1 << 6) | ((b ^ 1) << 5) | map),
                (byte)((wide ? 0x80 : 0) | ((~vvvv & 15) << 3) | pp),
                opcode, (byte)((mem ? 0x80 : 0xC0) | ((reg & 7) << 3) | (rm & 7)),
            ];
            int disp = mem ? rng.Next(-64, 64) : 0;
            if (mem)
                code = [.. code, .. BitConverter.GetBytes(disp)];
            if (imm)
                code = [.. code, (byte)rng.Next(256)];
            Assert.Equal(DecodeStatus.Ok, Decoder.Decode(code, Bitness.Bits64, out Instruction d));

            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status) };
            for (int n = 0; n < 16; n++)
                st.In[n] = Operand(rng);
            if (mem)
                st.In[rm] = native.DataAddress + 128 + (ulong)rng.Next(native.Data.Length - 256);
            rng.NextBytes(data);
            HostCpuHarness.LoadData(memory, native, data);
            string? diff = HostCpuHarness.RunBoth(vcpu, memory, native, code, ref st) ?? HostCpuHarness.DataDifference(memory, native, soft);
            ulong defined = Defined(d.Mnemonic);
            if (diff == null && (vcpu.Rflags & defined) != (st.FlagsOut & defined))
                diff = $"flags: cpu {st.FlagsOut & defined:X} soft {vcpu.Rflags & defined:X}";
            run++;
            memoryForms += mem ? 1 : 0;
            seen.Add(d.Mnemonic);
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(code)} ({d.Mnemonic}): {diff}";
        }
        output.WriteLine($"{run} cases ({memoryForms} with a memory operand) over {seen.Count} mnemonics, seed {Seed} (HYVE_SEED + 31): {failures} failed {first}");
        Assert.Equal(Forms.Length, seen.Count);
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    // Values that reach the edges: small counts and indices, zero, all ones, single bits, random.
    private static ulong Operand(Random rng) => rng.Next(6) switch
    {
        0 => (uint)rng.Next(0, 80) | ((uint)rng.Next(0, 80) << 8),
        1 => 0,
        2 => ulong.MaxValue >> rng.Next(64),
        3 => 1UL << rng.Next(64),
        _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40),
    };

    // The flags the SDM defines for each (AF and PF are undefined where flags are written at all).
    private static ulong Defined(Mnemonic m) => m switch
    {
        Mnemonic.Andn or Mnemonic.Blsi or Mnemonic.Blsmsk or Mnemonic.Blsr or Mnemonic.Bzhi
            => Rflags.CF | Rflags.ZF | Rflags.SF | Rflags.OF,
        Mnemonic.Bextr => Rflags.CF | Rflags.ZF | Rflags.OF,
        _ => Rflags.Status, // MULX, PDEP, PEXT, RORX and the shifts leave every flag alone
    };
}
