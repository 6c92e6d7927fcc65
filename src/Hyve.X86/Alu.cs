// Integer arithmetic with the x86 status flags, shared by the MMIO emulator and the software CPU.
using System;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Hyve.X86;

/// <summary>
/// Integer operations at an operand size of 1, 2, 4 or 8 bytes. Each returns the result truncated
/// to the size and updates the status flags in <c>flags</c> the way the instruction does on Intel
/// hardware. Flags the SDM leaves undefined get the value Intel processors are commonly observed
/// to produce where that is stable (noted per method); callers comparing against hardware should
/// mask them with <see cref="DefinedFlags(Op)"/> and <see cref="DefinedFlags(Shift, int, int)"/>.
/// </summary>
public static class Alu
{
    /// <summary>Binary operations of the 00–3F opcode row (and group 1).</summary>
    public enum Op : byte
    {
        /// <summary>a + b.</summary>
        Add,
        /// <summary>a | b.</summary>
        Or,
        /// <summary>a + b + CF.</summary>
        Adc,
        /// <summary>a - b - CF.</summary>
        Sbb,
        /// <summary>a &amp; b.</summary>
        And,
        /// <summary>a - b.</summary>
        Sub,
        /// <summary>a ^ b.</summary>
        Xor,
        /// <summary>a - b, flags only.</summary>
        Cmp,
    }

    /// <summary>Shift and rotate operations in group-2 order (/0../7; /6 is SAL, an alias of SHL).</summary>
    public enum Shift : byte
    {
        /// <summary>Rotate left.</summary>
        Rol,
        /// <summary>Rotate right.</summary>
        Ror,
        /// <summary>Rotate left through carry.</summary>
        Rcl,
        /// <summary>Rotate right through carry.</summary>
        Rcr,
        /// <summary>Shift left.</summary>
        Shl,
        /// <summary>Shift right (logical).</summary>
        Shr,
        /// <summary>Shift left (alias).</summary>
        Sal,
        /// <summary>Shift right (arithmetic).</summary>
        Sar,
    }

    /// <summary>The operation of an ADD..CMP mnemonic (<see cref="Op.Cmp"/> for anything else).</summary>
    public static Op OpOf(Decoding.Mnemonic m) => m switch
    {
        Decoding.Mnemonic.Add => Op.Add,
        Decoding.Mnemonic.Or => Op.Or,
        Decoding.Mnemonic.Adc => Op.Adc,
        Decoding.Mnemonic.Sbb => Op.Sbb,
        Decoding.Mnemonic.And => Op.And,
        Decoding.Mnemonic.Sub => Op.Sub,
        Decoding.Mnemonic.Xor => Op.Xor,
        _ => Op.Cmp,
    };

    /// <summary>All ones at <paramref name="size"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mask(int size) => ulong.MaxValue >> (64 - 8 * size);

    /// <summary>The sign bit at <paramref name="size"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SignBit(int size) => 1UL << (8 * size - 1);

    /// <summary>Sign-extends the low <paramref name="size"/> bytes of <paramref name="v"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long SignExtend(ulong v, int size) => (long)(v << (64 - 8 * size)) >> (64 - 8 * size);

    /// <summary>ZF, SF and PF of a result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ZfSfPf(ulong r, int size)
    {
        ulong f = (r & Mask(size)) == 0 ? Rflags.ZF : 0;
        if ((r & SignBit(size)) != 0)
            f |= Rflags.SF;
        if ((BitOperations.PopCount(r & 0xFF) & 1) == 0)
            f |= Rflags.PF;
        return f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Set(ref ulong flags, ulong affected, ulong values) => flags = (flags & ~affected) | (values & affected);

    /// <summary>The flags <paramref name="op"/> defines (the rest are left undefined by the SDM).</summary>
    public static ulong DefinedFlags(Op op) => op is Op.And or Op.Or or Op.Xor ? Rflags.Status & ~Rflags.AF : Rflags.Status;

    /// <summary>Executes a binary ALU operation; for <see cref="Op.Cmp"/> the result is <paramref name="a"/> unchanged.</summary>
    public static ulong Binary(Op op, ulong a, ulong b, int size, ref ulong flags)
    {
        ulong m = Mask(size);
        a &= m;
        b &= m;
        switch (op)
        {
            case Op.Add: return AddCore(a, b, 0, size, ref flags);
            case Op.Adc: return AddCore(a, b, flags & Rflags.CF, size, ref flags);
            case Op.Sub: return SubCore(a, b, 0, size, ref flags);
            case Op.Sbb: return SubCore(a, b, flags & Rflags.CF, size, ref flags);
            case Op.Cmp:
                SubCore(a, b, 0, size, ref flags);
                return a;
            case Op.And: return Logic(a & b, size, ref flags);
            case Op.Or: return Logic(a | b, size, ref flags);
            default: return Logic(a ^ b, size, ref flags);
        }
    }

    private static ulong AddCore(ulong a, ulong b, ulong carry, int size, ref ulong flags)
    {
        ulong m = Mask(size);
        ulong r = (a + b + carry) & m;
        bool cf = size == 8 ? r < a || (carry != 0 && r == a) : ((a + b + carry) >> (8 * size)) != 0;
        ulong f = ZfSfPf(r, size) | (cf ? Rflags.CF : 0);
        if (((a ^ b ^ r) & 0x10) != 0)
            f |= Rflags.AF;
        if (((a ^ r) & (b ^ r) & SignBit(size)) != 0)
            f |= Rflags.OF;
        Set(ref flags, Rflags.Status, f);
        return r;
    }

    private static ulong SubCore(ulong a, ulong b, ulong borrow, int size, ref ulong flags)
    {
        ulong m = Mask(size);
        ulong r = (a - b - borrow) & m;
        bool cf = a < b || (borrow != 0 && a == b);
        ulong f = ZfSfPf(r, size) | (cf ? Rflags.CF : 0);
        if (((a ^ b ^ r) & 0x10) != 0)
            f |= Rflags.AF;
        if (((a ^ b) & (a ^ r) & SignBit(size)) != 0)
            f |= Rflags.OF;
        Set(ref flags, Rflags.Status, f);
        return r;
    }

    // AND/OR/XOR/TEST: CF = OF = 0; AF is undefined (cleared, as Intel hardware does).
    private static ulong Logic(ulong r, int size, ref ulong flags)
    {
        Set(ref flags, Rflags.Status, ZfSfPf(r, size));
        return r;
    }

    /// <summary>INC: like ADD 1 but CF is preserved.</summary>
    public static ulong Inc(ulong a, int size, ref ulong flags)
    {
        ulong cf = flags & Rflags.CF;
        ulong r = AddCore(a & Mask(size), 1, 0, size, ref flags);
        flags = (flags & ~Rflags.CF) | cf;
        return r;
    }

    /// <summary>DEC: like SUB 1 but CF is preserved.</summary>
    public static ulong Dec(ulong a, int size, ref ulong flags)
    {
        ulong cf = flags & Rflags.CF;
        ulong r = SubCore(a & Mask(size), 1, 0, size, ref flags);
        flags = (flags & ~Rflags.CF) | cf;
        return r;
    }

    /// <summary>NEG: 0 - a; CF is set unless a is 0.</summary>
    public static ulong Neg(ulong a, int size, ref ulong flags) => SubCore(0, a & Mask(size), 0, size, ref flags);

    /// <summary>
    /// The flags a shift or rotate defines for a masked count: nothing for 0; for shifts CF, SF, ZF,
    /// PF and, for a count of 1, OF; for rotates CF and, for a count of 1, OF.
    /// (SHL/SHR leave CF undefined when the count reaches the operand width.)
    /// </summary>
    public static ulong DefinedFlags(Shift op, int maskedCount, int size)
    {
        if (maskedCount == 0)
            return 0;
        ulong of = maskedCount == 1 ? Rflags.OF : 0;
        return op switch
        {
            Shift.Rol or Shift.Ror or Shift.Rcl or Shift.Rcr => Rflags.CF | of,
            Shift.Sar => Rflags.CF | Rflags.SF | Rflags.ZF | Rflags.PF | of,
            _ => (maskedCount < 8 * size ? Rflags.CF : 0) | Rflags.SF | Rflags.ZF | Rflags.PF | of,
        };
    }

    /// <summary>Masks a shift count as the hardware does (5 bits, 6 for 64-bit operands).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MaskCount(ulong count, int size) => (int)(count & (size == 8 ? 63u : 31u));

    /// <summary>Executes a shift or rotate by <paramref name="count"/> (masked here).</summary>
    public static ulong ShiftRotate(Shift op, ulong a, ulong count, int size, ref ulong flags)
    {
        int bits = 8 * size;
        ulong m = Mask(size);
        ulong sign = SignBit(size);
        a &= m;
        int c = MaskCount(count, size);
        if (c == 0)
            return a;
        ulong r;
        ulong cf;
        switch (op)
        {
            case Shift.Shl:
            case Shift.Sal:
                r = c >= 64 ? 0 : (a << c) & m;
                cf = c <= bits ? (a >> (bits - c)) & 1 : 0;
                return ShiftFlags(r, cf, ((r & sign) != 0 ? 1UL : 0) ^ cf, size, ref flags);
            case Shift.Shr:
                r = c >= bits ? 0 : a >> c;
                cf = c <= bits ? (a >> (c - 1)) & 1 : 0;
                return ShiftFlags(r, cf, (a & sign) != 0 ? 1UL : 0, size, ref flags);
            case Shift.Sar:
                {
                    long sa = SignExtend(a, size);
                    r = (ulong)(sa >> (c >= bits ? bits - 1 : c)) & m;
                    cf = (ulong)(sa >> (c > bits ? bits - 1 : c - 1)) & 1;
                    return ShiftFlags(r, cf, 0, size, ref flags);
                }
            case Shift.Rol:
                {
                    int e = c % bits;
                    r = e == 0 ? a : ((a << e) | (a >> (bits - e))) & m;
                    cf = r & 1;
                    ulong of = ((r & sign) != 0 ? 1UL : 0) ^ cf;
                    Set(ref flags, Rflags.CF | Rflags.OF, (cf != 0 ? Rflags.CF : 0) | (of != 0 ? Rflags.OF : 0));
                    return r;
                }
            case Shift.Ror:
                {
                    int e = c % bits;
                    r = e == 0 ? a : ((a >> e) | (a << (bits - e))) & m;
                    cf = (r & sign) != 0 ? 1UL : 0;
                    ulong of = cf ^ ((r >> (bits - 2)) & 1);
                    Set(ref flags, Rflags.CF | Rflags.OF, (cf != 0 ? Rflags.CF : 0) | (of != 0 ? Rflags.OF : 0));
                    return r;
                }
            case Shift.Rcl:
                {
                    int e = size < 4 ? c % (bits + 1) : c;
                    ulong carry = flags & Rflags.CF;
                    r = a;
                    for (int k = 0; k < e; k++)
                    {
                        ulong outBit = (r & sign) != 0 ? 1UL : 0;
                        r = ((r << 1) | carry) & m;
                        carry = outBit;
                    }
                    ulong of = ((r & sign) != 0 ? 1UL : 0) ^ carry;
                    Set(ref flags, Rflags.CF | Rflags.OF, (carry != 0 ? Rflags.CF : 0) | (of != 0 ? Rflags.OF : 0));
                    return r;
                }
            default:
                {
                    int e = size < 4 ? c % (bits + 1) : c;
                    ulong carry = flags & Rflags.CF;
                    // OF for a count of 1 is the original sign XOR the carry in.
                    ulong of = ((a & sign) != 0 ? 1UL : 0) ^ carry;
                    r = a;
                    for (int k = 0; k < e; k++)
                    {
                        ulong outBit = r & 1;
                        r = (r >> 1) | (carry != 0 ? sign : 0);
                        carry = outBit;
                    }
                    Set(ref flags, Rflags.CF | Rflags.OF, (carry != 0 ? Rflags.CF : 0) | (of != 0 ? Rflags.OF : 0));
                    return r;
                }
        }
    }

    // Shifts: CF, OF as computed, SF/ZF/PF from the result, AF cleared (undefined; Intel clears it).
    private static ulong ShiftFlags(ulong r, ulong cf, ulong of, int size, ref ulong flags)
    {
        ulong f = ZfSfPf(r, size) | (cf != 0 ? Rflags.CF : 0) | (of != 0 ? Rflags.OF : 0);
        Set(ref flags, Rflags.Status, f);
        return r;
    }

    /// <summary>Bit-test operations (BT, BTS, BTR, BTC).</summary>
    public enum BitOp : byte
    {
        /// <summary>Test.</summary>
        Bt,
        /// <summary>Test and set.</summary>
        Bts,
        /// <summary>Test and reset.</summary>
        Btr,
        /// <summary>Test and complement.</summary>
        Btc,
    }

    /// <summary>
    /// MUL: unsigned <paramref name="a"/> × <paramref name="b"/>; returns the low half and gives the
    /// high half (AH for byte operands). CF = OF = (high half != 0); SF, ZF, AF, PF are undefined
    /// and left unchanged.
    /// </summary>
    public static ulong Mul(ulong a, ulong b, int size, out ulong high, ref ulong flags)
    {
        ulong m = Mask(size);
        ulong lo;
        if (size == 8)
        {
            high = Math.BigMul(a, b, out lo);
        }
        else
        {
            ulong p = (a & m) * (b & m);
            lo = p & m;
            high = (p >> (8 * size)) & m;
        }
        Set(ref flags, Rflags.CF | Rflags.OF, high != 0 ? Rflags.CF | Rflags.OF : 0);
        return lo;
    }

    /// <summary>
    /// IMUL (all forms): signed product; returns the low half and gives the high half.
    /// CF = OF = (the product does not fit the low half sign-extended); other flags unchanged.
    /// </summary>
    public static ulong Imul(ulong a, ulong b, int size, out ulong high, ref ulong flags)
    {
        ulong m = Mask(size);
        ulong lo;
        bool overflow;
        if (size == 8)
        {
            long h = Math.BigMul((long)a, (long)b, out long l);
            lo = (ulong)l;
            high = (ulong)h;
            overflow = h != (l >> 63);
        }
        else
        {
            long p = SignExtend(a, size) * SignExtend(b, size);
            lo = (ulong)p & m;
            high = (ulong)(p >> (8 * size)) & m;
            overflow = p != SignExtend(lo, size);
        }
        Set(ref flags, Rflags.CF | Rflags.OF, overflow ? Rflags.CF | Rflags.OF : 0);
        return lo;
    }

    /// <summary>
    /// DIV: the double-width dividend <paramref name="high"/>:<paramref name="low"/> by
    /// <paramref name="divisor"/>. Returns false for #DE (divisor 0 or a quotient that does not fit).
    /// Flags are undefined and left unchanged.
    /// </summary>
    public static bool Div(ulong high, ulong low, ulong divisor, int size, out ulong quotient, out ulong remainder)
    {
        ulong m = Mask(size);
        divisor &= m;
        high &= m;
        low &= m;
        quotient = remainder = 0;
        if (divisor == 0 || high >= divisor)
            return false; // a quotient of more than size bytes
        if (size == 8)
        {
            var dividend = ((UInt128)high << 64) | low;
            quotient = (ulong)(dividend / divisor);
            remainder = (ulong)(dividend % divisor);
        }
        else
        {
            ulong dividend = (high << (8 * size)) | low;
            quotient = dividend / divisor;
            remainder = dividend % divisor;
        }
        return true;
    }

    /// <summary>IDIV: signed division, truncating toward zero; false for #DE.</summary>
    public static bool Idiv(ulong high, ulong low, ulong divisor, int size, out ulong quotient, out ulong remainder)
    {
        ulong m = Mask(size);
        quotient = remainder = 0;
        long d = SignExtend(divisor, size);
        if (d == 0)
            return false;
        Int128 dividend = size == 8
            ? (Int128)(((UInt128)high << 64) | low)
            : SignExtend(((high & m) << (8 * size)) | (low & m), 2 * size);
        if (d == -1 && dividend == Int128.MinValue)
            return false; // the quotient 2^127 does not fit (and Int128 division would throw)
        Int128 q = dividend / d;
        Int128 r = dividend % d;
        long min = -(1L << (8 * size - 1));
        long max = size == 8 ? long.MaxValue : (1L << (8 * size - 1)) - 1;
        if (q < min || q > max)
            return false;
        quotient = (ulong)(long)q & m;
        remainder = (ulong)(long)r & m;
        return true;
    }

    /// <summary>
    /// BT/BTS/BTR/BTC on a value: CF = the selected bit (index taken modulo the width, as for a
    /// register operand); returns the value with the bit set, reset or complemented. OF, SF, AF
    /// and PF are undefined and left unchanged; ZF is unchanged.
    /// </summary>
    public static ulong BitTest(BitOp op, ulong a, ulong bit, int size, ref ulong flags)
    {
        int n = (int)(bit & (ulong)(8 * size - 1));
        ulong mask = 1UL << n;
        Set(ref flags, Rflags.CF, (a & mask) != 0 ? Rflags.CF : 0);
        return op switch
        {
            BitOp.Bts => a | mask,
            BitOp.Btr => a & ~mask,
            BitOp.Btc => a ^ mask,
            _ => a,
        } & Mask(size);
    }

    /// <summary>BSF: index of the lowest set bit; ZF = (source is 0), and the destination is unchanged then.</summary>
    public static ulong Bsf(ulong src, ulong dest, int size, ref ulong flags)
    {
        src &= Mask(size);
        Set(ref flags, Rflags.ZF, src == 0 ? Rflags.ZF : 0);
        return src == 0 ? dest : (ulong)BitOperations.TrailingZeroCount(src);
    }

    /// <summary>BSR: index of the highest set bit; ZF = (source is 0), and the destination is unchanged then.</summary>
    public static ulong Bsr(ulong src, ulong dest, int size, ref ulong flags)
    {
        src &= Mask(size);
        Set(ref flags, Rflags.ZF, src == 0 ? Rflags.ZF : 0);
        return src == 0 ? dest : (ulong)(63 - BitOperations.LeadingZeroCount(src));
    }

    /// <summary>TZCNT: trailing zeros (the width for 0); CF = (source is 0), ZF = (result is 0).</summary>
    public static ulong Tzcnt(ulong src, int size, ref ulong flags)
    {
        src &= Mask(size);
        ulong r = src == 0 ? (ulong)(8 * size) : (ulong)BitOperations.TrailingZeroCount(src);
        Set(ref flags, Rflags.CF | Rflags.ZF, (src == 0 ? Rflags.CF : 0) | (r == 0 ? Rflags.ZF : 0));
        return r;
    }

    /// <summary>LZCNT: leading zeros within the width; CF = (source is 0), ZF = (result is 0).</summary>
    public static ulong Lzcnt(ulong src, int size, ref ulong flags)
    {
        src &= Mask(size);
        ulong r = (ulong)(BitOperations.LeadingZeroCount(src) - (64 - 8 * size));
        Set(ref flags, Rflags.CF | Rflags.ZF, (src == 0 ? Rflags.CF : 0) | (r == 0 ? Rflags.ZF : 0));
        return r;
    }

    /// <summary>POPCNT: set bits; ZF = (source is 0); CF, OF, SF, AF, PF cleared.</summary>
    public static ulong Popcnt(ulong src, int size, ref ulong flags)
    {
        src &= Mask(size);
        Set(ref flags, Rflags.Status, src == 0 ? Rflags.ZF : 0);
        return (ulong)BitOperations.PopCount(src);
    }

    /// <summary>The flags SHLD/SHRD define for a masked count (none when the count is 0 or, for
    /// 16-bit operands, larger than 16, where the result itself is undefined).</summary>
    public static ulong DefinedDoubleShiftFlags(int maskedCount, int size) =>
        maskedCount == 0 || maskedCount > 8 * size ? 0
        : Rflags.CF | Rflags.SF | Rflags.ZF | Rflags.PF | (maskedCount == 1 ? Rflags.OF : 0);

    /// <summary>SHLD: shifts <paramref name="a"/> left, filling from the top of <paramref name="b"/>.</summary>
    public static ulong Shld(ulong a, ulong b, ulong count, int size, ref ulong flags) => DoubleShift(true, a, b, count, size, ref flags);

    /// <summary>SHRD: shifts <paramref name="a"/> right, filling from the bottom of <paramref name="b"/>.</summary>
    public static ulong Shrd(ulong a, ulong b, ulong count, int size, ref ulong flags) => DoubleShift(false, a, b, count, size, ref flags);

    private static ulong DoubleShift(bool left, ulong a, ulong b, ulong count, int size, ref ulong flags)
    {
        int bits = 8 * size;
        int c = MaskCount(count, size);
        a &= Mask(size);
        b &= Mask(size);
        if (c == 0 || c > bits)
            return a; // 16-bit counts above 16 leave result and flags undefined: no change
        ulong r;
        ulong cf;
        if (left)
        {
            r = c == bits ? b : ((a << c) | (b >> (bits - c))) & Mask(size);
            cf = (a >> (bits - c)) & 1;
        }
        else
        {
            r = c == bits ? b : ((a >> c) | (b << (bits - c))) & Mask(size);
            cf = (a >> (c - 1)) & 1;
        }
        ulong of = ((r ^ a) & SignBit(size)) != 0 ? 1UL : 0;
        return ShiftFlags(r, cf, of, size, ref flags);
    }
}
