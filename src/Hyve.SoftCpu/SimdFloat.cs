// SSE floating point lane by lane, as MXCSR directs it: the rounding mode, denormals-are-zero on
// the inputs, flush-to-zero on the outputs, and the six exception flags each lane raises. Values
// are computed exactly (ExtendedReal) and rounded once to single or double precision. NaNs follow
// the SSE rules, not the x87 ones: the first source's NaN wins, MIN and MAX return the second
// source for any NaN, and the default NaN is the negative quiet one.
using System;
using System.Numerics;

namespace Hyve.SoftCpu;

/// <summary>The SSE arithmetic operations.</summary>
internal enum FloatOp : byte
{
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Sqrt,
}

/// <summary>MXCSR's controls for one instruction, and the flags its lanes raise.</summary>
internal struct SimdControl(uint mxcsr)
{
    public readonly int Rounding = (int)(mxcsr >> 13) & 3;
    public readonly bool DenormalsAreZero = (mxcsr & (1 << 6)) != 0;
    public readonly bool FlushToZero = (mxcsr & (1 << 15)) != 0 && (mxcsr & (1 << 11)) != 0; // FZ with underflow masked
    public readonly bool UnderflowUnmasked = (mxcsr & (1 << 11)) == 0;
    public int Flags;
}

/// <summary>Single- and double-precision lanes on raw bits.</summary>
internal static class SimdFloat
{
    private static ulong SignBit(bool dbl) => dbl ? 1UL << 63 : 1UL << 31;

    private static ulong QuietBit(bool dbl) => dbl ? 1UL << 51 : 1UL << 22;

    private static ulong ExponentMask(bool dbl) => dbl ? 0x7FF0_0000_0000_0000UL : 0x7F80_0000UL;

    private static ulong FractionMask(bool dbl) => dbl ? 0x000F_FFFF_FFFF_FFFFUL : 0x007F_FFFFUL;

    public static bool IsNaN(ulong x, bool dbl) => (x & ExponentMask(dbl)) == ExponentMask(dbl) && (x & FractionMask(dbl)) != 0;

    private static bool IsSignaling(ulong x, bool dbl) => IsNaN(x, dbl) && (x & QuietBit(dbl)) == 0;

    private static bool IsDenormal(ulong x, bool dbl) => (x & ExponentMask(dbl)) == 0 && (x & FractionMask(dbl)) != 0;

    private static RealFormat Format(bool dbl) => dbl ? RealFormat.Double : RealFormat.Single;

    // An input: DAZ turns a denormal into a zero of its sign; otherwise a denormal reports DE.
    private static ExtendedReal Load(ulong x, bool dbl, ref SimdControl c)
    {
        if (IsDenormal(x, dbl))
        {
            if (c.DenormalsAreZero)
                x &= SignBit(dbl);
            else
                c.Flags |= X87Flags.DE;
        }
        int ignored = 0;
        return ExtendedReal.FromBinary(x, dbl, false, ref ignored);
    }

    // A result already rounded to the format (its flags in f): flushed to zero when tiny under FTZ.
    private static ulong Store(ExtendedReal r, bool dbl, int f, ref SimdControl c)
    {
        if (c.FlushToZero && (f & X87Flags.Tiny) != 0 && r.Class is RealClass.Normal or RealClass.Denormal)
        {
            c.Flags |= (f & ~X87Flags.Tiny) | X87Flags.UE | X87Flags.PE;
            return r.Negative ? SignBit(dbl) : 0;
        }
        if ((f & X87Flags.Tiny) != 0 && c.UnderflowUnmasked)
            f |= X87Flags.UE; // unmasked, underflow is tininess alone, exact or not
        c.Flags |= f & 0x3F;
        int ignored = 0;
        return ExtendedReal.ToBinary(r, dbl, 0, ref ignored);
    }

    /// <summary>One lane of an arithmetic operation (SQRT takes only y).</summary>
    public static ulong Arithmetic(FloatOp op, bool dbl, ulong x, ulong y, ref SimdControl c)
    {
        if (op is FloatOp.Min or FloatOp.Max)
        {
            if (c.DenormalsAreZero)
            {
                // The source returned is the zero DAZ made of it.
                x = IsDenormal(x, dbl) ? x & SignBit(dbl) : x;
                y = IsDenormal(y, dbl) ? y & SignBit(dbl) : y;
            }
            if (IsNaN(x, dbl) || IsNaN(y, dbl))
            {
                c.Flags |= X87Flags.IE;
                return y;
            }
            ExtendedReal p = Load(x, dbl, ref c), q = Load(y, dbl, ref c);
            int ignored = 0;
            int order = ExtendedReal.Compare(p, q, false, ref ignored);
            // Equal values (zeros of either sign included) give the second source.
            bool first = op == FloatOp.Min ? order < 0 : order > 0;
            return first ? x : y;
        }
        if (op == FloatOp.Sqrt)
        {
            if (IsNaN(y, dbl))
            {
                if (IsSignaling(y, dbl))
                    c.Flags |= X87Flags.IE;
                return y | QuietBit(dbl);
            }
        }
        else if (IsNaN(x, dbl) || IsNaN(y, dbl))
        {
            if (IsSignaling(x, dbl) || IsSignaling(y, dbl))
                c.Flags |= X87Flags.IE;
            return (IsNaN(x, dbl) ? x : y) | QuietBit(dbl);
        }
        RealFormat format = Format(dbl);
        int f = 0;
        int outer = c.Flags;
        c.Flags = 0;
        ExtendedReal b = Load(y, dbl, ref c);
        ExtendedReal r;
        if (op == FloatOp.Sqrt)
            r = ExtendedReal.SquareRoot(b, format, c.Rounding, ref f);
        else
        {
            ExtendedReal a = Load(x, dbl, ref c);
            r = op switch
            {
                FloatOp.Add => ExtendedReal.Add(a, b, false, format, c.Rounding, ref f),
                FloatOp.Sub => ExtendedReal.Add(a, b, true, format, c.Rounding, ref f),
                FloatOp.Mul => ExtendedReal.Multiply(a, b, format, c.Rounding, ref f),
                _ => ExtendedReal.Divide(a, b, format, c.Rounding, ref f),
            };
        }
        // An invalid operation (a negative denormal's root) or a division by zero is all that is
        // reported: not the denormal operand.
        c.Flags = (f & (X87Flags.IE | X87Flags.ZE)) != 0 ? outer : outer | c.Flags;
        return Store(r, dbl, f, ref c);
    }

    /// <summary>One lane of FMA: ±(m1 × m2) ± add, rounded once. A NaN operand gives the first
    /// NaN of m1, m2, add (the operation's order, whichever instruction operands they are),
    /// quieted; inf × 0 and an infinite product added to the opposite infinity are invalid.</summary>
    public static ulong FusedMultiplyAdd(bool dbl, ulong m1, ulong m2, ulong add, bool negateProduct, bool negateAddend, ref SimdControl c)
    {
        if (IsNaN(m1, dbl) || IsNaN(m2, dbl) || IsNaN(add, dbl))
        {
            // Only a signaling NaN raises IE: inf × 0 with a quiet NaN addend does not (as the host
            // processors answer; the SDM leaves it to the implementation).
            if (IsSignaling(m1, dbl) || IsSignaling(m2, dbl) || IsSignaling(add, dbl))
                c.Flags |= X87Flags.IE;
            return (IsNaN(m1, dbl) ? m1 : IsNaN(m2, dbl) ? m2 : add) | QuietBit(dbl);
        }
        int outer = c.Flags;
        c.Flags = 0;
        ExtendedReal a = Load(m1, dbl, ref c), b = Load(m2, dbl, ref c), z = Load(add, dbl, ref c);
        if (negateAddend)
            z = z.Negate();
        int f = 0;
        ExtendedReal r = ExtendedReal.FusedMultiplyAdd(a, b, z, negateProduct, Format(dbl), c.Rounding, ref f);
        c.Flags = (f & X87Flags.IE) != 0 ? outer : outer | c.Flags;
        if (r.IsNaN)
        {
            c.Flags |= X87Flags.IE;
            return dbl ? 0xFFF8_0000_0000_0000UL : 0xFFC0_0000UL; // the default NaN
        }
        return Store(r, dbl, f, ref c);
    }

    /// <summary>VCVTPH2PS's lane: a half-precision value as a single (always exact); a signaling NaN
    /// raises IE and is quieted; a denormal half is converted exactly, with no DE and no DAZ.</summary>
    public static uint HalfToSingle(ushort h, ref SimdControl c)
    {
        uint sign = (uint)(h >> 15) << 31;
        int exponent = (h >> 10) & 31;
        uint fraction = (uint)h & 0x3FF;
        if (exponent == 31)
        {
            if (fraction == 0)
                return sign | 0x7F80_0000;
            if ((fraction & 0x200) == 0)
                c.Flags |= X87Flags.IE;
            return sign | 0x7FC0_0000 | (fraction << 13);
        }
        if (exponent == 0)
        {
            if (fraction == 0)
                return sign;
            int shift = BitOperations.LeadingZeroCount(fraction) - 21; // to bit 10
            return sign | ((uint)(127 - 14 - shift) << 23) | (((fraction << shift) & 0x3FF) << 13);
        }
        return sign | ((uint)(exponent - 15 + 127) << 23) | (fraction << 13);
    }

    /// <summary>VCVTPS2PH's lane: a single rounded to half precision in mode <paramref name="rc"/>,
    /// with MXCSR's DAZ on the input and the overflow, underflow and precision flags (FTZ does not
    /// apply: tiny results are half denormals).</summary>
    public static ushort SingleToHalf(uint x, int rc, ref SimdControl c)
    {
        ushort sign = (ushort)((x >> 16) & 0x8000);
        if (IsNaN(x, false))
        {
            if (IsSignaling(x, false))
                c.Flags |= X87Flags.IE;
            return (ushort)(sign | 0x7E00u | ((x >> 13) & 0x3FFu));
        }
        if ((x & 0x7FFF_FFFF) == 0x7F80_0000)
            return (ushort)(sign | 0x7C00);
        ExtendedReal a = Load(x, false, ref c);
        if (a.Class == RealClass.Zero)
            return sign;
        int f = 0;
        ExtendedReal r = ExtendedReal.Rounded(a, RealFormat.Half, rc, ref f);
        if ((f & X87Flags.Tiny) != 0 && c.UnderflowUnmasked)
            f |= X87Flags.UE;
        c.Flags |= f & 0x3F;
        if (r.Class == RealClass.Infinity)
            return (ushort)(sign | 0x7C00);
        if (r.Class == RealClass.Zero)
            return sign;
        int e = r.BiasedExponent - 16383;
        if (e >= -14)
            return (ushort)(sign | ((e + 15) << 10) | (int)((r.Significand >> 53) & 0x3FF));
        return (ushort)(sign | (int)(r.Significand >> (53 + (-14 - e)))); // a half denormal
    }

    /// <summary>CMPcc's predicates 0-7: EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD. LT, LE, NLT and NLE
    /// signal invalid on a quiet NaN too.</summary>
    public static bool Compare(bool dbl, ulong x, ulong y, int predicate, ref SimdControl c)
    {
        // SSE's eight predicates are AVX's 0-7; AVX adds 8-15, and 16-31 repeat 0-15 with the
        // opposite choice of signaling on a quiet NaN.
        int p = predicate & 15;
        bool signaling = p is 1 or 2 or 5 or 6 or 9 or 10 or 13 or 14;
        int order = Order(dbl, x, y, signaling ^ (predicate >= 16), ref c);
        return p switch
        {
            0 => order == 0,
            1 => order == -1,
            2 => order is -1 or 0,
            3 => order == 2,
            4 => order != 0,
            5 => order is not -1,
            6 => order is 1 or 2,
            7 => order != 2,
            8 => order is 0 or 2,
            9 => order is -1 or 2,
            10 => order != 1,
            11 => false,
            12 => order is -1 or 1,
            13 => order is 0 or 1,
            14 => order == 1,
            _ => true,
        };
    }

    /// <summary>-1, 0, 1, or 2 when unordered (COMIS signals on any NaN, UCOMIS on a signaling one).</summary>
    public static int Order(bool dbl, ulong x, ulong y, bool signaling, ref SimdControl c)
    {
        if (IsNaN(x, dbl) || IsNaN(y, dbl))
        {
            if (signaling || IsSignaling(x, dbl) || IsSignaling(y, dbl))
                c.Flags |= X87Flags.IE;
            return 2;
        }
        ExtendedReal p = Load(x, dbl, ref c), q = Load(y, dbl, ref c);
        int ignored = 0;
        return ExtendedReal.Compare(p, q, false, ref ignored);
    }

    /// <summary>To a size-byte integer, rounded by MXCSR or truncated; the integer indefinite and IE
    /// for a NaN or a value out of range.</summary>
    public static ulong ToInteger(bool dbl, ulong x, int size, bool truncate, ref SimdControl c)
    {
        if (c.DenormalsAreZero && IsDenormal(x, dbl))
            x &= SignBit(dbl);
        int ignored = 0, f = 0;
        ExtendedReal a = ExtendedReal.FromBinary(x, dbl, false, ref ignored);
        ulong v = ExtendedReal.ToInteger(a, size, c.Rounding, truncate, ref f);
        c.Flags |= f & (X87Flags.IE | X87Flags.PE);
        return v;
    }

    /// <summary>A signed integer, rounded to single or double precision.</summary>
    public static ulong FromInteger(long v, bool dbl, ref SimdControl c)
    {
        int f = 0;
        ExtendedReal r = ExtendedReal.Rounded(ExtendedReal.FromInteger(v), Format(dbl), c.Rounding, ref f);
        return Store(r, dbl, f, ref c);
    }

    /// <summary>Single to double (exact) or double to single (rounded).</summary>
    public static ulong Convert(ulong x, bool fromDouble, ref SimdControl c)
    {
        bool toDouble = !fromDouble;
        if (IsNaN(x, fromDouble))
        {
            if (IsSignaling(x, fromDouble))
                c.Flags |= X87Flags.IE;
            int ignored = 0;
            ExtendedReal nan = ExtendedReal.FromBinary(x | QuietBit(fromDouble), fromDouble, false, ref ignored);
            return ExtendedReal.ToBinary(nan, toDouble, 0, ref ignored);
        }
        ExtendedReal a = Load(x, fromDouble, ref c);
        int f = 0;
        ExtendedReal r = ExtendedReal.Rounded(a, Format(toDouble), c.Rounding, ref f);
        return Store(r, toDouble, f, ref c);
    }

    /// <summary>ROUNDSS/SD/PS/PD's lane: the integral value in rounding mode <paramref name="rc"/>.
    /// A signaling NaN raises IE and is quieted; an inexact result raises PE unless suppressed; a
    /// denormal input is not reported (DAZ still makes it a zero).</summary>
    public static ulong Round(bool dbl, ulong x, int rc, bool suppressInexact, ref SimdControl c)
    {
        if (IsNaN(x, dbl))
        {
            if (IsSignaling(x, dbl))
                c.Flags |= X87Flags.IE;
            return x | QuietBit(dbl);
        }
        if (c.DenormalsAreZero && IsDenormal(x, dbl))
            x &= SignBit(dbl);
        int f = 0, ignored = 0;
        ExtendedReal r = ExtendedReal.RoundToInteger(ExtendedReal.FromBinary(x, dbl, false, ref ignored), rc, ref f);
        if (!suppressInexact)
            c.Flags |= f & X87Flags.PE;
        return ExtendedReal.ToBinary(r, dbl, 0, ref ignored);
    }

    /// <summary>RCPPS/RCPSS (1/x) and RSQRTPS/RSQRTSS (1/√x) on one single: the correctly rounded
    /// value, which is within the SDM's bound of 1.5 × 2^-12 relative error (processors differ in
    /// the exact approximation). A denormal input counts as zero, a result below the normal range
    /// is a zero, a negative square root is the default NaN; nothing is signalled.</summary>
    public static uint Reciprocal(uint x, bool squareRoot)
    {
        const uint Sign = 0x8000_0000;
        if (IsNaN(x, false))
            return x | (uint)QuietBit(false);
        bool negative = (x & Sign) != 0;
        if ((x & 0x7F80_0000) == 0)
            return (x & Sign) | 0x7F80_0000; // zero or denormal: infinity of its sign
        if (squareRoot && negative)
            return 0xFFC0_0000;
        if ((x & 0x7FFF_FFFF) == 0x7F80_0000)
            return x & Sign; // infinity: zero of its sign
        double v = BitConverter.Int32BitsToSingle((int)x);
        double r = squareRoot ? 1 / Math.Sqrt(v) : 1 / v;
        if (Math.Abs(r) < 1.1754943508222875E-38)
            return x & Sign;
        return (uint)BitConverter.SingleToInt32Bits((float)r);
    }
}
