// The x87 unit: the register stack (physical registers R0-R7 whose significands are the MMX
// registers), the tag, control and status words, and every D8-DF instruction: loads and stores in
// each format (single, double, extended, 16/32/64-bit integer, packed BCD), the arithmetic with
// the control word's rounding and precision, comparisons into C0/C2/C3 or EFLAGS, the partial
// remainders, scale, extract, round-to-integer, FCMOVcc, stack management and the environment
// and state images (FNSTENV/FLDENV/FNSAVE/FRSTOR, protected-mode layout in every mode).
// Arithmetic is exact (ExtendedReal); the transcendental instructions (FSIN, FCOS, FSINCOS,
// FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1) compute in double precision. Stack faults and invalid
// operands give the masked responses; an unmasked IE, DE or ZE leaves the destination alone, sets
// ES and raises #MF at the next waiting instruction (CR0.NE; without it the error is only latched).
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const int TagEmpty = 3;
    private const ulong Cr0NE = 1 << 5;

    // Sign and exponent of R0-R7 (their significands are _area.Mm).
    private readonly ushort[] _fprHigh = new ushort[8];

    private static readonly bool[] X87Mnemonics = BuildX87Mnemonics();

    private static bool[] BuildX87Mnemonics()
    {
        var table = new bool[Enum.GetValues<Mnemonic>().Length + 1];
        foreach (Mnemonic m in Enum.GetValues<Mnemonic>())
        {
            string name = m.ToString();
            table[(int)m] = name.Length > 1 && name[0] == 'F'
                && m is not (Mnemonic.Femms or Mnemonic.Fxsave or Mnemonic.Fxsave64 or Mnemonic.Fxrstor or Mnemonic.Fxrstor64);
        }
        return table;
    }

    private static bool IsX87(Mnemonic m) => (uint)m < (uint)X87Mnemonics.Length && X87Mnemonics[(int)m];

    private int Top => (_fsw >> 11) & 7;

    private void SetTop(int top) => _fsw = (ushort)((_fsw & ~0x3800) | ((top & 7) << 11));

    private int Physical(int i) => (Top + i) & 7;

    private bool IsEmpty(int i) => ((_ftw >> (2 * Physical(i))) & 3) == TagEmpty;

    private ExtendedReal St(int i)
    {
        int p = Physical(i);
        return new(_fprHigh[p], _area.Mm[p]);
    }

    private void SetSt(int i, ExtendedReal v)
    {
        int p = Physical(i);
        _fprHigh[p] = v.SignExponent;
        _area.Mm[p] = v.Significand;
        _ftw = (ushort)(_ftw & ~(3 << (2 * p))); // not empty (the full tag is computed when saved)
    }

    private void PopStack()
    {
        _ftw |= (ushort)(TagEmpty << (2 * Physical(0)));
        SetTop(Top + 1);
    }

    private int RoundingMode => (_fcw >> 10) & 3;

    private RealFormat Precision => RealFormat.ExtendedWith(((_fcw >> 8) & 3) switch { 0 => 24, 2 => 53, _ => 64 }) with
    {
        WrapOverflow = (_fcw & X87Flags.OE) == 0,
        WrapUnderflow = (_fcw & X87Flags.UE) == 0,
    };

    private bool Unmasked(int flags, int which) => (flags & which & ~_fcw) != 0;

    // Records an operation's flags in the status word (C1 from the flags); true when the result
    // may be written: no unmasked invalid-operand, denormal or divide-by-zero exception.
    // With keepC1, C1 changes only on a stack fault (FCMOVcc).
    private bool Accept(int flags, bool keepC1 = false)
    {
        if ((flags & X87Flags.Tiny) != 0 && (_fcw & X87Flags.UE) == 0)
            flags |= X87Flags.UE; // unmasked, underflow is tininess alone, exact or not
        if ((flags & X87Flags.SF) != 0)
            flags &= X87Flags.IE | X87Flags.SF | X87Flags.C1; // a stack fault is all that is reported
        else if (Unmasked(flags, X87Flags.IE | X87Flags.DE | X87Flags.ZE))
            flags &= X87Flags.IE | X87Flags.DE | X87Flags.ZE; // an unmasked operand exception stops before the result
        int c1 = keepC1 && (flags & X87Flags.SF) == 0 ? _fsw & X87Flags.C1 : flags & X87Flags.C1;
        _fsw = (ushort)((_fsw & ~X87Flags.C1) | (flags & 0x7F) | c1);
        if (Unmasked(flags, 0x3F))
            _fsw |= 0x8080; // ES and B
        return !Unmasked(flags, X87Flags.IE | X87Flags.DE | X87Flags.ZE);
    }

    // A stack register as an operand: an empty one is a stack underflow (the indefinite, masked).
    private ExtendedReal Operand(int i, ref int flags)
    {
        if (!IsEmpty(i))
            return St(i);
        flags |= X87Flags.IE | X87Flags.SF;
        return ExtendedReal.Indefinite;
    }

    // Pushes a value computed with flags (FLD and the constants).
    private void Push(ExtendedReal v, int flags)
    {
        int slot = (Top - 1) & 7;
        if ((flags & X87Flags.SF) == 0 && ((_ftw >> (2 * slot)) & 3) != TagEmpty)
        {
            flags = X87Flags.IE | X87Flags.SF | X87Flags.C1; // stack overflow
            v = ExtendedReal.Indefinite;
        }
        // A denormal source (FLD m32/m64) is loaded even with DE unmasked; the error waits for
        // the next instruction.
        if (!Accept(flags) && Unmasked(flags, X87Flags.IE | X87Flags.ZE))
            return;
        SetTop(Top - 1);
        SetSt(0, v);
    }

    // The instructions that manage the unit's state rather than compute: they neither wait for a
    // pending error nor update the last-instruction pointers.
    private static bool IsX87Control(Mnemonic m) => m is Mnemonic.Fninit or Mnemonic.Fnclex or Mnemonic.Fnstcw
        or Mnemonic.Fldcw or Mnemonic.Fnstsw or Mnemonic.Fnstenv or Mnemonic.Fldenv or Mnemonic.Fnsave or Mnemonic.Frstor
        or Mnemonic.Fneni or Mnemonic.Fndisi or Mnemonic.Fnsetpm;

    // True when the instruction completed (RIP set); false when it raised.
    private bool X87(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        if ((_cr0 & (PagingState.Cr0EM | PagingState.Cr0TS)) != 0)
            return Raise(ExceptionVector.NM);
        bool control = IsX87Control(m);
        if (!control && !PendingErrorAllowsExecution())
            return false;
        bool mem = (i.ModRM >> 6) != 3;
        bool done = m switch
        {
            Mnemonic.Fisttp when (_features & CpuFeatures.Sse3) == 0 => Raise(ExceptionVector.UD),
            Mnemonic.Fadd or Mnemonic.Faddp or Mnemonic.Fiadd or Mnemonic.Fmul or Mnemonic.Fmulp or Mnemonic.Fimul
                or Mnemonic.Fsub or Mnemonic.Fsubp or Mnemonic.Fisub or Mnemonic.Fsubr or Mnemonic.Fsubrp or Mnemonic.Fisubr
                or Mnemonic.Fdiv or Mnemonic.Fdivp or Mnemonic.Fidiv or Mnemonic.Fdivr or Mnemonic.Fdivrp or Mnemonic.Fidivr => Arithmetic(mem),
            Mnemonic.Fcom or Mnemonic.Fcomp or Mnemonic.Fcompp or Mnemonic.Fucom or Mnemonic.Fucomp or Mnemonic.Fucompp
                or Mnemonic.Ficom or Mnemonic.Ficomp or Mnemonic.Fcomi or Mnemonic.Fcomip or Mnemonic.Fucomi or Mnemonic.Fucomip
                or Mnemonic.Ftst => CompareStack(m, mem),
            Mnemonic.Fld or Mnemonic.Fild or Mnemonic.Fbld => Load(m, mem),
            Mnemonic.Fld1 or Mnemonic.Fldl2t or Mnemonic.Fldl2e or Mnemonic.Fldpi or Mnemonic.Fldlg2 or Mnemonic.Fldln2 or Mnemonic.Fldz => LoadConstant(m),
            Mnemonic.Fst or Mnemonic.Fstp or Mnemonic.Fstpnce or Mnemonic.Fist or Mnemonic.Fistp or Mnemonic.Fisttp or Mnemonic.Fbstp => Store(m, mem),
            _ when control => ControlState(m),
            Mnemonic.Fsin or Mnemonic.Fcos or Mnemonic.Fsincos or Mnemonic.Fptan or Mnemonic.Fpatan or Mnemonic.F2xm1
                or Mnemonic.Fyl2x or Mnemonic.Fyl2xp1 => Transcendental(m),
            _ => StackOperation(m),
        };
        if (!done)
            return false;
        if (!control)
        {
            // The last instruction and operand pointers, once the instruction has run (a fault on
            // its operand leaves the previous ones, as hardware does).
            _fip = _rip;
            _fcs = _seg[1].Selector;
            _fop = (ushort)(((i.OpcodeByte & 7) << 8) | i.ModRM);
            if (mem)
            {
                _fdp = Ea();
                _fds = _seg[i.MemorySegment - Register.ES].Selector;
            }
        }
        _rip = next;
        return true;
    }

    // The memory operand of an arithmetic or compare form: D8 m32fp, DC m64fp, DA m32int, DE m16int.
    private bool MemoryOperand(out ExtendedReal v, ref int flags)
    {
        v = default;
        int esc = _insn.OpcodeByte & 7;
        int size = esc switch { 0 => 4, 4 => 8, 2 => 4, _ => 2 };
        if (!Read(_insn.MemorySegment, Ea(), size, out ulong raw))
            return false;
        v = esc switch
        {
            // A signaling NaN stays signaling: the operation that uses it reports IE.
            0 => ExtendedReal.FromBinary(raw, false, false, ref flags),
            4 => ExtendedReal.FromBinary(raw, true, false, ref flags),
            _ => ExtendedReal.FromInteger(Alu.SignExtend(raw, size)),
        };
        return true;
    }

    private bool Arithmetic(bool mem)
    {
        ref readonly Instruction i = ref _insn;
        int op = (i.ModRM >> 3) & 7, rm = i.ModRM & 7, esc = i.OpcodeByte & 7;
        int flags = 0;
        int dest;
        ExtendedReal src;
        bool reversed, pop = false;
        if (mem)
        {
            if (!MemoryOperand(out src, ref flags))
                return false;
            dest = 0;
            reversed = (op & 1) != 0;
        }
        else if (esc == 0)
        {
            dest = 0;
            src = Operand(rm, ref flags);
            reversed = (op & 1) != 0;
        }
        else
        {
            // DC and DE: ST(i) is the destination, and /4-/7 name the reversed forms.
            dest = rm;
            src = Operand(0, ref flags);
            reversed = (op & 1) == 0;
            pop = esc == 6;
        }
        ExtendedReal d = Operand(dest, ref flags);
        if (d.IsNaN || d.Class == RealClass.Unsupported)
            flags &= ~X87Flags.DE; // a NaN operand outranks a denormal one
        ExtendedReal result;
        if ((flags & X87Flags.SF) != 0)
            result = ExtendedReal.Indefinite;
        else
        {
            ExtendedReal a = reversed ? src : d, b = reversed ? d : src;
            RealFormat f = Precision;
            int rc = RoundingMode;
            result = op switch
            {
                0 => ExtendedReal.Add(a, b, false, f, rc, ref flags),
                1 => ExtendedReal.Multiply(a, b, f, rc, ref flags),
                4 or 5 => ExtendedReal.Add(a, b, true, f, rc, ref flags),
                _ => ExtendedReal.Divide(a, b, f, rc, ref flags),
            };
        }
        if (!Accept(flags))
            return true; // the destination and the stack stay as they were
        SetSt(dest, result);
        if (pop)
            PopStack();
        return true;
    }

    private bool CompareStack(Mnemonic m, bool mem)
    {
        int flags = 0;
        ExtendedReal a = Operand(0, ref flags), b;
        if (m == Mnemonic.Ftst)
            b = ExtendedReal.Zero(false);
        else if (mem)
        {
            if (!MemoryOperand(out b, ref flags))
                return false;
        }
        else
            b = Operand(m is Mnemonic.Fcompp or Mnemonic.Fucompp ? 1 : _insn.ModRM & 7, ref flags);
        if (a.IsNaN || a.Class == RealClass.Unsupported)
            flags &= ~X87Flags.DE; // a NaN operand outranks a denormal one
        bool unordered = m is Mnemonic.Fucom or Mnemonic.Fucomp or Mnemonic.Fucompp or Mnemonic.Fucomi or Mnemonic.Fucomip;
        int r = (flags & X87Flags.SF) != 0 ? 2 : ExtendedReal.Compare(a, b, !unordered, ref flags);
        bool eflags = m is Mnemonic.Fcomi or Mnemonic.Fcomip or Mnemonic.Fucomi or Mnemonic.Fucomip;
        Accept(flags, keepC1: eflags); // the condition codes are written even for an unmasked invalid operand
        if (eflags)
        {
            ulong f = Flags & ~Rflags.Status;
            f |= r switch { 2 => Rflags.ZF | Rflags.PF | Rflags.CF, 0 => Rflags.ZF, -1 => Rflags.CF, _ => 0 };
            Flags = f;
        }
        else
        {
            int c = r switch { 2 => 0x4500, 0 => 0x4000, -1 => 0x0100, _ => 0 }; // C3 C2 C0
            _fsw = (ushort)((_fsw & ~0x4500) | c);
        }
        int pops = m switch
        {
            Mnemonic.Fcomp or Mnemonic.Fucomp or Mnemonic.Ficomp or Mnemonic.Fcomip or Mnemonic.Fucomip => 1,
            Mnemonic.Fcompp or Mnemonic.Fucompp => 2,
            _ => 0,
        };
        if (Unmasked(flags, X87Flags.IE | X87Flags.DE))
            pops = 0; // an unmasked invalid or denormal operand leaves the stack as it was
        for (int k = 0; k < pops; k++)
            PopStack();
        return true;
    }

    private bool Load(Mnemonic m, bool mem)
    {
        ref readonly Instruction i = ref _insn;
        int flags = 0;
        ExtendedReal v;
        if (!mem)
            v = Operand(i.ModRM & 7, ref flags); // FLD ST(i)
        else
        {
            Register seg = i.MemorySegment;
            ulong ea = Ea();
            int esc = i.OpcodeByte & 7, reg = (i.ModRM >> 3) & 7;
            if (m == Mnemonic.Fld && esc != 3)
            {
                if (!Read(seg, ea, esc == 1 ? 4 : 8, out ulong raw))
                    return false;
                v = ExtendedReal.FromBinary(raw, esc == 5, true, ref flags);
            }
            else if (m == Mnemonic.Fild)
            {
                int size = esc == 7 ? (reg == 5 ? 8 : 2) : esc == 3 ? 4 : 2;
                if (!Read(seg, ea, size, out ulong raw))
                    return false;
                v = ExtendedReal.FromInteger(Alu.SignExtend(raw, size));
            }
            else
            {
                if (!Read(seg, ea, 8, out ulong low) || !Read(seg, (ea + 8) & Alu.Mask(i.AddressSize), 2, out ulong high))
                    return false;
                v = m == Mnemonic.Fbld ? FromBcd(low, (ushort)high) : new((ushort)high, low);
            }
        }
        Push(v, flags);
        return true;
    }

    private static ExtendedReal FromBcd(ulong low, ushort high)
    {
        long value = 0;
        for (int d = 17; d >= 0; d--)
        {
            int digit = (int)(d < 16 ? (low >> (4 * d)) & 0xF : (ulong)(high >> (4 * (d - 16))) & 0xF);
            value = value * 10 + digit; // digits above 9 give whatever they give, as the SDM leaves it
        }
        ExtendedReal v = ExtendedReal.FromInteger(value);
        return (high & 0x8000) != 0 ? v.Negate() : v;
    }

    // FLD1 and the others: the constant rounded in the current mode (66 bits of each kept).
    private bool LoadConstant(Mnemonic m)
    {
        (int e, ulong hi, ulong lo) = m switch
        {
            Mnemonic.Fld1 => (0, 0x8000_0000_0000_0000UL, 0UL),
            Mnemonic.Fldl2t => (1, 0xD49A_784B_CD1B_8AFEUL, 0x492B_F6FF_4DAF_DB4CUL),
            Mnemonic.Fldl2e => (0, 0xB8AA_3B29_5C17_F0BBUL, 0xBE87_FED0_691D_3E89UL),
            Mnemonic.Fldpi => (1, 0xC90F_DAA2_2168_C234UL, 0xC4C6_628B_80DC_1CD1UL),
            Mnemonic.Fldlg2 => (-2, 0x9A20_9A84_FBCF_F798UL, 0x8F89_90B3_5DB0_C6E0UL),
            Mnemonic.Fldln2 => (-1, 0xB172_17F7_D1CF_79ABUL, 0xC9E3_B398_03F2_F6AFUL),
            _ => (0, 0UL, 0UL),
        };
        ExtendedReal v = hi == 0 ? ExtendedReal.Zero(false) : ExtendedReal.Constant(e, ((UInt128)hi << 64) | lo, RoundingMode);
        Push(v, 0);
        return true;
    }

    private bool Store(Mnemonic m, bool mem)
    {
        ref readonly Instruction i = ref _insn;
        int flags = 0;
        ExtendedReal v = Operand(0, ref flags);
        if (m == Mnemonic.Fstpnce && (flags & X87Flags.SF) != 0)
        {
            // FSTP1 (D9 D8+i), the undocumented alias: an empty ST(0) is popped without a fault
            // or a store.
            _fsw &= unchecked((ushort)~X87Flags.C1);
            PopStack();
            return true;
        }
        bool pop = m is Mnemonic.Fstp or Mnemonic.Fstpnce or Mnemonic.Fistp or Mnemonic.Fisttp or Mnemonic.Fbstp;
        if (!mem)
        {
            // FST/FSTP ST(i): a copy, no rounding.
            if (Accept(flags))
                SetSt(i.ModRM & 7, v);
            else
                return true;
            if (pop)
                PopStack();
            return true;
        }
        int esc = i.OpcodeByte & 7, reg = (i.ModRM >> 3) & 7;
        bool underflow = (flags & X87Flags.SF) != 0;
        int rc = RoundingMode;
        ulong low, high = 0;
        int size;
        if (m is Mnemonic.Fst or Mnemonic.Fstp && esc != 3)
        {
            size = esc == 1 ? 4 : 8;
            low = ExtendedReal.ToBinary(v, size == 8, rc, ref flags);
        }
        else if (m is Mnemonic.Fist or Mnemonic.Fistp or Mnemonic.Fisttp)
        {
            size = m == Mnemonic.Fisttp ? esc switch { 3 => 4, 5 => 8, _ => 2 } : esc == 3 ? 4 : reg == 7 ? 8 : 2;
            low = underflow ? 1UL << (8 * size - 1) : ExtendedReal.ToInteger(v, size, rc, m == Mnemonic.Fisttp, ref flags);
        }
        else if (m == Mnemonic.Fbstp)
        {
            size = 10;
            (low, high) = ToBcd(v, rc, ref flags);
        }
        else
        {
            size = 10;
            low = v.Significand;
            high = v.SignExponent;
        }
        // Unmasked, invalid (and for single and double, overflow and underflow) store nothing.
        int withheld = X87Flags.IE | (size is 4 or 8 && m is Mnemonic.Fst or Mnemonic.Fstp ? X87Flags.OE | X87Flags.UE : 0);
        if (Unmasked(flags | ((flags & X87Flags.Tiny) != 0 ? X87Flags.UE : 0), withheld))
        {
            // Nothing stored: no precision flag and no rounding direction either.
            Accept(Unmasked(flags, X87Flags.IE) ? flags : flags & ~(X87Flags.PE | X87Flags.C1));
            return true;
        }
        Register seg = i.MemorySegment;
        ulong ea = Ea();
        if (size == 10)
        {
            ulong second = (ea + 8) & Alu.Mask(i.AddressSize);
            if (!Read(seg, ea, 8, out _, forWrite: true) || !Read(seg, second, 2, out _, forWrite: true)
                || !Write(seg, ea, 8, low) || !Write(seg, second, 2, high))
                return false;
        }
        else if (!Write(seg, ea, size, low))
            return false;
        Accept(flags);
        if (pop)
            PopStack();
        return true;
    }

    private static (ulong Low, ulong High) ToBcd(ExtendedReal v, int rc, ref int flags)
    {
        RealClass c = v.Class;
        ulong magnitude = 0;
        bool bad = c is RealClass.Unsupported or RealClass.QuietNaN or RealClass.SignalingNaN or RealClass.Infinity;
        if (!bad && c != RealClass.Zero)
        {
            int probe = 0;
            long signed = (long)ExtendedReal.ToInteger(v, 8, rc, false, ref probe);
            ulong n = (ulong)Math.Abs(signed == long.MinValue ? 0 : signed);
            bad = (probe & X87Flags.IE) != 0 || signed == long.MinValue || n >= 1_000_000_000_000_000_000UL;
            if (!bad)
            {
                flags |= probe;
                magnitude = n;
            }
        }
        if (bad)
        {
            flags |= X87Flags.IE;
            return (0xC000_0000_0000_0000UL, 0xFFFF); // the packed-BCD indefinite
        }
        ulong low = 0, high = 0;
        for (int d = 0; d < 18; d++, magnitude /= 10)
        {
            ulong digit = magnitude % 10;
            if (d < 16)
                low |= digit << (4 * d);
            else
                high |= digit << (4 * (d - 16));
        }
        return (low, high | (v.Negative ? 0x8000UL : 0));
    }

    private bool StackOperation(Mnemonic m)
    {
        int rm = _insn.ModRM & 7;
        int flags = 0;
        switch (m)
        {
            case Mnemonic.Fxch:
                {
                    ExtendedReal a = Operand(0, ref flags), b = Operand(rm, ref flags);
                    if (!Accept(flags))
                        return true;
                    SetSt(0, b);
                    SetSt(rm, a);
                    return true;
                }
            case Mnemonic.Fchs or Mnemonic.Fabs:
                {
                    ExtendedReal a = Operand(0, ref flags);
                    if (Accept(flags))
                        SetSt(0, (flags & X87Flags.SF) != 0 ? a : m == Mnemonic.Fchs ? a.Negate() : a.Abs());
                    return true;
                }
            case Mnemonic.Fnop:
                return true;
            case Mnemonic.Ffree or Mnemonic.Ffreep:
                _ftw |= (ushort)(TagEmpty << (2 * Physical(rm)));
                _fsw &= unchecked((ushort)~X87Flags.C1);
                if (m == Mnemonic.Ffreep)
                    PopStack();
                return true;
            case Mnemonic.Fincstp or Mnemonic.Fdecstp:
                SetTop(Top + (m == Mnemonic.Fincstp ? 1 : -1));
                _fsw &= unchecked((ushort)~X87Flags.C1);
                return true;
            case Mnemonic.Fcmovb or Mnemonic.Fcmove or Mnemonic.Fcmovbe or Mnemonic.Fcmovu
                or Mnemonic.Fcmovnb or Mnemonic.Fcmovne or Mnemonic.Fcmovnbe or Mnemonic.Fcmovnu:
                {
                    Operand(0, ref flags); // ST(0) must be in use even when the condition fails
                    ExtendedReal b = Operand(rm, ref flags);
                    if (!Accept(flags, keepC1: true))
                        return true;
                    int cc = ((_insn.ModRM >> 3) & 3) switch { 0 => 2, 1 => 4, 2 => 6, _ => 0xA } | ((_insn.OpcodeByte & 1) != 0 ? 1 : 0);
                    if ((flags & X87Flags.SF) != 0)
                        SetSt(0, ExtendedReal.Indefinite);
                    else if (Condition(cc))
                        SetSt(0, b);
                    return true;
                }
            case Mnemonic.Fxam:
                {
                    int c;
                    if (IsEmpty(0))
                        c = 0x4100; // C3 C0: empty
                    else
                    {
                        c = St(0).Class switch
                        {
                            RealClass.Unsupported => 0,
                            RealClass.QuietNaN or RealClass.SignalingNaN => 0x0100,
                            RealClass.Normal => 0x0400,
                            RealClass.Infinity => 0x0500,
                            RealClass.Zero => 0x4000,
                            _ => 0x4400, // denormal
                        };
                    }
                    // C1 is the sign, even of an empty register's contents.
                    int sign = (_fprHigh[Physical(0)] & 0x8000) != 0 ? X87Flags.C1 : 0;
                    _fsw = (ushort)((_fsw & ~(0x4500 | X87Flags.C1)) | c | sign);
                    return true;
                }
            case Mnemonic.Fsqrt or Mnemonic.Frndint:
                {
                    ExtendedReal a = Operand(0, ref flags);
                    if ((flags & X87Flags.SF) == 0)
                        a = m == Mnemonic.Fsqrt ? ExtendedReal.SquareRoot(a, Precision, RoundingMode, ref flags) : ExtendedReal.RoundToInteger(a, RoundingMode, ref flags);
                    if (Accept(flags))
                        SetSt(0, a);
                    return true;
                }
            case Mnemonic.Fscale or Mnemonic.Fprem or Mnemonic.Fprem1:
                {
                    ExtendedReal a = Operand(0, ref flags), b = Operand(1, ref flags);
                    int quotient = -1;
                    bool partial = false;
                    ExtendedReal r = ExtendedReal.Indefinite;
                    if ((flags & X87Flags.SF) == 0)
                    {
                        r = m == Mnemonic.Fscale ? ExtendedReal.Scale(a, b, RoundingMode, ref flags)
                            : ExtendedReal.Remainder(a, b, m == Mnemonic.Fprem1, ref flags, out quotient, out partial);
                    }
                    if (m != Mnemonic.Fscale)
                    {
                        // C0, C3, C1 = quotient bits 2, 1, 0 and C2 = incomplete; without a
                        // quotient (a NaN, an invalid operand) C1 and C2 clear and C0, C3 stay.
                        flags &= ~X87Flags.C1;
                        if (quotient > 0 && (quotient & 1) != 0)
                            flags |= X87Flags.C1;
                        _fsw &= unchecked((ushort)~0x0400);
                        if (quotient >= 0)
                        {
                            int c = ((quotient & 4) != 0 ? 0x0100 : 0) | ((quotient & 2) != 0 ? 0x4000 : 0) | (partial ? 0x0400 : 0);
                            _fsw = (ushort)((_fsw & ~0x4500) | c);
                        }
                    }
                    if (Accept(flags))
                        SetSt(0, r);
                    return true;
                }
            case Mnemonic.Fxtract:
                {
                    ExtendedReal a = Operand(0, ref flags);
                    var (exponent, significand) = (flags & X87Flags.SF) != 0 ? (a, a) : ExtendedReal.Extract(a, ref flags);
                    TwoResults(exponent, significand, flags);
                    return true;
                }
            default:
                return RaiseUnimplemented(); // every D8-DF mnemonic is handled above
        }
    }

    // The transcendental instructions, in double precision.
    private bool Transcendental(Mnemonic m)
    {
        int flags = 0;
        bool binary = m is Mnemonic.Fpatan or Mnemonic.Fyl2x or Mnemonic.Fyl2xp1;
        bool twoResults = m is Mnemonic.Fsincos or Mnemonic.Fptan;
        if (m is Mnemonic.Fsin or Mnemonic.Fcos or Mnemonic.Fsincos or Mnemonic.Fptan)
            _fsw &= unchecked((ushort)~0x0400); // C2: set again below only for an argument out of range
        ExtendedReal a = Operand(0, ref flags), b = binary ? Operand(1, ref flags) : default;
        if ((flags & X87Flags.SF) != 0)
        {
            if (twoResults)
                TwoResults(a, a, flags);
            else if (Accept(flags))
            {
                SetSt(binary ? 1 : 0, ExtendedReal.Indefinite);
                if (binary)
                    PopStack();
            }
            return true;
        }
        RealClass ca = a.Class;
        // A NaN or unsupported operand gives the NaN rules' result; otherwise a denormal one reports DE.
        if (ExtendedReal.Special(binary ? b : a, a, out ExtendedReal nan, ref flags))
        {
            if (m is Mnemonic.Fsincos or Mnemonic.Fptan)
                TwoResults(nan, nan, flags);
            else if (Accept(flags))
            {
                SetSt(binary ? 1 : 0, nan);
                if (binary)
                    PopStack();
            }
            return true;
        }
        double x = ExtendedReal.ToDouble(a);
        if (m is Mnemonic.Fsin or Mnemonic.Fcos or Mnemonic.Fsincos or Mnemonic.Fptan)
        {
            if (ca == RealClass.Infinity)
            {
                flags |= X87Flags.IE;
                if (m is Mnemonic.Fsincos or Mnemonic.Fptan)
                    TwoResults(ExtendedReal.Indefinite, ExtendedReal.Indefinite, flags);
                else if (Accept(flags))
                    SetSt(0, ExtendedReal.Indefinite);
                return true;
            }
            if (Math.Abs(x) >= 9.2233720368547758E18)
            {
                _fsw |= 0x0400; // C2: out of range, ST(0) unchanged
                return true;
            }
        }
        if (ca != RealClass.Zero || m is Mnemonic.Fcos or Mnemonic.Fsincos or Mnemonic.Fptan)
            flags |= X87Flags.PE;
        double y = binary ? ExtendedReal.ToDouble(b) : 0;
        switch (m)
        {
            case Mnemonic.Fsin:
                return Transcended(Math.Sin(x), flags);
            case Mnemonic.Fcos:
                return Transcended(Math.Cos(x), flags);
            case Mnemonic.F2xm1:
                return Transcended(Math.Pow(2, x) - 1, flags);
            case Mnemonic.Fsincos or Mnemonic.Fptan:
                TwoResults(ExtendedReal.FromDouble(m == Mnemonic.Fsincos ? Math.Sin(x) : Math.Tan(x)),
                    m == Mnemonic.Fsincos ? ExtendedReal.FromDouble(Math.Cos(x)) : ExtendedReal.One, flags);
                return true;
            default:
                {
                    double r;
                    if (m == Mnemonic.Fpatan)
                        r = Math.Atan2(y, x);
                    else
                    {
                        double arg = m == Mnemonic.Fyl2xp1 ? x + 1 : x;
                        if (arg < 0 || (ca == RealClass.Infinity && a.Negative))
                            flags |= X87Flags.IE;
                        else if (arg == 0 && m == Mnemonic.Fyl2x)
                            flags |= y == 0 ? X87Flags.IE : X87Flags.ZE;
                        // Near 1, log2 goes through log1p of the exact x - 1, which keeps the
                        // small result's relative precision.
                        int ignored = 0;
                        double e = m == Mnemonic.Fyl2xp1 ? x
                            : Math.Abs(x - 1) < 0.25 ? ExtendedReal.ToDouble(ExtendedReal.Add(a, ExtendedReal.One, true, RealFormat.Extended, 0, ref ignored)) : double.NaN;
                        r = y * (double.IsNaN(e) ? Math.Log2(arg) : Log1p(e) / Math.Log(2));
                    }
                    if (!Accept(flags))
                        return true;
                    SetSt(1, (flags & X87Flags.IE) != 0 ? ExtendedReal.Indefinite : ExtendedReal.FromDouble(r));
                    PopStack();
                    return true;
                }
        }
    }

    // ln(1 + e) to double precision for small e: the rounding of 1 + e is divided back out.
    private static double Log1p(double e)
    {
        double u = 1 + e;
        return u == 1 ? e : Math.Log(u) * e / (u - 1);
    }

    // FXTRACT, FPTAN and FSINCOS: ST(0) replaced and a second result pushed; with no room to push,
    // a stack overflow leaves the indefinite in both (masked).
    private void TwoResults(ExtendedReal replaced, ExtendedReal pushed, int flags)
    {
        if ((flags & X87Flags.SF) != 0)
            replaced = pushed = ExtendedReal.Indefinite; // an empty ST(0): underflow comes first
        else if (((_ftw >> (2 * ((Top - 1) & 7))) & 3) != TagEmpty)
        {
            flags = X87Flags.IE | X87Flags.SF | X87Flags.C1;
            replaced = pushed = ExtendedReal.Indefinite;
        }
        if (!Accept(flags))
            return;
        SetSt(0, replaced);
        SetTop(Top - 1);
        SetSt(0, pushed);
    }

    private bool Transcended(double r, int flags)
    {
        if (Accept(flags))
            SetSt(0, ExtendedReal.FromDouble(r));
        return true;
    }

    private bool ControlState(Mnemonic m)
    {
        ref readonly Instruction i = ref _insn;
        switch (m)
        {
            case Mnemonic.Fninit:
                FpuReset();
                break;
            case Mnemonic.Fnclex:
                _fsw &= 0x7F00;
                break;
            case Mnemonic.Fnstcw:
                return Write(i.MemorySegment, Ea(), 2, _fcw);
            case Mnemonic.Fldcw:
                {
                    if (!Read(i.MemorySegment, Ea(), 2, out ulong v))
                        return false;
                    _fcw = (ushort)(v | 0x40);
                    UpdateErrorSummary();
                    break;
                }
            case Mnemonic.Fnstsw:
                if ((i.ModRM >> 6) == 3)
                    Set(Register.AX, _fsw);
                else if (!Write(i.MemorySegment, Ea(), 2, _fsw))
                    return false;
                break;
            case Mnemonic.Fnstenv or Mnemonic.Fnsave:
                return SaveEnvironment(m == Mnemonic.Fnsave);
            case Mnemonic.Fldenv or Mnemonic.Frstor:
                return LoadEnvironment(m == Mnemonic.Frstor);
            default:
                break; // FNENI, FNDISI, FNSETPM: no-ops since the 80387
        }
        return true;
    }

    private void FpuReset()
    {
        _fcw = 0x037F;
        _fsw = 0;
        _ftw = 0xFFFF;
        _fop = 0;
        _fip = _fdp = 0;
        _fcs = _fds = 0;
    }

    // ES and B follow the exception flags against the masks.
    private void UpdateErrorSummary() =>
        _fsw = (ushort)((_fsw & 0x3F & ~_fcw) != 0 ? _fsw | 0x8080 : _fsw & ~0x8080);

    // The tag word as FNSTENV stores it: valid, zero, special or empty for each physical register.
    private ushort FullTags()
    {
        int tags = 0;
        for (int p = 0; p < 8; p++)
        {
            int t = (_ftw >> (2 * p)) & 3;
            if (t != TagEmpty)
            {
                t = new ExtendedReal(_fprHigh[p], _area.Mm[p]).Class switch
                {
                    RealClass.Normal => 0,
                    RealClass.Zero => 1,
                    _ => 2,
                };
            }
            tags |= t << (2 * p);
        }
        return (ushort)tags;
    }

    // The protected-mode environment: 28 bytes (14 with a 16-bit operand size), then for FNSAVE
    // the eight registers in stack order.
    private bool SaveEnvironment(bool registers)
    {
        ref readonly Instruction i = ref _insn;
        bool small = i.OperandSize == 2;
        int env = small ? 14 : 28, unit = small ? 2 : 4;
        Span<byte> img = stackalloc byte[108];
        img.Clear();
        Span<ulong> fields = [_fcw, _fsw, FullTags(), _fip, _fcs | ((ulong)(_fop & 0x7FF) << 16), _fdp, _fds];
        for (int f = 0; f < 7; f++)
        {
            ulong v = fields[f];
            if (small)
                v &= 0xFFFF;
            else if (f is 0 or 1 or 2 or 6)
                v |= 0xFFFF_0000;
            for (int b = 0; b < unit; b++)
                img[f * unit + b] = (byte)(v >> (8 * b));
        }
        int total = env;
        if (registers)
        {
            for (int k = 0; k < 8; k++)
            {
                ExtendedReal r = St(k);
                BitConverter.TryWriteBytes(img[(env + 10 * k)..], r.Significand);
                BitConverter.TryWriteBytes(img[(env + 10 * k + 8)..], r.SignExponent);
            }
            total += 80;
        }
        Register seg = i.MemorySegment;
        ulong ea = Ea();
        ulong mask = Alu.Mask(i.AddressSize);
        if (!Read(seg, ea, 1, out _, forWrite: true) || !Read(seg, (ea + (ulong)total - 1) & mask, 1, out _, forWrite: true))
            return false;
        for (int k = 0; k < total; k++)
        {
            if (!Write(seg, (ea + (ulong)k) & mask, 1, img[k]))
                return false;
        }
        if (registers)
            FpuReset();
        else
            _fcw |= 0x3F; // FNSTENV masks every exception
        UpdateErrorSummary();
        return true;
    }

    private bool LoadEnvironment(bool registers)
    {
        ref readonly Instruction i = ref _insn;
        bool small = i.OperandSize == 2;
        int env = small ? 14 : 28, unit = small ? 2 : 4;
        int total = env + (registers ? 80 : 0);
        Span<byte> img = stackalloc byte[108];
        Register seg = i.MemorySegment;
        ulong ea = Ea();
        ulong mask = Alu.Mask(i.AddressSize);
        for (int k = 0; k < total; k++)
        {
            if (!Read(seg, (ea + (ulong)k) & mask, 1, out ulong b))
                return false;
            img[k] = (byte)b;
        }
        _fcw = (ushort)(Field(img, 0, unit) | 0x40);
        _fsw = (ushort)Field(img, 1, unit);
        int tags = (int)Field(img, 2, unit) & 0xFFFF, ftw = 0;
        for (int p = 0; p < 8; p++)
            ftw |= (((tags >> (2 * p)) & 3) == TagEmpty ? TagEmpty : 0) << (2 * p);
        _ftw = (ushort)ftw;
        _fip = Field(img, 3, unit);
        _fcs = (ushort)Field(img, 4, unit);
        _fop = (ushort)((Field(img, 4, unit) >> 16) & 0x7FF);
        _fdp = Field(img, 5, unit);
        _fds = (ushort)Field(img, 6, unit);
        if (registers)
        {
            for (int k = 0; k < 8; k++)
            {
                int p = Physical(k);
                _area.Mm[p] = BitConverter.ToUInt64(img[(env + 10 * k)..]);
                _fprHigh[p] = BitConverter.ToUInt16(img[(env + 10 * k + 8)..]);
            }
        }
        UpdateErrorSummary();
        return true;
    }

    private static ulong Field(ReadOnlySpan<byte> img, int f, int unit)
    {
        ulong v = 0;
        for (int b = unit - 1; b >= 0; b--)
            v = (v << 8) | img[f * unit + b];
        return v;
    }

    // A waiting instruction with an unmasked exception pending raises #MF (with CR0.NE; without it
    // the error would go out on FERR#, which this machine leaves unconnected).
    private bool PendingErrorAllowsExecution()
    {
        if ((_fsw & 0x80) == 0 || (_cr0 & Cr0NE) == 0)
            return true;
        return Raise(ExceptionVector.MF);
    }
}
