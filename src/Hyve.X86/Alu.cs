// Integer arithmetic with the x86 status flags, shared by the MMIO emulator and the software CPU.
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
}
