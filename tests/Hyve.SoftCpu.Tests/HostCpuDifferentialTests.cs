// The software CPU against the host CPU: random register-form integer instructions run natively
// and on the software CPU from the same registers and flags; every register but RSP and the
// flags the SDM defines must agree.
using System;
using System.Collections.Generic;
using Hyve.TestSupport;
using Hyve.Vmm;
using Hyve.Vmm.Verification;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.SoftCpu.Tests;

public sealed class HostCpuDifferentialTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_SOFTCPU_CASES", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261122);

    // Opcode bytes of register forms (ModRM mod = 3 added by the generator), immediate size,
    // byte form, ModRM reg field (-1: a register).
    private static readonly (byte[] Opcode, int Imm, bool Byte, int Digit)[] Forms = Build();

    private static (byte[], int, bool, int)[] Build()
    {
        var f = new List<(byte[], int, bool, int)>();
        for (int op = 0; op < 8; op++)
        {
            f.Add(([(byte)(op * 8)], 0, true, -1));
            f.Add(([(byte)(op * 8 + 1)], 0, false, -1));
            f.Add(([(byte)(op * 8 + 2)], 0, true, -1));
            f.Add(([(byte)(op * 8 + 3)], 0, false, -1));
            f.Add(([0x80], 1, true, op));
            f.Add(([0x81], 4, false, op));
            f.Add(([0x83], 1, false, op));
        }
        for (int sh = 0; sh < 8; sh++)
        {
            if (sh == 6)
                continue;
            f.Add(([0xC0], 1, true, sh));
            f.Add(([0xC1], 1, false, sh));
            f.Add(([0xD0], 0, true, sh));
            f.Add(([0xD1], 0, false, sh));
            f.Add(([0xD2], 0, true, sh));
            f.Add(([0xD3], 0, false, sh));
        }
        for (int n = 0; n < 4; n++)
        {
            f.Add(([0xF6], 0, true, n == 0 ? 0 : n + 1)); // test r/m8, imm8 needs an immediate: handled below
            f.Add(([0xF7], 0, false, n == 0 ? 0 : n + 1));
        }
        f.Add(([0xFE], 0, true, 0)); f.Add(([0xFE], 0, true, 1));
        f.Add(([0xFF], 0, false, 0)); f.Add(([0xFF], 0, false, 1));
        f.Add(([0xF6], 0, true, 4)); f.Add(([0xF7], 0, false, 4)); f.Add(([0xF6], 0, true, 5)); f.Add(([0xF7], 0, false, 5)); // mul, imul
        f.Add(([0x84], 0, true, -1)); f.Add(([0x85], 0, false, -1));
        f.Add(([0x86], 0, true, -1)); f.Add(([0x87], 0, false, -1));
        f.Add(([0x88], 0, true, -1)); f.Add(([0x89], 0, false, -1)); f.Add(([0x8A], 0, true, -1)); f.Add(([0x8B], 0, false, -1));
        f.Add(([0xC6], 1, true, 0)); f.Add(([0xC7], 4, false, 0));
        f.Add(([0x0F, 0xAF], 0, false, -1)); f.Add(([0x69], 4, false, -1)); f.Add(([0x6B], 1, false, -1));
        f.Add(([0x0F, 0xB6], 0, false, -1)); f.Add(([0x0F, 0xB7], 0, false, -1)); f.Add(([0x0F, 0xBE], 0, false, -1)); f.Add(([0x0F, 0xBF], 0, false, -1));
        for (int cc = 0; cc < 16; cc++)
        {
            f.Add(([0x0F, (byte)(0x90 + cc)], 0, true, 0));
            f.Add(([0x0F, (byte)(0x40 + cc)], 0, false, -1));
        }
        foreach (byte bt in new byte[] { 0xA3, 0xAB, 0xB3, 0xBB })
            f.Add(([0x0F, bt], 0, false, -1));
        for (int bt = 4; bt < 8; bt++)
            f.Add(([0x0F, 0xBA], 1, false, bt));
        f.Add(([0x0F, 0xBC], 0, false, -1)); f.Add(([0x0F, 0xBD], 0, false, -1));             // bsf, bsr
        f.Add(([0xF3, 0x0F, 0xB8], 0, false, -1));                                               // popcnt
        f.Add(([0xF3, 0x0F, 0xBC], 0, false, -1)); f.Add(([0xF3, 0x0F, 0xBD], 0, false, -1));   // tzcnt, lzcnt
        f.Add(([0x0F, 0xC0], 0, true, -1)); f.Add(([0x0F, 0xC1], 0, false, -1));               // xadd
        f.Add(([0x0F, 0xB0], 0, true, -1)); f.Add(([0x0F, 0xB1], 0, false, -1));               // cmpxchg
        f.Add(([0x0F, 0xA4], 1, false, -1)); f.Add(([0x0F, 0xA5], 0, false, -1));              // shld
        f.Add(([0x0F, 0xAC], 1, false, -1)); f.Add(([0x0F, 0xAD], 0, false, -1));              // shrd
        return [.. f];
    }

    [Fact]
    public void RegisterInstructionsMatchTheHostCpu()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var native = new NativeCpu();
        var rng = new Random(Seed);
        using var memory = new GuestMemory();
        VmxVcpu vcpu = HostCpuHarness.LongModeVcpu(memory, PagingState.Cr4PAE);
        int failures = 0;
        string first = "";
        for (int k = 0; k < Cases; k++)
        {
            var (opcode, imm, isByte, digit) = Forms[rng.Next(Forms.Length)];
            var b = new List<byte>();
            int size = isByte ? 1 : rng.Next(3) switch { 0 => 2, 1 => 4, _ => 8 };
            if (size == 2)
                b.Add(0x66);
            if (opcode[0] == 0xF3)
                b.Add(0xF3); // a mandatory prefix goes before REX
            int reg = digit >= 0 ? digit : rng.Next(16);
            int rm = rng.Next(16);
            if (rm == 4 || (digit < 0 && reg == 4) || (isByte && (rm is 4 || reg is 4)))
                continue; // RSP (and SPL/AH ambiguity with it) stays the host's
            int rex = (size == 8 ? 8 : 0) | (reg >= 8 ? 4 : 0) | (rm >= 8 ? 1 : 0);
            if (isByte && rng.Next(2) == 0)
                rex |= 0x40;
            if (rex != 0)
                b.Add((byte)(0x40 | rex));
            b.AddRange(opcode[0] == 0xF3 ? opcode[1..] : opcode);
            b.Add((byte)(0xC0 | ((reg & 7) << 3) | (rm & 7)));
            int immSize = imm == 4 && size == 2 ? 2 : imm;
            if (opcode[0] is 0xF6 or 0xF7 && digit == 0)
                immSize = opcode[0] == 0xF6 ? 1 : size == 2 ? 2 : 4; // TEST r/m, imm
            for (int i = 0; i < immSize; i++)
                b.Add((byte)rng.Next(256));
            byte[] insn = [.. b];
            if (Decoder.Decode(insn, Bitness.Bits64, out Instruction d) != DecodeStatus.Ok)
                continue;
            if (d.Mnemonic is Mnemonic.Shld or Mnemonic.Shrd && size == 2)
                continue; // 16-bit double shifts by more than 16 are undefined
            if (Touches(in d, 4))
                continue;

            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status) };
            for (int r = 0; r < 16; r++)
                st.In[r] = rng.Next(4) == 0 ? (ulong)rng.Next(-2, 3) : (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40);

            string? diff = HostCpuHarness.RunBoth(vcpu, memory, native, insn, ref st);
            ulong defined = Defined(in d, st, size);
            if (d.Mnemonic is Mnemonic.Bsf or Mnemonic.Bsr && (st.In[RegisterInfo.GprNumber(d.GetRegister(1)).N] & Alu.Mask(size)) == 0)
                continue; // the destination of BSF/BSR of zero is undefined
            if (diff == null && (vcpu.Rflags & defined) != (st.FlagsOut & defined))
                diff = $"flags: cpu {st.FlagsOut & defined:X} soft {vcpu.Rflags & defined:X}";
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)}: {diff}";
        }
        output.WriteLine($"{Cases} cases, seed {Seed} (HYVE_SEED): {failures} failed {first}");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    [Fact]
    public void ByteMaskedStoresMatchTheHostCpu()
    {
        // MASKMOVDQU: the bytes of the first register whose mask byte (in the second) has its top
        // bit set, to [RDI] (MASKMOVQ shares the code; its MMX registers are not in this harness).
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var native = new NativeCpu();
        var rng = new Random(Seed + 7);
        using var memory = new GuestMemory();
        VmxVcpu vcpu = HostCpuHarness.LongModeVcpu(memory, PagingState.Cr4PAE | PagingState.Cr4OSFXSR);
        HostCpuHarness.MapHostData(memory, native);
        byte[] before = new byte[native.Data.Length], soft = new byte[native.Data.Length];
        int failures = 0, cases = Math.Min(Cases, 20_000);
        string first = "";
        for (int k = 0; k < cases; k++)
        {
            byte[] insn = [0x66, 0x0F, 0xF7, (byte)(0xC0 | rng.Next(64))];
            rng.NextBytes(before);
            HostCpuHarness.LoadData(memory, native, before);
            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF };
            for (int r = 0; r < 16; r++)
            {
                st.In[r] = (ulong)rng.NextInt64();
                st.XmmIn[r] = new UInt128((ulong)rng.NextInt64(), (ulong)rng.NextInt64());
            }
            st.In[7] = native.DataAddress + (ulong)rng.Next(native.Data.Length - 16);
            string? diff = HostCpuHarness.RunBoth(vcpu, memory, native, insn, ref st, xmm: true)
                ?? HostCpuHarness.DataDifference(memory, native, soft);
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)}: {diff}";
        }
        output.WriteLine($"{cases} cases, seed {Seed + 7} (HYVE_SEED + 7): {failures} failed {first}");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    [Fact]
    public void ConditionsAfterArithmeticMatchTheHostCpu()
    {
        // An ALU instruction, then Jcc over XOR RAX, RAX: the software CPU defers the flags of
        // ADD, SUB, CMP, AND, OR, XOR, TEST, INC and DEC and answers most conditions from the
        // operands, so RAX (branch taken or not) and the flags at the end show any difference.
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var native = new NativeCpu();
        var rng = new Random(Seed + 2);
        using var memory = new GuestMemory();
        VmxVcpu vcpu = HostCpuHarness.LongModeVcpu(memory, PagingState.Cr4PAE);
        (byte Opcode, int Digit)[] forms =
        [
            (0x01, -1), (0x29, -1), (0x39, -1), (0x21, -1), (0x09, -1), (0x31, -1), (0x85, -1), (0x11, -1), (0x19, -1),
            (0x83, 0), (0x83, 1), (0x83, 2), (0x83, 3), (0x83, 4), (0x83, 5), (0x83, 6), (0x83, 7), (0xFF, 0), (0xFF, 1),
        ];
        int failures = 0, taken = 0;
        string first = "";
        for (int k = 0; k < Cases; k++)
        {
            var (opcode, digit) = forms[rng.Next(forms.Length)];
            int size = rng.Next(3) switch { 0 => 2, 1 => 4, _ => 8 };
            int reg = digit >= 0 ? digit : rng.Next(16), rm = rng.Next(16);
            if (rm == 4 || (digit < 0 && reg == 4) || rm == 0)
                continue; // RSP stays the host's; RAX carries the branch's outcome
            var b = new List<byte>();
            if (size == 2)
                b.Add(0x66);
            int rex = (size == 8 ? 8 : 0) | (reg >= 8 ? 4 : 0) | (rm >= 8 ? 1 : 0);
            if (rex != 0)
                b.Add((byte)(0x40 | rex));
            b.Add(opcode);
            b.Add((byte)(0xC0 | ((reg & 7) << 3) | (rm & 7)));
            if (opcode == 0x83)
                b.Add((byte)rng.Next(256));
            Assert.Equal(DecodeStatus.Ok, Decoder.Decode([.. b], Bitness.Bits64, out Instruction d));
            int cc = rng.Next(16);
            byte[] code = [.. b, (byte)(0x70 | cc), 0x03, 0x48, 0x31, 0xC0]; // jcc +3; xor rax, rax

            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status) };
            for (int r = 0; r < 16; r++)
                st.In[r] = rng.Next(3) == 0 ? (ulong)rng.Next(-2, 3) : (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40);
            if (rng.Next(4) == 0)
                st.In[reg] = st.In[rm]; // equal operands: ZF and the unsigned and signed limits
            string? diff = HostCpuHarness.RunBoth(vcpu, memory, native, code, ref st);
            taken += st.Out[0] != 0 ? 1 : 0;
            ulong defined = Defined(in d, st, size) & ~Rflags.AF; // AF is checked by the test above
            if (diff == null && (vcpu.Rflags & defined) != (st.FlagsOut & defined))
                diff = $"flags: cpu {st.FlagsOut & defined:X} soft {vcpu.Rflags & defined:X}";
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(code)}: {diff}";
        }
        output.WriteLine($"{Cases} cases, seed {Seed + 2} (HYVE_SEED + 2), {taken} branches taken: {failures} failed {first}");
        Assert.True(taken > Cases / 10 && taken < Cases * 9 / 10, $"only {taken} of {Cases} branches taken: the cases do not reach both ways");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    private static bool Touches(in Instruction d, int n)
    {
        for (int i = 0; i < d.OperandCount; i++)
        {
            if (d.GetOperandKind(i) == OperandKind.Register && d.GetRegister(i) is >= Register.AL and <= Register.R15
                && RegisterInfo.GprNumber(d.GetRegister(i)) is var g && g.N == n && !g.High)
                return true;
        }
        return false;
    }

    private static ulong Defined(in Instruction d, in FullState st, int size)
    {
        ulong count = d.OperandCount > 1 && d.GetOperandKind(1) == OperandKind.Register ? st.In[1] & 0xFF : d.Immediate;
        if (d.OperandCount == 1)
            count = 1;
        return d.Mnemonic switch
        {
            Mnemonic.And or Mnemonic.Or or Mnemonic.Xor or Mnemonic.Test => Rflags.Status & ~Rflags.AF,
            Mnemonic.Mul or Mnemonic.Imul => Rflags.CF | Rflags.OF,
            Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc => Rflags.CF,
            Mnemonic.Bsf or Mnemonic.Bsr => Rflags.ZF,
            Mnemonic.Tzcnt or Mnemonic.Lzcnt => Rflags.CF | Rflags.ZF,
            Mnemonic.Shld or Mnemonic.Shrd => Alu.DefinedDoubleShiftFlags(Alu.MaskCount(d.GetOperandKind(2) == OperandKind.Register ? st.In[1] & 0xFF : d.Immediate, size), size),
            Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar
                => Alu.DefinedFlags((Alu.Shift)((d.ModRM >> 3) & 7), Alu.MaskCount(count, size), size),
            _ => Rflags.Status,
        };
    }

    // SSE2 register forms the software CPU implements: opcode bytes after the 66/F3 prefix (none
    // for 0F 57/28), the ModRM reg field (-1: an XMM register), whether an imm8 follows, and how
    // the r/m and reg operands are used (x: XMM, g: a general register).
    private static readonly (byte Prefix, byte[] Opcode, int Digit, bool Imm, char Reg, char Rm)[] SseForms =
    [
        (0x66, [0x0F, 0xEF], -1, false, 'x', 'x'), (0x00, [0x0F, 0x57], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xEB], -1, false, 'x', 'x'), (0x66, [0x0F, 0xDB], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xDF], -1, false, 'x', 'x'), (0x00, [0x0F, 0x54], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xFC], -1, false, 'x', 'x'), (0x66, [0x0F, 0xFD], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xFE], -1, false, 'x', 'x'), (0x66, [0x0F, 0xD4], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xF8], -1, false, 'x', 'x'), (0x66, [0x0F, 0xF9], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xFA], -1, false, 'x', 'x'), (0x66, [0x0F, 0xFB], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x74], -1, false, 'x', 'x'), (0x66, [0x0F, 0x75], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x76], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x60], -1, false, 'x', 'x'), (0x66, [0x0F, 0x61], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x62], -1, false, 'x', 'x'), (0x66, [0x0F, 0x6C], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x68], -1, false, 'x', 'x'), (0x66, [0x0F, 0x69], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x6A], -1, false, 'x', 'x'), (0x66, [0x0F, 0x6D], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x70], -1, true, 'x', 'x'), (0x66, [0x0F, 0xD7], -1, false, 'g', 'x'),
        (0x66, [0x0F, 0x73], 3, true, 'x', 'x'), (0x66, [0x0F, 0x73], 7, true, 'x', 'x'),
        (0x66, [0x0F, 0x73], 2, true, 'x', 'x'), (0x66, [0x0F, 0x73], 6, true, 'x', 'x'),
        (0x66, [0x0F, 0x72], 2, true, 'x', 'x'), (0x66, [0x0F, 0x72], 4, true, 'x', 'x'), (0x66, [0x0F, 0x72], 6, true, 'x', 'x'),
        (0x66, [0x0F, 0x71], 2, true, 'x', 'x'), (0x66, [0x0F, 0x71], 4, true, 'x', 'x'), (0x66, [0x0F, 0x71], 6, true, 'x', 'x'),
        (0x66, [0x0F, 0xD1], -1, false, 'x', 'x'), (0x66, [0x0F, 0xD2], -1, false, 'x', 'x'), (0x66, [0x0F, 0xD3], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xE1], -1, false, 'x', 'x'), (0x66, [0x0F, 0xE2], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xF1], -1, false, 'x', 'x'), (0x66, [0x0F, 0xF2], -1, false, 'x', 'x'), (0x66, [0x0F, 0xF3], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x6F], -1, false, 'x', 'x'), (0xF3, [0x0F, 0x6F], -1, false, 'x', 'x'), (0x00, [0x0F, 0x28], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x6E], -1, false, 'x', 'g'), (0x66, [0x0F, 0x7E], -1, false, 'x', 'g'), (0xF3, [0x0F, 0x7E], -1, false, 'x', 'x'),
        // Scalar and half moves, masks.
        (0xF3, [0x0F, 0x10], -1, false, 'x', 'x'), (0xF2, [0x0F, 0x10], -1, false, 'x', 'x'), (0x00, [0x0F, 0x12], -1, false, 'x', 'x'),
        (0x00, [0x0F, 0x16], -1, false, 'x', 'x'), (0x00, [0x0F, 0x50], -1, false, 'g', 'x'), (0x66, [0x0F, 0x50], -1, false, 'g', 'x'),
        // Packed integer: min/max, greater-than, saturating, averages, multiplies, packs.
        (0x66, [0x0F, 0xDA], -1, false, 'x', 'x'), (0x66, [0x0F, 0xDE], -1, false, 'x', 'x'), (0x66, [0x0F, 0xEA], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xEE], -1, false, 'x', 'x'), (0x66, [0x0F, 0x64], -1, false, 'x', 'x'), (0x66, [0x0F, 0x65], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x66], -1, false, 'x', 'x'), (0x66, [0x0F, 0xDC], -1, false, 'x', 'x'), (0x66, [0x0F, 0xDD], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xD8], -1, false, 'x', 'x'), (0x66, [0x0F, 0xD9], -1, false, 'x', 'x'), (0x66, [0x0F, 0xEC], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xED], -1, false, 'x', 'x'), (0x66, [0x0F, 0xE8], -1, false, 'x', 'x'), (0x66, [0x0F, 0xE9], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xE0], -1, false, 'x', 'x'), (0x66, [0x0F, 0xE3], -1, false, 'x', 'x'), (0x66, [0x0F, 0xD5], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xE5], -1, false, 'x', 'x'), (0x66, [0x0F, 0xE4], -1, false, 'x', 'x'), (0x66, [0x0F, 0xF4], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xF5], -1, false, 'x', 'x'), (0x66, [0x0F, 0xF6], -1, false, 'x', 'x'), (0x66, [0x0F, 0x67], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x63], -1, false, 'x', 'x'), (0x66, [0x0F, 0x6B], -1, false, 'x', 'x'),
        // Shuffles, word insert and extract, float unpacks.
        (0xF2, [0x0F, 0x70], -1, true, 'x', 'x'), (0xF3, [0x0F, 0x70], -1, true, 'x', 'x'), (0x66, [0x0F, 0xC4], -1, true, 'x', 'g'),
        (0x66, [0x0F, 0xC5], -1, true, 'g', 'x'), (0x00, [0x0F, 0xC6], -1, true, 'x', 'x'), (0x66, [0x0F, 0xC6], -1, true, 'x', 'x'),
        (0x00, [0x0F, 0x14], -1, false, 'x', 'x'), (0x00, [0x0F, 0x15], -1, false, 'x', 'x'), (0x66, [0x0F, 0x14], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x15], -1, false, 'x', 'x'),
        // Floating point: add, mul, sub, min, div, max, sqrt in ps/pd/ss/sd; compares; conversions.
        .. FloatForms(),
        (0x00, [0x0F, 0x2E], -1, false, 'x', 'x'), (0x00, [0x0F, 0x2F], -1, false, 'x', 'x'), (0x66, [0x0F, 0x2E], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x2F], -1, false, 'x', 'x'),
        (0xF3, [0x0F, 0x2A], -1, false, 'x', 'g'), (0xF2, [0x0F, 0x2A], -1, false, 'x', 'g'), (0xF3, [0x0F, 0x2C], -1, false, 'g', 'x'),
        (0xF2, [0x0F, 0x2C], -1, false, 'g', 'x'), (0xF3, [0x0F, 0x2D], -1, false, 'g', 'x'), (0xF2, [0x0F, 0x2D], -1, false, 'g', 'x'),
        (0xF3, [0x0F, 0x5A], -1, false, 'x', 'x'), (0xF2, [0x0F, 0x5A], -1, false, 'x', 'x'), (0x00, [0x0F, 0x5A], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0x5A], -1, false, 'x', 'x'), (0x00, [0x0F, 0x5B], -1, false, 'x', 'x'), (0x66, [0x0F, 0x5B], -1, false, 'x', 'x'),
        (0xF3, [0x0F, 0x5B], -1, false, 'x', 'x'), (0xF3, [0x0F, 0xE6], -1, false, 'x', 'x'), (0xF2, [0x0F, 0xE6], -1, false, 'x', 'x'),
        (0x66, [0x0F, 0xE6], -1, false, 'x', 'x'),
    ];

    private static IEnumerable<(byte, byte[], int, bool, char, char)> FloatForms()
    {
        foreach (byte op in new byte[] { 0x58, 0x59, 0x5C, 0x5D, 0x5E, 0x5F, 0x51, 0xC2 })
        {
            foreach (byte prefix in new byte[] { 0x00, 0x66, 0xF3, 0xF2 })
                yield return (prefix, [0x0F, op], -1, op == 0xC2, 'x', 'x');
        }
    }

    [Fact]
    public void SseRegisterInstructionsMatchTheHostCpu()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var native = new NativeCpu();
        var rng = new Random(Seed + 1);
        using var memory = new GuestMemory();
        VmxVcpu vcpu = HostCpuHarness.LongModeVcpu(memory, PagingState.Cr4PAE | PagingState.Cr4OSFXSR);
        int cases = Math.Max(1000, Cases / 4), failures = 0, run = 0;
        string first = "";
        for (int k = 0; k < cases; k++)
        {
            var (prefix, opcode, digit, hasImm, regKind, rmKind) = SseForms[rng.Next(SseForms.Length)];
            int reg = digit >= 0 ? digit : rng.Next(16), rm = rng.Next(16);
            if ((regKind == 'g' && reg == 4) || (rmKind == 'g' && rm == 4))
                continue; // RSP stays the host's
            bool wide = (rmKind == 'g' || regKind == 'g') && rng.Next(2) == 0; // r64 forms
            var b = new List<byte>();
            if (prefix != 0)
                b.Add(prefix);
            int rex = (wide ? 8 : 0) | (reg >= 8 && digit < 0 ? 4 : 0) | (rm >= 8 ? 1 : 0);
            if (rex != 0)
                b.Add((byte)(0x40 | rex));
            b.AddRange(opcode);
            b.Add((byte)(0xC0 | ((reg & 7) << 3) | (rm & 7)));
            if (hasImm)
                b.Add((byte)rng.Next(256));
            byte[] insn = [.. b];
            if (Decoder.Decode(insn, Bitness.Bits64, out Instruction d) != DecodeStatus.Ok)
                continue;
            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF };
            for (int r = 0; r < 16; r++)
            {
                st.In[r] = (ulong)rng.NextInt64();
                // Lanes often equal, so the compares see both answers.
                ulong lo = (ulong)rng.NextInt64(), hi = rng.Next(3) == 0 ? lo : (ulong)rng.NextInt64();
                st.XmmIn[r] = ((UInt128)hi << 64) | lo;
            }
            string? diff = HostCpuHarness.RunBoth(vcpu, memory, native, insn, ref st, xmm: true);
            run++;
            if (diff == null && (vcpu.Rflags & Rflags.Status) != (st.FlagsOut & Rflags.Status))
                diff = $"flags: cpu {st.FlagsOut & Rflags.Status:X} soft {vcpu.Rflags & Rflags.Status:X}"; // COMIS/UCOMIS
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)} ({d.Mnemonic}): {diff}";
        }
        output.WriteLine($"{run} SSE cases, seed {Seed + 1} (HYVE_SEED + 1): {failures} failed {first}");
        Assert.True(run > cases / 2, $"only {run} cases ran");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    // RCPPS/RCPSS/RSQRTPS/RSQRTSS: processors differ in their approximation, so each lane must be
    // within the SDM's 1.5 × 2^-12 relative error of the host's (twice that, as both err), with
    // the special inputs (zeros, denormals, infinities, NaNs, negative roots) exactly the host's.
    [Fact]
    public void ReciprocalApproximationsAgreeWithTheHostCpuWithinTheirBound()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var native = new NativeCpu();
        var rng = new Random(Seed + 8);
        using var memory = new GuestMemory();
        VmxVcpu vcpu = HostCpuHarness.LongModeVcpu(memory, PagingState.Cr4PAE | PagingState.Cr4OSFXSR);
        byte[][] forms = [[0x0F, 0x53], [0xF3, 0x0F, 0x53], [0x0F, 0x52], [0xF3, 0x0F, 0x52]];
        int cases = Math.Max(2000, Cases / 10), failures = 0;
        string first = "";
        for (int k = 0; k < cases; k++)
        {
            byte[] form = forms[rng.Next(forms.Length)];
            int reg = rng.Next(8), rm = rng.Next(8);
            byte[] insn = [.. form, (byte)(0xC0 | (reg << 3) | rm)];
            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF };
            for (int r = 0; r < 16; r++)
            {
                st.In[r] = (ulong)rng.NextInt64();
                UInt128 x = 0;
                for (int lane = 0; lane < 4; lane++)
                {
                    uint sign = (uint)rng.Next(2) << 31;
                    uint v = rng.Next(8) switch
                    {
                        0 => sign,                                           // zero
                        1 => sign | (uint)rng.Next(1, 0x80_0000),            // denormal
                        2 => sign | 0x7F80_0000,                             // infinity
                        3 => sign | 0x7FC0_0000 | (uint)rng.Next(0x40_0000),  // NaN
                        _ => sign | ((uint)(127 + rng.Next(-100, 100)) << 23) | (uint)rng.Next(0x80_0000),
                    };
                    x |= (UInt128)v << (32 * lane);
                }
                st.XmmIn[r] = x;
                vcpu.Area.Xmm[r] = x;
            }
            string? diff = HostCpuHarness.RunBoth(vcpu, memory, native, insn, ref st);
            for (int lane = 0; diff == null && lane < 4; lane++)
            {
                uint h = (uint)(st.XmmOut[reg] >> (32 * lane)), o = (uint)(vcpu.Area.Xmm[reg] >> (32 * lane));
                float hf = BitConverter.Int32BitsToSingle((int)h), of = BitConverter.Int32BitsToSingle((int)o);
                bool special = float.IsNaN(hf) || float.IsInfinity(hf) || hf == 0;
                if (special ? h != o : Math.Abs(hf - of) > Math.Abs(hf) * 3.0 / 4096)
                    diff = $"xmm{reg} lane {lane}: cpu {h:X8} soft {o:X8}";
            }
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)}: {diff}";
        }
        output.WriteLine($"{cases} reciprocal cases, seed {Seed + 8} (HYVE_SEED + 8): {failures} failed {first}");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }
}
