// AVX and AVX2 against the host CPU: every VEX form the software CPU runs, with random registers,
// immediates and memory operands, run natively and on the software CPU. The code is the same on
// both: it loads MXCSR and YMM0-15 from the data area, runs the instruction, and stores YMM0-15
// and MXCSR back there, so the data area (operands and results), the general registers and the
// flags are compared, and the software CPU's own YMM registers are checked against the host's
// stored ones.
using System;
using System.Collections.Generic;
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

public sealed class AvxDifferentialTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_SOFTCPU_CASES", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261122) + 41;

    // The data area: YMM0-15 in, YMM0-15 out, MXCSR in and out, then operand memory.
    private const int YmmIn = 0, YmmOut = 512, MxcsrIn = 1024, MxcsrOut = 1028, Operands = 2048;

    // One sample encoding (C4 form, ModRM 00 or C0-based) per VEX form the software CPU implements.
    private static List<(byte[] Bytes, Instruction Insn)> Forms()
    {
        var seen = new HashSet<Opcode>();
        var forms = new List<(byte[], Instruction)>();
        for (int map = 1; map <= 3; map++)
        {
            for (int op = 0; op < 256; op++)
            {
                for (int wlpp = 0; wlpp < 16; wlpp++)
                {
                    for (int modrm = 0; modrm < 256; modrm++)
                    {
                        if (modrm < 0xC0 && (modrm & 0xC7) != 0)
                            continue;
                        byte[] bytes = [0xC4, (byte)(0xE0 | map), (byte)(((wlpp & 8) << 4) | 0x78 | (wlpp & 7)), (byte)op, (byte)modrm, 0, 0, 0, 0, 0, 0];
                        if (Decoder.Decode(bytes, Bitness.Bits64, out Instruction i) != DecodeStatus.Ok || !seen.Add(i.Opcode))
                            continue;
                        string n = i.Mnemonic.ToString();
                        if (!n.StartsWith('V') || i.Mnemonic is Mnemonic.Vaesenc or Mnemonic.Vaesenclast
                                or Mnemonic.Vaesdec or Mnemonic.Vaesdeclast or Mnemonic.Vaesimc or Mnemonic.Vaeskeygenassist or Mnemonic.Vpclmulqdq
                                or Mnemonic.Vldmxcsr) // random bytes would set reserved MXCSR bits (#GP); the sequence loads MXCSR with it

                            continue;
                        forms.Add((bytes[..i.Length], i));
                    }
                }
            }
        }
        return forms;
    }

    // The host CPU and a software vCPU in 64-bit mode with the AVX state enabled (CR4.OSFXSR,
    // CR4.OSXSAVE, XCR0 = x87 | SSE | AVX), the native data area mapped at the same address.
    private sealed class Rig : IDisposable
    {
        public NativeCpu Native { get; } = new();

        public GuestMemory Memory { get; } = new();

        public VmxVcpu Vcpu { get; }

        /// <summary>The software CPU's copy of the data area after a run.</summary>
        public byte[] Soft { get; }

        public Rig()
        {
            Soft = new byte[Native.Data.Length];
            Vcpu = HostCpuHarness.LongModeVcpu(Memory, PagingState.Cr4PAE | PagingState.Cr4OSFXSR | PagingState.Cr4OSXSAVE);
            Vcpu.SetXcr0(7);
            HostCpuHarness.MapHostData(Memory, Native);
        }

        // Loads the data area on both sides, runs the code on both, and returns the first
        // difference: general registers, the data area, and (with registers) the software CPU's
        // YMM registers against the ones the host stored.
        public string? Run(byte[] code, byte[] image, ref FullState st, bool registers)
        {
            HostCpuHarness.LoadData(Memory, Native, image);
            return HostCpuHarness.RunBoth(Vcpu, Memory, Native, code, ref st)
                ?? HostCpuHarness.DataDifference(Memory, Native, Soft)
                ?? (registers ? Registers(Vcpu, Native) : null);
        }

        public void Dispose()
        {
            Memory.Dispose();
            Native.Dispose();
        }
    }

    // The code both sides run: MXCSR and YMM0..(loads - 1) from the data area, the instruction,
    // YMM0..(stores - 1) and MXCSR back to it.
    private static byte[] AroundInstruction(ulong data, byte[] insn, int loads, int stores)
    {
        var code = new List<byte>();
        code.AddRange([0xC5, 0xF8, 0xAE, 0x14, 0x25]); // vldmxcsr [MxcsrIn]
        code.AddRange(BitConverter.GetBytes((uint)(data + MxcsrIn)));
        for (int n = 0; n < loads; n++)
            Vmovdqu(code, load: true, n, data + YmmIn + (ulong)(32 * n));
        code.AddRange(insn);
        for (int n = 0; n < stores; n++)
            Vmovdqu(code, load: false, n, data + YmmOut + (ulong)(32 * n));
        code.AddRange([0xC5, 0xF8, 0xAE, 0x1C, 0x25]); // vstmxcsr [MxcsrOut]
        code.AddRange(BitConverter.GetBytes((uint)(data + MxcsrOut)));
        return [.. code];
    }

    private static void Vmovdqu(List<byte> code, bool load, int n, ulong address)
    {
        code.Add(0xC5);
        code.Add(n < 8 ? (byte)0xFE : (byte)0x7E); // R̄, vvvv 1111, L 1, pp F3
        code.Add(load ? (byte)0x6F : (byte)0x7F);
        code.Add((byte)(0x04 | ((n & 7) << 3)));
        code.Add(0x25);
        code.AddRange(BitConverter.GetBytes((uint)address));
    }

    [SkippableFact]
    public void AvxInstructionsMatchTheHostCpu()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        Skip.IfNot(Avx2.IsSupported, "this host CPU has no AVX2 to compare with");
        using var rig = new Rig();
        var (native, vcpu, data) = (rig.Native, rig.Vcpu, rig.Native.DataAddress);
        var rng = new Random(Seed);
        List<(byte[] Bytes, Instruction Insn)> forms = Forms();
        output.WriteLine($"{forms.Count} VEX forms");
        byte[] image = new byte[rig.Soft.Length];
        int failures = 0, run = 0, memoryForms = 0, approximate = 0;
        var seen = new HashSet<Opcode>();
        string first = "";
        var byFailure = new Dictionary<Mnemonic, (int Count, string? Example)>();
        for (int k = 0; k < Cases; k++)
        {
            var (sample, form) = forms[rng.Next(forms.Count)];
            byte[] insn = Variant(rng, sample, form, out int baseReg);
            if (insn.Length == 0)
                continue;
            Decoder.Decode(insn, Bitness.Bits64, out Instruction d);
            bool mem = d.GetOperandKind(0) == OperandKind.Memory || d.GetOperandKind(1) == OperandKind.Memory
                || d.GetOperandKind(2) == OperandKind.Memory;

            byte[] code = AroundInstruction(data, insn, 16, 16);

            FillVectors(rng, image.AsSpan(YmmIn, 512));
            rng.NextBytes(image.AsSpan(YmmOut, 512));
            // Every exception masked (an unmasked one would stop the host process), random
            // rounding, DAZ and FTZ.
            uint mxcsr = 0x1F80 | ((uint)rng.Next(4) << 13) | (rng.Next(4) == 0 ? 0x40u : 0) | (rng.Next(4) == 0 ? 0x8000u : 0);
            BitConverter.TryWriteBytes(image.AsSpan(MxcsrIn), mxcsr);
            FillVectors(rng, image.AsSpan(Operands, image.Length - Operands));

            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status) };
            for (int n = 0; n < 16; n++)
                st.In[n] = rng.Next(3) == 0 ? (ulong)rng.Next(0, 40) : (ulong)rng.NextInt64();
            if (baseReg >= 0)
                st.In[baseReg] = data + Operands + 64 * (ulong)rng.Next(0, 32);
            st.In[7] = d.Mnemonic == Mnemonic.Vmaskmovdqu ? data + Operands + 16 * (ulong)rng.Next(0, 64) : st.In[7];
            string? diff = rig.Run(code, image, ref st, registers: true);
            if (diff != null && Approximate(d.Mnemonic) is int kind && kind != 0 && ApproximatelyEqual(native, rig.Soft, vcpu, in d, kind))
            {
                diff = null;
                approximate++;
            }
            if (diff == null && (vcpu.Rflags & Rflags.Status) != (st.FlagsOut & Rflags.Status))
                diff = $"flags: cpu {st.FlagsOut & Rflags.Status:X} soft {vcpu.Rflags & Rflags.Status:X}";
            run++;
            memoryForms += mem ? 1 : 0;
            seen.Add(form.Opcode);
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)} ({d.Mnemonic}, MXCSR {mxcsr:X}): {diff}";
            if (diff != null)
            {
                byFailure.TryGetValue(d.Mnemonic, out var f);
                byFailure[d.Mnemonic] = (f.Count + 1, f.Example ?? $"{Convert.ToHexString(insn)} MXCSR {mxcsr:X}: {diff}");
            }
        }
        output.WriteLine($"{run} cases ({memoryForms} with a memory operand) over {seen.Count} of {forms.Count} forms, seed {Seed} (HYVE_SEED + 41): "
            + $"{failures} failed, {approximate} equal within the reciprocal bound or the choice of NaN {first}");
        foreach (var (mn, (count, example)) in byFailure)
            output.WriteLine($"  {mn}: {count}, e.g. {example}");
        Assert.True(run > Cases / 2, $"only {run} cases ran");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    [SkippableFact]
    public void FusedMultiplyAddCancellationMatchesTheHostCpu()
    {
        // x × y + z with z close to -(x × y): the exact product decides every bit of the result,
        // under every rounding mode, for VFMADD231PS/PD/SS/SD on YMM0 = YMM1 × YMM2 + YMM0.
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        Skip.IfNot(Fma.IsSupported, "this host CPU has no FMA to compare with");
        using var rig = new Rig();
        ulong data = rig.Native.DataAddress;
        var rng = new Random(Seed + 1);
        byte[][] forms = [[0xC4, 0xE2, 0x75, 0xB8, 0xC2], [0xC4, 0xE2, 0xF5, 0xB8, 0xC2], [0xC4, 0xE2, 0x71, 0xB9, 0xC2], [0xC4, 0xE2, 0xF1, 0xB9, 0xC2]];
        byte[] image = new byte[rig.Soft.Length];
        int failures = 0, cases = Cases;
        string first = "";
        for (int k = 0; k < cases; k++)
        {
            byte[] insn = forms[rng.Next(forms.Length)];
            bool dbl = (insn[2] & 0x80) != 0;
            byte[] code = AroundInstruction(data, insn, 3, 1);
            Array.Clear(image);
            for (int e = 0; e < (dbl ? 4 : 8); e++)
            {
                if (dbl)
                {
                    double x = Scaled(rng), y = Scaled(rng), z = -(x * y);
                    ulong zb = BitConverter.DoubleToUInt64Bits(z) + (ulong)rng.Next(-2, 3);
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 32 + 8 * e), x);
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 64 + 8 * e), y);
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 8 * e), zb);
                }
                else
                {
                    float x = (float)Scaled(rng), y = (float)Scaled(rng), z = -(x * y);
                    uint zb = (uint)(BitConverter.SingleToUInt32Bits(z) + rng.Next(-2, 3));
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 32 + 4 * e), x);
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 64 + 4 * e), y);
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 4 * e), zb);
                }
            }
            uint mxcsr = 0x1F80 | ((uint)rng.Next(4) << 13);
            BitConverter.TryWriteBytes(image.AsSpan(MxcsrIn), mxcsr);
            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF };
            string? diff = rig.Run(code, image, ref st, registers: false); // only YMM0 is stored
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)} MXCSR {mxcsr:X}: {diff}";
        }
        output.WriteLine($"{cases} cases, seed {Seed + 1} (HYVE_SEED + 42): {failures} failed {first}");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    [SkippableFact]
    public void GathersMatchTheHostCpu()
    {
        // VPGATHERDD/DQ/QD/QQ and VGATHERDPS/DPD/QPS/QPD: random distinct destination, index and
        // mask registers, random masks, indices within the data area, every scale.
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        Skip.IfNot(Avx2.IsSupported, "this host CPU has no AVX2 to compare with");
        using var rig = new Rig();
        ulong data = rig.Native.DataAddress;
        var rng = new Random(Seed + 2);
        byte[] image = new byte[rig.Soft.Length];
        int failures = 0, cases = Cases;
        string first = "";
        for (int k = 0; k < cases; k++)
        {
            int dst = rng.Next(16), idx = rng.Next(16), mask = rng.Next(16), baseReg = rng.Next(16);
            if (dst == idx || dst == mask || idx == mask || baseReg == 4)
            {
                k--;
                continue;
            }
            int opcode = 0x90 + rng.Next(4), w = rng.Next(2), l = rng.Next(2), scale = rng.Next(4);
            byte[] insn =
            [
                0xC4, (byte)((((dst >> 3) ^ 1) << 7) | (((idx >> 3) ^ 1) << 6) | (((baseReg >> 3) ^ 1) << 5) | 2),
                (byte)((w << 7) | ((~mask & 15) << 3) | (l << 2) | 1), (byte)opcode,
                (byte)(0x84 | ((dst & 7) << 3)), (byte)((scale << 6) | ((idx & 7) << 3) | (baseReg & 7)),
                .. BitConverter.GetBytes(32 * rng.Next(0, 8)),
            ];
            Assert.Equal(DecodeStatus.Ok, Decoder.Decode(insn, Bitness.Bits64, out Instruction d));
            byte[] code = AroundInstruction(data, insn, 16, 16);
            FillVectors(rng, image.AsSpan(YmmIn, 512));
            for (int e = 0; e < 8; e++)
                BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 32 * idx + 4 * e), (uint)rng.Next(0, 64)); // indices (qword ones too: high halves zero)
            if (opcode is 0x91 or 0x93)
            {
                for (int e = 0; e < 4; e++)
                    BitConverter.TryWriteBytes(image.AsSpan(YmmIn + 32 * idx + 8 * e), (ulong)rng.Next(0, 64));
            }
            rng.NextBytes(image.AsSpan(YmmOut, 512));
            BitConverter.TryWriteBytes(image.AsSpan(MxcsrIn), 0x1F80u);
            FillVectors(rng, image.AsSpan(Operands, image.Length - Operands));
            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF };
            for (int n = 0; n < 16; n++)
                st.In[n] = (ulong)rng.NextInt64();
            st.In[baseReg] = data + Operands + 64 * (ulong)rng.Next(0, 32);
            string? diff = rig.Run(code, image, ref st, registers: true);
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)} ({d.Mnemonic}): {diff}";
        }
        output.WriteLine($"{cases} cases, seed {Seed + 2} (HYVE_SEED + 43): {failures} failed {first}");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    private static double Scaled(Random rng) => (rng.NextDouble() + 0.5) * Math.Pow(2, rng.Next(-20, 20)) * (rng.Next(2) == 0 ? -1 : 1);

    // 1: the reciprocal approximations (the SDM bounds their relative error by 1.5 * 2^-12, and
    // processors differ within it); 2: the dot products (this host sums the products per lane in
    // another order, so with several NaN products a lane may carry another of them); 0 otherwise.
    private static int Approximate(Mnemonic m) => m switch
    {
        Mnemonic.Vrcpps or Mnemonic.Vrcpss or Mnemonic.Vrsqrtps or Mnemonic.Vrsqrtss => 1,
        Mnemonic.Vdpps or Mnemonic.Vdppd => 2,
        _ => 0,
    };

    // Everything equal but the destination register, whose lanes agree within the kind's rule, in
    // the host's stored copy and in the software CPU's register.
    private static bool ApproximatelyEqual(NativeCpu native, byte[] soft, VmxVcpu vcpu, in Instruction d, int kind)
    {
        int dst = d.GetRegister(0) >= Register.YMM0 ? d.GetRegister(0) - Register.YMM0 : d.GetRegister(0) - Register.XMM0;
        int from = YmmOut + 32 * dst;
        ReadOnlySpan<byte> cpu = native.Data;
        for (int at = 0; at < cpu.Length; at++)
        {
            if ((at < from || at >= from + 32) && cpu[at] != soft[at])
                return false;
        }
        byte[] reg = [.. BitConverter.GetBytes(vcpu.Area.Xmm[dst]), .. BitConverter.GetBytes(vcpu.Area.YmmHigh[dst])];
        bool dbl = d.Mnemonic == Mnemonic.Vdppd;
        for (int lane = 0; lane < 32; lane += dbl ? 8 : 4)
        {
            if (!LaneClose(cpu.Slice(from + lane, dbl ? 8 : 4), soft.AsSpan(from + lane, dbl ? 8 : 4), kind, dbl)
                || !LaneClose(cpu.Slice(from + lane, dbl ? 8 : 4), reg.AsSpan(lane, dbl ? 8 : 4), kind, dbl))
                return false;
        }
        return true;
    }

    private static bool LaneClose(ReadOnlySpan<byte> x, ReadOnlySpan<byte> y, int kind, bool dbl)
    {
        if (x.SequenceEqual(y))
            return true;
        if (kind == 2)
            return dbl ? double.IsNaN(BitConverter.ToDouble(x)) && double.IsNaN(BitConverter.ToDouble(y))
                : float.IsNaN(BitConverter.ToSingle(x)) && float.IsNaN(BitConverter.ToSingle(y));
        float a = BitConverter.ToSingle(x), b = BitConverter.ToSingle(y);
        if (float.IsNaN(a) || float.IsInfinity(a) || a == 0)
            return false;
        return Math.Abs(a - b) <= Math.Abs(a) * 1.5 / 4096;
    }

    // The software CPU's YMM registers against what the host stored.
    private static string? Registers(VmxVcpu vcpu, NativeCpu native)
    {
        for (int n = 0; n < 16; n++)
        {
            UInt128 lo = BitConverter.ToUInt128(native.Data[(YmmOut + 32 * n)..]), hi = BitConverter.ToUInt128(native.Data[(YmmOut + 32 * n + 16)..]);
            if (vcpu.Area.Xmm[n] != lo || vcpu.Area.YmmHigh[n] != hi)
                return $"ymm{n}: cpu {hi:X32}{lo:X32} soft {vcpu.Area.YmmHigh[n]:X32}{vcpu.Area.Xmm[n]:X32}";
        }
        return null;
    }

    // A random encoding of the sample's form: random registers (R̄, B̄, vvvv, ModRM), a memory
    // operand through a base register with a 32-byte aligned displacement, a random immediate.
    // Empty when the variant would touch RSP or is not the same form. baseReg: the memory base.
    private static byte[] Variant(Random rng, byte[] sample, in Instruction form, out int baseReg)
    {
        baseReg = -1;
        if (sample.Length < 5)
            return sample; // VZEROUPPER, VZEROALL: no operands
        for (int attempt = 0; attempt < 10; attempt++)
        {
            byte[] b = (byte[])sample.Clone();
            int modrm = sample[4];
            // Register and memory forms alike where the form has both (the decode below checks).
            bool memoryForm = attempt < 3 ? rng.Next(2) == 0 : modrm < 0xC0;
            int reg = rng.Next(8), rm = rng.Next(8);
            int r = rng.Next(2), x = 1, bb = rng.Next(2);
            int vvvv = rng.Next(16);
            if (attempt is 2 or >= 4)
                reg = (modrm >> 3) & 7; // a group opcode: ModRM.reg is part of the opcode
            if (attempt is 1 or >= 6)
                vvvv = 0;               // a form without a VEX.vvvv operand
            b[1] = (byte)((((r ^ 1) << 7) | ((x ^ 1) << 6) | ((bb ^ 1) << 5)) | (sample[1] & 0x1F));
            b[2] = (byte)((sample[2] & 0x87) | ((~vvvv & 15) << 3));
            var tail = new List<byte>();
            if (memoryForm)
            {
                if (rm is 4 or 5)
                    rm = 3;
                b[4] = (byte)(0x80 | (reg << 3) | rm);
                tail.AddRange(BitConverter.GetBytes(32 * rng.Next(0, 8)));
            }
            else
            {
                b[4] = (byte)(0xC0 | (reg << 3) | rm);
            }
            int rest = sample.Length - 5;
            for (int k = 0; k < rest; k++)
                tail.Add((byte)rng.Next(256));
            byte[] bytes = [.. b[..5], .. tail];
            if (Decoder.Decode(bytes, Bitness.Bits64, out Instruction d) != DecodeStatus.Ok || d.Opcode != form.Opcode || d.Length != bytes.Length)
                continue;
            if (TouchesStack(in d))
                continue;
            baseReg = memoryForm ? rm | (bb << 3) : -1;
            return bytes;
        }
        return [];
    }

    private static bool TouchesStack(in Instruction d)
    {
        for (int k = 0; k < d.OperandCount; k++)
        {
            if (d.GetOperandKind(k) == OperandKind.Register && d.GetRegister(k) is >= Register.AL and <= Register.R15
                && RegisterInfo.GprNumber(d.GetRegister(k)).N == 4)
                return true;
        }
        return d.MemoryBase is Register.RSP or Register.ESP || d.MemoryIndex != Register.None;
    }

    // Lanes of every kind: integers, and floats that are zero, denormal, infinite, NaN or ordinary
    // (single and double precision patterns).
    private static void FillVectors(Random rng, Span<byte> bytes)
    {
        for (int at = 0; at + 8 <= bytes.Length; at += 8)
        {
            ulong v = rng.Next(6) switch
            {
                0 => (ulong)rng.NextInt64(),
                1 => (uint)rng.Next(0, 300) | ((ulong)(uint)rng.Next() << 32),
                2 => Single(rng) | ((ulong)Single(rng) << 32),
                3 => BitConverter.DoubleToUInt64Bits(rng.NextDouble() * Math.Pow(2, rng.Next(-60, 60)) * (rng.Next(2) == 0 ? -1 : 1)),
                4 => rng.Next(4) switch { 0 => 0x7FF0_0000_0000_0000UL, 1 => 0x7FF8_0000_0000_0001UL, 2 => 0x0000_0000_0000_0F00UL, _ => 0x8000_0000_0000_0000UL },
                _ => (ulong)rng.Next(-3, 3),
            };
            BitConverter.TryWriteBytes(bytes[at..], v);
        }
    }

    private static uint Single(Random rng) => rng.Next(6) switch
    {
        0 => 0,
        1 => (uint)rng.Next(1, 0x80_0000),
        2 => 0x7F80_0000,
        3 => 0x7FC0_0000 | (uint)rng.Next(0x40_0000),
        4 => 0x7F80_0001 | (uint)rng.Next(0x3F_FFFF),
        _ => ((uint)(127 + rng.Next(-40, 40)) << 23) | (uint)rng.Next(0x80_0000) | (rng.Next(2) == 0 ? 0x8000_0000u : 0),
    };
}
