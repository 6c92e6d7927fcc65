// The emulator against the host CPU: each case runs one instruction natively on a buffer and
// through Vie with the same bytes behind the device half, from the same registers and flags.
using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.InteropServices;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.Vmm.Tests;

public sealed class VieDifferentialTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_VIE_CASES", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261124);

    private const ulong Gpa = 0xFE00_0100;
    private const int Base = 3; // RBX holds the operand address: [rbx]

    // An instruction form with [rbx] as its memory operand: opcode bytes before the ModRM, the
    // ModRM reg field (-1: a register operand chosen at random), and the immediate size.
    private readonly record struct Form(string Name, byte[] Opcode, int Reg, int Imm, bool Byte, Prep Prep = Prep.None);

    // Divisions get operands that cannot fault natively (#DE would end the test process).
    private enum Prep
    {
        None,
        Div,
        Idiv,
    }

    private static List<Form> Forms()
    {
        var f = new List<Form>
        {
            new("mov Eb,Gb", [0x88], -1, 0, true), new("mov Ev,Gv", [0x89], -1, 0, false),
            new("mov Gb,Eb", [0x8A], -1, 0, true), new("mov Gv,Ev", [0x8B], -1, 0, false),
            new("mov Eb,Ib", [0xC6], 0, 1, true), new("mov Ev,Iz", [0xC7], 0, 4, false),
            new("movzx Gv,Eb", [0x0F, 0xB6], -1, 0, false), new("movzx Gv,Ew", [0x0F, 0xB7], -1, 0, false),
            new("movsx Gv,Eb", [0x0F, 0xBE], -1, 0, false), new("movsx Gv,Ew", [0x0F, 0xBF], -1, 0, false),
            new("movsxd Gv,Ed", [0x63], -1, 0, false),
            new("test Eb,Gb", [0x84], -1, 0, true), new("test Ev,Gv", [0x85], -1, 0, false),
            new("test Eb,Ib", [0xF6], 0, 1, true), new("test Ev,Iz", [0xF7], 0, 4, false),
        };
        for (int n = 0; n < 2; n++)
        {
            f.Add(new($"incdec{n} Eb", [0xFE], n, 0, true));
            f.Add(new($"incdec{n} Ev", [0xFF], n, 0, false));
            f.Add(new($"notneg{n} Eb", [0xF6], 2 + n, 0, true));
            f.Add(new($"notneg{n} Ev", [0xF7], 2 + n, 0, false));
            f.Add(new($"mul{n} Eb", [0xF6], 4 + n, 0, true));
            f.Add(new($"mul{n} Ev", [0xF7], 4 + n, 0, false));
            f.Add(new($"div{n} Eb", [0xF6], 6 + n, 0, true, Prep: n == 0 ? Prep.Div : Prep.Idiv));
            f.Add(new($"div{n} Ev", [0xF7], 6 + n, 0, false, Prep: n == 0 ? Prep.Div : Prep.Idiv));
        }
        for (int sh = 0; sh < 8; sh++)
        {
            f.Add(new($"shift{sh} Eb,Ib", [0xC0], sh, 1, true));
            f.Add(new($"shift{sh} Ev,Ib", [0xC1], sh, 1, false));
            f.Add(new($"shift{sh} Eb,1", [0xD0], sh, 0, true));
            f.Add(new($"shift{sh} Ev,1", [0xD1], sh, 0, false));
            f.Add(new($"shift{sh} Eb,CL", [0xD2], sh, 0, true));
            f.Add(new($"shift{sh} Ev,CL", [0xD3], sh, 0, false));
        }
        f.Add(new("xchg Eb,Gb", [0x86], -1, 0, true));
        f.Add(new("xchg Ev,Gv", [0x87], -1, 0, false));
        f.Add(new("xadd Eb,Gb", [0x0F, 0xC0], -1, 0, true));
        f.Add(new("xadd Ev,Gv", [0x0F, 0xC1], -1, 0, false));
        f.Add(new("cmpxchg Eb,Gb", [0x0F, 0xB0], -1, 0, true));
        f.Add(new("cmpxchg Ev,Gv", [0x0F, 0xB1], -1, 0, false));
        f.Add(new("imul Gv,Ev", [0x0F, 0xAF], -1, 0, false));
        f.Add(new("imul Gv,Ev,Iz", [0x69], -1, 4, false));
        f.Add(new("imul Gv,Ev,Ib", [0x6B], -1, 1, false));
        f.Add(new("bsf Gv,Ev", [0x0F, 0xBC], -1, 0, false));
        f.Add(new("bsr Gv,Ev", [0x0F, 0xBD], -1, 0, false));
        f.Add(new("movbe Gv,Mv", [0x0F, 0x38, 0xF0], -1, 0, false));
        f.Add(new("movbe Mv,Gv", [0x0F, 0x38, 0xF1], -1, 0, false));
        f.Add(new("movnti My,Gy", [0x0F, 0xC3], -1, 0, false));
        f.Add(new("shld Ev,Gv,Ib", [0x0F, 0xA4], -1, 1, false));
        f.Add(new("shld Ev,Gv,CL", [0x0F, 0xA5], -1, 0, false));
        f.Add(new("shrd Ev,Gv,Ib", [0x0F, 0xAC], -1, 1, false));
        f.Add(new("shrd Ev,Gv,CL", [0x0F, 0xAD], -1, 0, false));
        for (int bt = 4; bt < 8; bt++)
            f.Add(new($"bt{bt} Ev,Ib", [0x0F, 0xBA], bt, 1, false));
        for (int cc = 0; cc < 16; cc++)
        {
            f.Add(new($"set{cc} Eb", [0x0F, (byte)(0x90 + cc)], 0, 0, true));
            f.Add(new($"cmov{cc} Gv,Ev", [0x0F, (byte)(0x40 + cc)], -1, 0, false));
        }
        for (int op = 0; op < 8; op++)
        {
            byte b = (byte)(op * 8);
            f.Add(new($"alu{op} Eb,Gb", [b], -1, 0, true));
            f.Add(new($"alu{op} Ev,Gv", [(byte)(b + 1)], -1, 0, false));
            f.Add(new($"alu{op} Gb,Eb", [(byte)(b + 2)], -1, 0, true));
            f.Add(new($"alu{op} Gv,Ev", [(byte)(b + 3)], -1, 0, false));
            f.Add(new($"alu{op} Eb,Ib", [0x80], op, 1, true));
            f.Add(new($"alu{op} Ev,Iz", [0x81], op, 4, false));
            f.Add(new($"alu{op} Ev,Ib", [0x83], op, 1, false));
        }
        return f;
    }

    // The memory operand's addressing: [rbx], [rbx+disp8], [rbx+disp32] or [rbx+rsi*scale+disp8].
    private readonly record struct Addressing(int Mode, int Disp, int Scale)
    {
        public ulong Offset(in FullState s) => (ulong)(long)Disp + (Mode == 3 ? s.In[6] * (ulong)Scale : 0);
    }

    private static byte[] Build(Form form, Random rng, out int size, out Addressing addressing)
    {
        var b = new List<byte>();
        int width = form.Byte ? 1 : rng.Next(3) switch { 0 => 2, 1 => 4, _ => 8 };
        if (form.Name.StartsWith("movnti", StringComparison.Ordinal) && width == 2)
            width = 4; // MOVNTI has no 16-bit form (66 makes it #UD)
        if (width == 2)
            b.Add(0x66);
        int reg = form.Reg;
        int rex = width == 8 ? 0x48 : 0;
        if (reg < 0)
        {
            // Any register but RBX (the base) and RSP (the stub's stack); byte form 4 is AH, but
            // byte form 7 is BH, part of RBX.
            do
            {
                reg = rng.Next(16);
            }
            while (reg == 3 || (reg == 4 && !form.Byte) || (form.Byte && reg == 7));
            if (reg >= 8)
                rex |= 0x44;
            else if (form.Byte && reg >= 4 && rng.Next(2) == 0 && reg != 4)
                rex |= 0x40; // SPL..DIL instead of AH..BH
        }
        if (form.Name.StartsWith("movsxd", StringComparison.Ordinal))
            rex |= 0x48;
        if (rex != 0)
            b.Add((byte)rex);
        b.AddRange(form.Opcode);
        addressing = new Addressing(rng.Next(4), 0, 1 << rng.Next(4));
        switch (addressing.Mode)
        {
            case 0:
                b.Add((byte)(((reg & 7) << 3) | Base));
                break;
            case 1:
                addressing = addressing with { Disp = (sbyte)rng.Next(256) };
                b.Add((byte)(0x40 | ((reg & 7) << 3) | Base));
                b.Add((byte)addressing.Disp);
                break;
            case 2:
                addressing = addressing with { Disp = rng.Next(int.MinValue, int.MaxValue) };
                b.Add((byte)(0x80 | ((reg & 7) << 3) | Base));
                b.AddRange(BitConverter.GetBytes(addressing.Disp));
                break;
            default:
                addressing = addressing with { Disp = (sbyte)rng.Next(256) };
                b.Add((byte)(0x44 | ((reg & 7) << 3)));                     // mod 01, SIB follows
                b.Add((byte)((BitOperations.Log2((uint)addressing.Scale) << 6) | (6 << 3) | Base)); // [rbx + rsi*scale]
                b.Add((byte)addressing.Disp);
                break;
        }
        int imm = form.Imm == 4 && width == 2 ? 2 : form.Imm;
        for (int i = 0; i < imm; i++)
            b.Add((byte)rng.Next(256));
        size = width;
        return b.ToArray();
    }

    [Fact]
    public void EmulatedInstructionsMatchTheHostCpu()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var cpu = new NativeCpu();
        var rng = new Random(Seed);
        List<Form> forms = Forms();
        byte[] buffer = GC.AllocateArray<byte>(16, pinned: true);
        ulong bufferAddress = (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(buffer, 0);
        int failures = 0;
        string first = "";
        for (int k = 0; k < Cases; k++)
        {
            Form form = forms[rng.Next(forms.Count)];
            byte[] insn = Build(form, rng, out _, out Addressing addressing);
            var state = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status) };
            for (int r = 0; r < 16; r++)
                state.In[r] = (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 33);
            byte[] initial = new byte[8];
            rng.NextBytes(initial);
            if (form.Prep != Prep.None)
                PrepareDivision(form, insn, ref state, initial);
            if (form.Name.StartsWith("sh", StringComparison.Ordinal) && form.Name.Contains("Ev,Gv", StringComparison.Ordinal) && insn[0] == 0x66)
            {
                // 16-bit SHLD/SHRD by more than 16 leave the result undefined: keep counts in range.
                if (form.Imm == 1)
                    insn[^1] %= 17;
                else
                    state.In[1] = (state.In[1] & ~0xFFUL) | ((state.In[1] & 0xFF) % 17);
            }
            initial.CopyTo(buffer, 0);

            // Emulated first: the same registers, RBX pointing at a guest-linear address.
            var mcpu = new MockCpu { Rflags = state.FlagsIn };
            for (int r = 0; r < 16; r++)
                mcpu.Gpr[r] = state.In[r];
            ulong gla = 0x7F00_0000_0100;
            ulong offset = addressing.Offset(in state);
            mcpu.Gpr[Base] = gla - offset;
            var half = new MockDeviceHalf();
            half.Store(Gpa, BitConverter.ToUInt64(initial), 8);
            var vie = new Vie();
            string? diff = null;
            if (!vie.Begin(Gpa, gla, glaValid: true, Bitness.Bits64, insn))
                diff = "did not decode";
            else
            {
                var (st, _) = half.Run(vie, mcpu, new MockVmmDevices());
                if (st != VieStatus.Done)
                    diff = $"status {st}";
            }

            // Natively.
            state.In[Base] = bufferAddress - offset;
            cpu.Run(insn, ref state);

            if (diff == null)
                diff = Compare(insn, state, mcpu, half, buffer, BitConverter.ToUInt64(initial));
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)} ({form.Name}): {diff}";
        }
        output.WriteLine($"{Cases} cases over {forms.Count} forms, seed {Seed} (HYVE_SEED), {failures} failed");
        Assert.True(failures == 0, $"{failures} of {Cases} failed; first: {first}");
    }

    private static bool IsShift(Mnemonic m) => m is Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar;

    private static bool IsDoubleShift(Mnemonic m) => m is Mnemonic.Shld or Mnemonic.Shrd;

    private static ulong ShiftCount(in Instruction d, in FullState native)
    {
        int i = IsDoubleShift(d.Mnemonic) ? 2 : 1;
        return d.GetOperandKind(i) == OperandKind.Register ? native.In[1] & 0xFF : d.Immediate;
    }

    // The flags the SDM defines for the instruction (the rest may differ between processors).
    private static ulong DefinedFlags(in Instruction d, in FullState native)
    {
        int size = d.MemorySize;
        return d.Mnemonic switch
        {
            Mnemonic.And or Mnemonic.Or or Mnemonic.Xor or Mnemonic.Test => Rflags.Status & ~Rflags.AF,
            Mnemonic.Mul or Mnemonic.Imul => Rflags.CF | Rflags.OF,
            Mnemonic.Div or Mnemonic.Idiv => 0,
            Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc => Rflags.CF,
            Mnemonic.Bsf or Mnemonic.Bsr => Rflags.ZF,
            Mnemonic.Movbe or Mnemonic.Movnti => Rflags.Status,
            Mnemonic.Shld or Mnemonic.Shrd => Alu.DefinedDoubleShiftFlags(Alu.MaskCount(ShiftCount(in d, native), size), size),
            _ when IsShift(d.Mnemonic) => Alu.DefinedFlags((Alu.Shift)((d.ModRM >> 3) & 7), Alu.MaskCount(ShiftCount(in d, native), size), size),
            _ => Rflags.Status,
        };
    }

    // A division that cannot fault: a high half of zero (DIV) or the low half's sign (IDIV), and
    // a divisor that is neither 0 nor (for IDIV) -1.
    private static void PrepareDivision(Form form, byte[] insn, ref FullState state, byte[] memory)
    {
        Decoder.Decode(insn, Bitness.Bits64, out Instruction d);
        int size = d.MemorySize;
        ulong m = Alu.Mask(size);
        ulong divisor = BitConverter.ToUInt64(memory) & m;
        if (divisor == 0 || (form.Prep == Prep.Idiv && divisor == m))
            divisor = 3;
        for (int i = 0; i < size; i++)
            memory[i] = (byte)(divisor >> (8 * i));
        ulong rax = state.In[0];
        if (size == 1)
        {
            ulong ah = form.Prep == Prep.Div || (rax & 0x80) == 0 ? 0UL : 0xFF;
            state.In[0] = (rax & ~0xFF00UL) | (ah << 8);
        }
        else
        {
            ulong sign = (rax & Alu.SignBit(size)) != 0 && form.Prep == Prep.Idiv ? m : 0;
            state.In[2] = (state.In[2] & ~m) | sign;
        }
    }

    private static string? Compare(byte[] insn, in FullState native, MockCpu emulated, MockDeviceHalf half, byte[] buffer, ulong memoryBefore)
    {
        Decoder.Decode(insn, Bitness.Bits64, out Instruction d);
        // BSF/BSR of zero: the SDM leaves the destination undefined.
        int skip = d.Mnemonic is Mnemonic.Bsf or Mnemonic.Bsr && (memoryBefore & Alu.Mask(d.MemorySize)) == 0
            ? RegisterInfo.GprNumber(d.GetRegister(0)).N : -1;
        for (int r = 0; r < 16; r++)
        {
            if (r == 4 || r == skip)
                continue;
            if (r == Base)
            {
                // RBX held different addresses on the two sides; it must be unchanged on both.
                if (native.Out[r] != native.In[r])
                    return "rbx changed";
                continue;
            }
            if (native.Out[r] != emulated.Gpr[r])
                return $"r{r}: cpu {native.Out[r]:X} vie {emulated.Gpr[r]:X}";
        }
        ulong defined = DefinedFlags(in d, native);
        if ((native.FlagsOut & defined) != (emulated.Rflags & defined))
            return $"flags: cpu {native.FlagsOut & defined:X} vie {emulated.Rflags & defined:X}";
        for (int i = 0; i < 8; i++)
        {
            byte dev = half.Memory.TryGetValue(Gpa + (ulong)i, out byte v) ? v : (byte)0;
            if (dev != buffer[i])
                return $"memory byte {i}: cpu {buffer[i]:X2} device {dev:X2}";
        }
        if (emulated.Rip != 0x40_0000UL + (ulong)insn.Length)
            return $"rip advanced by {emulated.Rip - 0x40_0000UL}";
        // Each access once: loads, compares and tests read; stores write; read-modify-write does both.
        bool store = d.GetOperandKind(0) == OperandKind.Memory && d.OperandCount > 0;
        bool reads = !(store && d.Mnemonic is Mnemonic.Mov || d.Mnemonic is >= Mnemonic.Seta and <= Mnemonic.Sets);
        bool zeroShift = (IsShift(d.Mnemonic) || IsDoubleShift(d.Mnemonic)) && Alu.MaskCount(ShiftCount(in d, native), d.MemorySize) == 0;
        bool writes = store && !zeroShift && d.Mnemonic is not (Mnemonic.Cmp or Mnemonic.Test or Mnemonic.Bt or Mnemonic.Mul or Mnemonic.Imul or Mnemonic.Div or Mnemonic.Idiv);
        if (d.Mnemonic == Mnemonic.Movbe || d.Mnemonic == Mnemonic.Movnti)
            reads = !store;
        int expected = (reads ? 1 : 0) + (writes ? 1 : 0);
        if (half.Requests.Count != expected)
            return $"{half.Requests.Count} device accesses, expected {expected}";
        foreach (MmioAccess a in half.Requests)
        {
            if (a.Gpa != Gpa || a.Bytes != d.MemorySize)
                return $"access {a} is not the operand";
        }
        return null;
    }
}
