// The x87 unit's 80-bit extended-precision numbers and their arithmetic, computed exactly in
// integers and rounded once: the four operations and square root with the control word's
// rounding mode and precision, conversions to and from single, double and integer formats,
// comparison, partial remainder and round-to-integer. Flags follow the status word: the six
// exception bits plus C1 for a result rounded up in magnitude. NaN propagation, the indefinite
// value and the unsupported encodings (unnormals, pseudo-infinities and pseudo-NaNs) are the
// SDM's. Results are the masked responses; the caller decides what an unmasked flag withholds.
using System;
using System.Numerics;

namespace Hyve.SoftCpu;

/// <summary>Status-word bits that operations report.</summary>
internal static class X87Flags
{
    public const int IE = 1, DE = 2, ZE = 4, OE = 8, UE = 0x10, PE = 0x20, SF = 0x40, C1 = 0x200;

    /// <summary>Not a status bit: the result is tiny (below the format's normal range after
    /// rounding with an unbounded exponent), which flush-to-zero and an unmasked underflow act on.</summary>
    public const int Tiny = 0x1000;
}

/// <summary>What an 80-bit encoding holds.</summary>
internal enum RealClass : byte
{
    Zero,
    Denormal,
    Normal,
    Infinity,
    QuietNaN,
    SignalingNaN,
    Unsupported,
}

/// <summary>A number format the x87 unit rounds to: significand bits and normal exponent range
/// (value = significand / 2^63 * 2^exponent, the integer bit at bit 63).</summary>
internal readonly record struct RealFormat(int Precision, int MinExponent, int MaxExponent)
{
    /// <summary>x87 with overflow unmasked: a result above the range is delivered with its
    /// exponent reduced by 24,576 (and OE), not as an infinity.</summary>
    public bool WrapOverflow { get; init; }

    /// <summary>x87 with underflow unmasked: a tiny result is delivered with its exponent raised by
    /// 24,576 (and UE), not denormalized.</summary>
    public bool WrapUnderflow { get; init; }

    public static readonly RealFormat Half = new(11, -14, 15);
    public static readonly RealFormat Single = new(24, -126, 127);
    public static readonly RealFormat Double = new(53, -1022, 1023);
    public static readonly RealFormat Extended = new(64, -16382, 16383);

    /// <summary>The extended exponent range with the control word's precision (24, 53 or 64).</summary>
    public static RealFormat ExtendedWith(int precision) => new(precision, -16382, 16383);
}

/// <summary>An 80-bit extended-precision value: sign and 15-bit exponent, and a 64-bit significand
/// with an explicit integer bit.</summary>
internal readonly record struct ExtendedReal(ushort SignExponent, ulong Significand)
{
    private const ulong IntegerBit = 1UL << 63, QuietBit = 1UL << 62;

    /// <summary>The default NaN the unit returns for an invalid operation.</summary>
    public static readonly ExtendedReal Indefinite = new(0xFFFF, 0xC000_0000_0000_0000);

    public static readonly ExtendedReal One = new(0x3FFF, IntegerBit);

    public bool Negative => (SignExponent & 0x8000) != 0;

    public int BiasedExponent => SignExponent & 0x7FFF;

    public RealClass Class
    {
        get
        {
            int e = BiasedExponent;
            bool j = (Significand & IntegerBit) != 0;
            if (e == 0)
                return Significand == 0 ? RealClass.Zero : RealClass.Denormal; // pseudo-denormals too
            if (!j)
                return RealClass.Unsupported; // unnormal, pseudo-infinity, pseudo-NaN
            if (e == 0x7FFF)
                return (Significand << 1) == 0 ? RealClass.Infinity : (Significand & QuietBit) != 0 ? RealClass.QuietNaN : RealClass.SignalingNaN;
            return RealClass.Normal;
        }
    }

    public bool IsNaN => Class is RealClass.QuietNaN or RealClass.SignalingNaN;

    public ExtendedReal Negate() => new((ushort)(SignExponent ^ 0x8000), Significand);

    public ExtendedReal Abs() => new((ushort)(SignExponent & 0x7FFF), Significand);

    public static ExtendedReal Zero(bool negative) => new(negative ? (ushort)0x8000 : (ushort)0, 0);

    public static ExtendedReal Infinity(bool negative) => new((ushort)(negative ? 0xFFFF : 0x7FFF), IntegerBit);

    private ExtendedReal Quiet() => new(SignExponent, Significand | QuietBit);

    // A finite nonzero value as sign, exponent and normalized significand (bit 63 set).
    private void Unpack(out bool negative, out int exponent, out ulong significand)
    {
        negative = Negative;
        int e = BiasedExponent;
        exponent = (e == 0 ? 1 : e) - 16383;
        significand = Significand;
        int lz = BitOperations.LeadingZeroCount(significand);
        significand <<= lz;
        exponent -= lz;
    }

    // --- Rounding ---------------------------------------------------------------------------

    /// <summary>Rounds sig / 2^127 * 2^exponent (sig normalized, nonzero; sticky: nonzero bits
    /// below it) to <paramref name="format"/> with rounding mode rc (0 nearest, 1 down, 2 up,
    /// 3 toward zero). Returns the significand (integer bit clear for a denormal) and exponent;
    /// infinity when it overflows to infinity.</summary>
    internal static (ulong Significand, int Exponent, bool Infinite) Round(bool negative, int exponent, UInt128 sig, bool sticky,
        RealFormat format, int rc, ref int flags)
    {
        int shift = 128 - format.Precision;
        UInt128 lowMask = (UInt128.One << shift) - 1, half = UInt128.One << (shift - 1);
        // Tininess is decided after rounding, as the host processors do: a result just below the
        // normal range that rounds (with an unbounded exponent) up to the smallest normal is not tiny.
        bool tiny = exponent < format.MinExponent
            && !(exponent == format.MinExponent - 1 && (sig | lowMask) == UInt128.MaxValue && RoundsUp(sig & lowMask, half, sticky, true, negative, rc));
        if (tiny && format.WrapUnderflow)
        {
            exponent += 24576;
            flags |= X87Flags.UE;
            tiny = false;
        }
        else if (exponent < format.MinExponent)
        {
            sig = ShiftRightJam(sig, format.MinExponent - exponent, ref sticky);
            exponent = format.MinExponent;
        }
        UInt128 low = sig & lowMask;
        bool inexact = low != 0 || sticky;
        sig &= ~lowMask;
        bool odd = ((sig >> shift) & 1) != 0;
        bool up = RoundsUp(low, half, sticky, odd, negative, rc);
        if (up)
        {
            sig += UInt128.One << shift;
            if (sig == 0) // carried out of the top: 2^128
            {
                sig = UInt128.One << 127;
                exponent++;
            }
        }
        if (exponent > format.MaxExponent && format.WrapOverflow)
        {
            exponent -= 24576;
            flags |= X87Flags.OE;
        }
        if (exponent > format.MaxExponent)
        {
            flags |= X87Flags.OE | X87Flags.PE;
            bool toInfinity = rc == 0 || (rc == 1 && negative) || (rc == 2 && !negative);
            if (toInfinity)
            {
                flags |= X87Flags.C1;
                return (IntegerBit, 0, true);
            }
            return (ulong.MaxValue << (64 - format.Precision), format.MaxExponent, false);
        }
        if (tiny)
            flags |= X87Flags.Tiny;
        if (inexact)
        {
            flags |= X87Flags.PE;
            if (tiny)
                flags |= X87Flags.UE;
        }
        if (up)
            flags |= X87Flags.C1;
        return ((ulong)(sig >> 64), exponent, false);
    }

    // Whether the bits below the rounding point (low, half being its midpoint, sticky below them)
    // round the kept part up in mode rc.
    private static bool RoundsUp(UInt128 low, UInt128 half, bool sticky, bool odd, bool negative, int rc)
    {
        bool inexact = low != 0 || sticky;
        return rc switch
        {
            0 => low > half || (low == half && (sticky || odd)),
            1 => inexact && negative,
            2 => inexact && !negative,
            _ => false,
        };
    }

    private static UInt128 ShiftRightJam(UInt128 v, int n, ref bool sticky)
    {
        if (n >= 128)
        {
            sticky |= v != 0;
            return 0;
        }
        if (n > 0)
        {
            sticky |= (v & ((UInt128.One << n) - 1)) != 0;
            v >>= n;
        }
        return v;
    }

    // Rounds and packs an extended result (exact zero when sig is zero and not sticky).
    private static ExtendedReal Make(bool negative, int exponent, UInt128 sig, bool sticky, RealFormat format, int rc, ref int flags)
    {
        if (sig == 0 && !sticky)
            return Zero(negative);
        int lz = (int)UInt128.LeadingZeroCount(sig);
        sig <<= lz;
        exponent -= lz;
        var (s, e, inf) = Round(negative, exponent, sig, sticky, format, rc, ref flags);
        if (inf)
            return Infinity(negative);
        ushort sign = negative ? (ushort)0x8000 : (ushort)0;
        if ((s & IntegerBit) == 0)
        {
            if (format.MinExponent == RealFormat.Extended.MinExponent || s == 0)
                return new(sign, s); // an extended denormal, or zero
            // A single or double denormal is a normal extended number.
            int shift = BitOperations.LeadingZeroCount(s);
            s <<= shift;
            e -= shift;
        }
        return new((ushort)(sign | (e + 16383)), s);
    }

    // --- NaNs and operand checks ----------------------------------------------------------------

    /// <summary>Both operands' NaN and unsupported cases: true with the result when one applies;
    /// otherwise false, with DE when an operand is denormal.</summary>
    internal static bool Special(ExtendedReal a, ExtendedReal b, out ExtendedReal result, ref int flags)
    {
        RealClass ca = a.Class, cb = b.Class;
        if (ca == RealClass.Unsupported || cb == RealClass.Unsupported)
        {
            flags |= X87Flags.IE;
            result = Indefinite;
            return true;
        }
        bool na = ca is RealClass.QuietNaN or RealClass.SignalingNaN, nb = cb is RealClass.QuietNaN or RealClass.SignalingNaN;
        if (!na && !nb)
        {
            if (ca == RealClass.Denormal || cb == RealClass.Denormal)
                flags |= X87Flags.DE;
            result = default;
            return false;
        }
        result = PropagateNaN(a, b, ref flags);
        return true;
    }

    private static ExtendedReal PropagateNaN(ExtendedReal a, ExtendedReal b, ref int flags)
    {
        bool sa = a.Class == RealClass.SignalingNaN, sb = b.Class == RealClass.SignalingNaN;
        if (sa || sb)
            flags |= X87Flags.IE;
        if (!a.IsNaN)
            return b.Quiet();
        if (!b.IsNaN)
            return a.Quiet();
        // A signaling and a quiet NaN: the quiet one. Two of a kind: the larger significand, and on
        // a tie the positive one.
        if (sa != sb)
            return sa ? b : a;
        ulong ma = a.Significand | QuietBit, mb = b.Significand | QuietBit;
        if (ma != mb)
            return mb > ma ? b.Quiet() : a.Quiet();
        return b.SignExponent < a.SignExponent ? b.Quiet() : a.Quiet();
    }

    // A one-operand check: the result for a NaN or unsupported operand.
    private static bool Special(ExtendedReal a, out ExtendedReal result, ref int flags)
    {
        switch (a.Class)
        {
            case RealClass.Unsupported:
                flags |= X87Flags.IE;
                result = Indefinite;
                return true;
            case RealClass.SignalingNaN:
                flags |= X87Flags.IE;
                result = a.Quiet();
                return true;
            case RealClass.QuietNaN:
                result = a;
                return true;
            case RealClass.Denormal:
                flags |= X87Flags.DE;
                break;
        }
        result = default;
        return false;
    }

    // --- Arithmetic -------------------------------------------------------------------------

    /// <summary>a + b (or a - b when <paramref name="subtract"/>).</summary>
    public static ExtendedReal Add(ExtendedReal a, ExtendedReal b, bool subtract, RealFormat format, int rc, ref int flags)
    {
        if (Special(a, b, out ExtendedReal r, ref flags))
            return r;
        if (subtract)
            b = b.Negate();
        RealClass ca = a.Class, cb = b.Class;
        if (ca == RealClass.Infinity || cb == RealClass.Infinity)
        {
            if (ca == RealClass.Infinity && cb == RealClass.Infinity && a.Negative != b.Negative)
            {
                flags |= X87Flags.IE;
                return Indefinite;
            }
            return ca == RealClass.Infinity ? a : b;
        }
        if (ca == RealClass.Zero && cb == RealClass.Zero)
            return Zero(a.Negative == b.Negative ? a.Negative : rc == 1);
        if (cb == RealClass.Zero)
            return Rounded(a, format, rc, ref flags);
        if (ca == RealClass.Zero)
            return Rounded(b, format, rc, ref flags);
        a.Unpack(out bool na, out int ea, out ulong sa);
        b.Unpack(out bool nb, out int eb, out ulong sb);
        if (eb > ea || (eb == ea && sb > sa))
        {
            (na, nb) = (nb, na);
            (ea, eb) = (eb, ea);
            (sa, sb) = (sb, sa);
        }
        // Significands at bits 126..63, one bit of headroom for the carry.
        UInt128 x = (UInt128)sa << 63, y = (UInt128)sb << 63;
        bool sticky = false;
        y = ShiftRightJam(y, Math.Min(ea - eb, 200), ref sticky);
        if (sticky)
            y |= 1; // jam: 63 guard bits keep the rounding exact
        int exponent = ea + 1; // value = x / 2^127 * 2^(ea + 1)
        if (na == nb)
            return Make(na, exponent, x + y, false, format, rc, ref flags);
        UInt128 d = x - y;
        if (d == 0)
            return Zero(rc == 1);
        return Make(na, exponent, d, false, format, rc, ref flags);
    }

    /// <summary>±(a × b) + c with one rounding (the product kept exact): FMA's arithmetic for
    /// operands of single or double precision (significands of at most 53 bits, so the exact
    /// product fits in 106 bits). NaN operands are the caller's.</summary>
    public static ExtendedReal FusedMultiplyAdd(ExtendedReal a, ExtendedReal b, ExtendedReal c, bool negateProduct, RealFormat format,
        int rc, ref int flags)
    {
        RealClass ca = a.Class, cb = b.Class, cc = c.Class;
        bool pn = a.Negative ^ b.Negative ^ negateProduct;
        if (ca == RealClass.Infinity || cb == RealClass.Infinity)
        {
            if (ca == RealClass.Zero || cb == RealClass.Zero || (cc == RealClass.Infinity && c.Negative != pn))
            {
                flags |= X87Flags.IE;
                return Indefinite;
            }
            return Infinity(pn);
        }
        if (cc == RealClass.Infinity)
            return c;
        if (ca == RealClass.Zero || cb == RealClass.Zero)
        {
            if (cc == RealClass.Zero)
                return Zero(pn == c.Negative ? pn : rc == 1);
            return Rounded(c, format, rc, ref flags);
        }
        a.Unpack(out _, out int ea, out ulong sa);
        b.Unpack(out _, out int eb, out ulong sb);
        UInt128 p = (UInt128)sa * sb;  // p / 2^127 * 2^(ea + eb + 1)
        int ep = ea + eb + 1;
        if (cc == RealClass.Zero)
            return Make(pn, ep, p, false, format, rc, ref flags);
        int lz = (int)UInt128.LeadingZeroCount(p);
        p <<= lz;
        ep -= lz;
        c.Unpack(out bool cn, out int ec, out ulong sc);
        // Both at bits 126 and below (one bit of headroom for a carry), value x / 2^127 * 2^(e + 1).
        bool sticky = false;
        UInt128 x = ShiftRightJam(p, 1, ref sticky), y = (UInt128)sc << 63;
        bool xn = pn, yn = cn;
        int ex = ep, ey = ec;
        if (ey > ex || (ey == ex && y > x))
        {
            (x, y) = (y, x);
            (xn, yn) = (yn, xn);
            (ex, ey) = (ey, ex);
        }
        y = ShiftRightJam(y, Math.Min(ex - ey, 250), ref sticky);
        if (sticky)
            y |= 1; // jam: the bits shifted out sit far below any rounding point
        if (xn == yn)
            return Make(xn, ex + 1, x + y, false, format, rc, ref flags);
        UInt128 d = x - y;
        if (d == 0)
            return Zero(rc == 1);
        return Make(xn, ex + 1, d, false, format, rc, ref flags);
    }

    /// <summary>A value rounded to the format's precision (adding zero, for instance).</summary>
    internal static ExtendedReal Rounded(ExtendedReal a, RealFormat format, int rc, ref int flags)
    {
        if (a.Class != RealClass.Normal && a.Class != RealClass.Denormal)
            return a;
        a.Unpack(out bool n, out int e, out ulong s);
        return Make(n, e, (UInt128)s << 64, false, format, rc, ref flags);
    }

    /// <summary>a × b.</summary>
    public static ExtendedReal Multiply(ExtendedReal a, ExtendedReal b, RealFormat format, int rc, ref int flags)
    {
        if (Special(a, b, out ExtendedReal r, ref flags))
            return r;
        RealClass ca = a.Class, cb = b.Class;
        bool negative = a.Negative != b.Negative;
        if (ca == RealClass.Infinity || cb == RealClass.Infinity)
        {
            if (ca == RealClass.Zero || cb == RealClass.Zero)
            {
                flags |= X87Flags.IE;
                return Indefinite;
            }
            return Infinity(negative);
        }
        if (ca == RealClass.Zero || cb == RealClass.Zero)
            return Zero(negative);
        a.Unpack(out _, out int ea, out ulong sa);
        b.Unpack(out _, out int eb, out ulong sb);
        return Make(negative, ea + eb + 1, (UInt128)sa * sb, false, format, rc, ref flags);
    }

    /// <summary>a ÷ b.</summary>
    public static ExtendedReal Divide(ExtendedReal a, ExtendedReal b, RealFormat format, int rc, ref int flags)
    {
        if (Special(a, b, out ExtendedReal r, ref flags))
            return r;
        RealClass ca = a.Class, cb = b.Class;
        bool negative = a.Negative != b.Negative;
        if (ca == RealClass.Infinity)
        {
            if (cb == RealClass.Infinity)
            {
                flags |= X87Flags.IE;
                return Indefinite;
            }
            return Infinity(negative);
        }
        if (cb == RealClass.Infinity)
            return Zero(negative);
        if (cb == RealClass.Zero)
        {
            if (ca == RealClass.Zero)
            {
                flags |= X87Flags.IE;
                return Indefinite;
            }
            flags = (flags & ~X87Flags.DE) | X87Flags.ZE; // a denormal dividend is not reported
            return Infinity(negative);
        }
        if (ca == RealClass.Zero)
            return Zero(negative);
        a.Unpack(out _, out int ea, out ulong sa);
        b.Unpack(out _, out int eb, out ulong sb);
        // Two 64-bit quotient words by long division; the first is in [2^63, 2^64).
        int exponent = ea - eb;
        UInt128 dividend = sa >= sb ? (UInt128)sa << 63 : (UInt128)sa << 64;
        if (sa < sb)
            exponent--;
        ulong q1 = (ulong)(dividend / sb), r1 = (ulong)(dividend % sb);
        UInt128 next = (UInt128)r1 << 64;
        ulong q2 = (ulong)(next / sb);
        bool sticky = next % sb != 0;
        return Make(negative, exponent, ((UInt128)q1 << 64) | q2, sticky, format, rc, ref flags);
    }

    /// <summary>√a.</summary>
    public static ExtendedReal SquareRoot(ExtendedReal a, RealFormat format, int rc, ref int flags)
    {
        RealClass c = a.Class;
        if (a.Negative && c is RealClass.Denormal or RealClass.Normal or RealClass.Infinity)
        {
            flags |= X87Flags.IE; // before DE: a negative denormal reports only IE
            return Indefinite;
        }
        if (Special(a, out ExtendedReal r, ref flags))
            return r;
        if (c == RealClass.Zero)
            return a;
        if (c == RealClass.Infinity)
            return a;
        a.Unpack(out _, out int e, out ulong s);
        // value = s / 2^63 * 2^e; with an even exponent, √value = √(s·2^63) / 2^63 · 2^(e/2).
        UInt128 n = (e & 1) == 0 ? (UInt128)s << 63 : (UInt128)s << 64;
        int half = (e & 1) == 0 ? e / 2 : (e - 1) / 2;
        ulong root = ISqrt(n);
        UInt128 rem = n - (UInt128)root * root;
        // The next bit is one when the exact root is past root + 1/2, that is rem > root.
        UInt128 sig = ((UInt128)root << 64) | (rem > root ? (UInt128)1 << 63 : 0);
        return Make(false, half, sig, rem != 0, format, rc, ref flags);
    }

    private static ulong ISqrt(UInt128 n)
    {
        ulong x = (ulong)Math.Sqrt((double)n);
        // Correct the floating-point estimate to floor(√n).
        while (x != 0 && (UInt128)x * x > n)
            x--;
        while (x != ulong.MaxValue && (UInt128)(x + 1) * (x + 1) <= n)
            x++;
        return x;
    }

    /// <summary>Rounds to an integer value in the given mode (FRNDINT).</summary>
    public static ExtendedReal RoundToInteger(ExtendedReal a, int rc, ref int flags)
    {
        if (Special(a, out ExtendedReal r, ref flags))
            return r;
        if (a.Class is RealClass.Zero or RealClass.Infinity)
            return a;
        a.Unpack(out bool n, out int e, out ulong s);
        if (e >= 63)
            return a;
        ulong magnitude = IntegerPart(n, e, s, rc, ref flags, out bool carry);
        if (magnitude == 0 && !carry)
            return Zero(n);
        return carry ? Make(n, 64, (UInt128)1 << 127, false, RealFormat.Extended, rc, ref flags)
            : Make(n, 63, (UInt128)magnitude << 64, false, RealFormat.Extended, rc, ref flags);
    }

    // The magnitude rounded to an integer (e < 63 given normalized s); carry: it rounded up to 2^64.
    private static ulong IntegerPart(bool negative, int e, ulong s, int rc, ref int flags, out bool carry)
    {
        carry = false;
        ulong whole;
        bool roundBit, sticky;
        if (e < 0)
        {
            whole = 0;
            roundBit = e == -1;
            sticky = e == -1 ? (s << 1) != 0 : true;
        }
        else
        {
            int fracBits = 63 - e;
            whole = s >> fracBits;
            ulong frac = s & ((1UL << fracBits) - 1);
            roundBit = (frac >> (fracBits - 1)) != 0;
            sticky = (frac & ((1UL << (fracBits - 1)) - 1)) != 0;
        }
        bool inexact = roundBit || sticky;
        bool up = rc switch
        {
            0 => roundBit && (sticky || (whole & 1) != 0),
            1 => inexact && negative,
            2 => inexact && !negative,
            _ => false,
        };
        if (inexact)
            flags |= X87Flags.PE;
        if (up)
        {
            flags |= X87Flags.C1;
            whole++;
            carry = whole == 0;
        }
        return whole;
    }

    /// <summary>The value rounded to a signed integer of <paramref name="bytes"/> bytes (FIST; with
    /// <paramref name="truncate"/>, FISTTP); the integer indefinite and IE when out of range.</summary>
    public static ulong ToInteger(ExtendedReal a, int bytes, int rc, bool truncate, ref int flags)
    {
        ulong indefinite = 1UL << (8 * bytes - 1);
        RealClass c = a.Class;
        if (c is RealClass.Unsupported or RealClass.QuietNaN or RealClass.SignalingNaN or RealClass.Infinity)
        {
            flags |= X87Flags.IE;
            return indefinite;
        }
        if (c == RealClass.Zero)
            return 0;
        a.Unpack(out bool n, out int e, out ulong s);
        int probe = 0;
        ulong magnitude;
        bool carry = false;
        if (e >= 64)
        {
            flags |= X87Flags.IE;
            return indefinite;
        }
        magnitude = e == 63 ? s : IntegerPart(n, e, s, truncate ? 3 : rc, ref probe, out carry);
        ulong limit = n ? indefinite : indefinite - 1;
        if (carry || magnitude > limit)
        {
            flags |= X87Flags.IE;
            return indefinite;
        }
        flags |= probe;
        ulong v = n ? (ulong)-(long)magnitude : magnitude;
        return v & (ulong.MaxValue >> (64 - 8 * bytes));
    }

    /// <summary>A signed integer, exactly.</summary>
    public static ExtendedReal FromInteger(long v)
    {
        if (v == 0)
            return Zero(false);
        bool n = v < 0;
        ulong m = n ? (ulong)-v : (ulong)v;
        int lz = BitOperations.LeadingZeroCount(m);
        return new((ushort)((n ? 0x8000 : 0) | (16383 + 63 - lz)), m << lz);
    }

    // --- Conversions between formats ----------------------------------------------------------

    /// <summary>A single- or double-precision value (<paramref name="bits"/> of 32 or 64), exactly;
    /// a denormal reports DE, and with <paramref name="quietSignaling"/> (a load) a signaling NaN is
    /// quieted with IE.</summary>
    public static ExtendedReal FromBinary(ulong bits, bool isDouble, bool quietSignaling, ref int flags)
    {
        int fracBits = isDouble ? 52 : 23, expBits = isDouble ? 11 : 8;
        int bias = (1 << (expBits - 1)) - 1;
        bool n = (bits >> (fracBits + expBits)) != 0;
        int e = (int)((bits >> fracBits) & ((1UL << expBits) - 1));
        ulong frac = bits & ((1UL << fracBits) - 1);
        ushort sign = n ? (ushort)0x8000 : (ushort)0;
        if (e == (1 << expBits) - 1)
        {
            if (frac == 0)
                return Infinity(n);
            var nan = new ExtendedReal((ushort)(sign | 0x7FFF), IntegerBit | (frac << (63 - fracBits)));
            if (quietSignaling && nan.Class == RealClass.SignalingNaN)
            {
                flags |= X87Flags.IE;
                return nan.Quiet();
            }
            return nan;
        }
        if (e == 0)
        {
            if (frac == 0)
                return Zero(n);
            flags |= X87Flags.DE;
            int lz = BitOperations.LeadingZeroCount(frac);
            // frac / 2^fracBits * 2^(1 - bias), normalized to bit 63.
            int exponent = 1 - bias - (lz - (63 - fracBits));
            return new((ushort)(sign | (exponent + 16383)), frac << lz);
        }
        return new((ushort)(sign | (e - bias + 16383)), IntegerBit | (frac << (63 - fracBits)));
    }

    /// <summary>The value rounded to single or double precision, as bits.</summary>
    public static ulong ToBinary(ExtendedReal a, bool isDouble, int rc, ref int flags)
    {
        int fracBits = isDouble ? 52 : 23, expBits = isDouble ? 11 : 8;
        int bias = (1 << (expBits - 1)) - 1;
        ulong sign = a.Negative ? 1UL << (fracBits + expBits) : 0;
        ulong expMax = (1UL << expBits) - 1;
        switch (a.Class)
        {
            case RealClass.Unsupported:
                flags |= X87Flags.IE;
                a = Indefinite;
                sign = 1UL << (fracBits + expBits);
                goto case RealClass.QuietNaN;
            case RealClass.SignalingNaN:
                flags |= X87Flags.IE;
                a = a.Quiet();
                goto case RealClass.QuietNaN;
            case RealClass.QuietNaN:
                return sign | (expMax << fracBits) | ((a.Significand & ~IntegerBit) >> (63 - fracBits));
            case RealClass.Infinity:
                return sign | (expMax << fracBits);
            case RealClass.Zero:
                return sign;
        }
        a.Unpack(out bool n, out int e, out ulong s);
        RealFormat format = isDouble ? RealFormat.Double : RealFormat.Single;
        var (sig, exponent, inf) = Round(n, e, (UInt128)s << 64, false, format, rc, ref flags);
        if (inf)
            return sign | (expMax << fracBits);
        if ((sig & IntegerBit) == 0)
            return sign | (sig >> (63 - fracBits)); // denormal (or zero)
        return sign | ((ulong)(exponent + bias) << fracBits) | ((sig & ~IntegerBit) >> (63 - fracBits));
    }

    // --- Comparison, remainder, scale -------------------------------------------------------------

    /// <summary>Compares a with b: -1, 0, 1, or 2 when unordered. Any NaN raises IE when
    /// <paramref name="signaling"/>, a signaling NaN always.</summary>
    public static int Compare(ExtendedReal a, ExtendedReal b, bool signaling, ref int flags)
    {
        RealClass ca = a.Class, cb = b.Class;
        if (ca == RealClass.Unsupported || cb == RealClass.Unsupported)
        {
            flags |= X87Flags.IE;
            return 2;
        }
        if (a.IsNaN || b.IsNaN)
        {
            if (signaling || ca == RealClass.SignalingNaN || cb == RealClass.SignalingNaN)
                flags |= X87Flags.IE;
            return 2;
        }
        if (ca == RealClass.Denormal || cb == RealClass.Denormal)
            flags |= X87Flags.DE;
        if (ca == RealClass.Zero && cb == RealClass.Zero)
            return 0;
        int ka = Key(a, ca), kb = Key(b, cb);
        if (ka != kb)
            return ka < kb ? -1 : 1;
        if (ka == 0)
            return 0;
        // Same sign, both nonzero: compare magnitudes, then flip for negatives.
        int m = CompareMagnitude(a, ca, b, cb);
        return a.Negative ? -m : m;
    }

    // -1 negative, 0 zero, 1 positive.
    private static int Key(ExtendedReal v, RealClass c) => c == RealClass.Zero ? 0 : v.Negative ? -1 : 1;

    private static int CompareMagnitude(ExtendedReal a, RealClass ca, ExtendedReal b, RealClass cb)
    {
        if (ca == RealClass.Infinity || cb == RealClass.Infinity)
            return ca == cb ? 0 : ca == RealClass.Infinity ? 1 : -1;
        a.Unpack(out _, out int ea, out ulong sa);
        b.Unpack(out _, out int eb, out ulong sb);
        if (ea != eb)
            return ea < eb ? -1 : 1;
        return sa.CompareTo(sb);
    }

    /// <summary>FPREM (truncating quotient) or FPREM1 (nearest): the remainder of a by b and the
    /// low three quotient bits; <paramref name="partial"/> when the exponents were too far apart for
    /// one step (C2).</summary>
    public static ExtendedReal Remainder(ExtendedReal a, ExtendedReal b, bool nearest, ref int flags, out int quotient, out bool partial)
    {
        quotient = -1; // no quotient: a NaN or an invalid operation
        partial = false;
        if (Special(a, b, out ExtendedReal r, ref flags))
            return r;
        RealClass ca = a.Class, cb = b.Class;
        if (ca == RealClass.Infinity || cb == RealClass.Zero)
        {
            flags = (flags & ~X87Flags.DE) | X87Flags.IE; // invalid outranks a denormal dividend
            return Indefinite;
        }
        quotient = 0;
        if (ca == RealClass.Zero || cb == RealClass.Infinity)
            return Rounded(a, RealFormat.Extended, 0, ref flags); // a pseudo-denormal comes back normalized
        a.Unpack(out bool na, out int ea, out ulong sa);
        b.Unpack(out _, out int eb, out ulong sb);
        int d = ea - eb;
        if (d < 0 && !(nearest && d == -1))
            return Rounded(a, RealFormat.Extended, 0, ref flags);
        int n = d;
        if (d >= 64)
        {
            // One partial step reduces the exponent difference to between 32 and 63.
            n = (d & 31) | 32;
            partial = true;
        }
        UInt128 dividend, divisor = sb;
        ulong q;
        UInt128 rem;
        int exponent;
        if (n >= 0)
        {
            dividend = (UInt128)sa << n;
            q = (ulong)(dividend / divisor);
            rem = dividend % divisor;
            exponent = ea - n; // rem / 2^63 * 2^(ea - n)
        }
        else
        {
            // |a| in [|b|/2, |b|): the quotient rounds to 0 or 1.
            dividend = sa;
            divisor = (UInt128)sb << 1;
            q = 0;
            rem = dividend;
            exponent = ea;
        }
        bool negative = na;
        if (nearest && !partial)
        {
            UInt128 twice = rem << 1;
            if (twice > divisor || (twice == divisor && (q & 1) != 0))
            {
                rem = divisor - rem;
                q++;
                negative = !negative;
            }
        }
        if (!partial)
            quotient = (int)(q & 7);
        if (rem == 0)
            return Zero(na);
        return Make(negative, exponent, rem << 64, false, RealFormat.Extended, 0, ref flags);
    }

    /// <summary>a × 2^trunc(b) (FSCALE).</summary>
    public static ExtendedReal Scale(ExtendedReal a, ExtendedReal b, int rc, ref int flags)
    {
        if (Special(a, b, out ExtendedReal r, ref flags))
            return r;
        RealClass ca = a.Class, cb = b.Class;
        if (cb == RealClass.Infinity)
        {
            if ((ca == RealClass.Zero && !b.Negative) || (ca == RealClass.Infinity && b.Negative))
            {
                flags |= X87Flags.IE;
                return Indefinite;
            }
            if (ca is RealClass.Zero or RealClass.Infinity)
                return a;
            return b.Negative ? Zero(a.Negative) : Infinity(a.Negative);
        }
        if (ca is RealClass.Zero or RealClass.Infinity)
            return a;
        int shift;
        if (cb == RealClass.Zero)
            shift = 0;
        else
        {
            b.Unpack(out bool nb, out int eb, out ulong sb);
            long t = eb < 0 ? 0 : eb >= 30 ? 1L << 30 : (long)(sb >> (63 - eb));
            shift = (int)(nb ? -t : t);
        }
        a.Unpack(out bool na, out int ea, out ulong sa);
        return Make(na, (int)Math.Clamp((long)ea + shift, -100_000, 100_000), (UInt128)sa << 64, false, RealFormat.Extended, rc, ref flags);
    }

    /// <summary>The exponent and the significand of a (FXTRACT): the exponent as a value, and the
    /// significand with exponent 0.</summary>
    public static (ExtendedReal Exponent, ExtendedReal Significand) Extract(ExtendedReal a, ref int flags)
    {
        if (Special(a, out ExtendedReal r, ref flags))
            return (r, r);
        switch (a.Class)
        {
            case RealClass.Zero:
                flags |= X87Flags.ZE;
                return (Infinity(true), a);
            case RealClass.Infinity:
                return (Infinity(false), a);
        }
        a.Unpack(out bool n, out int e, out ulong s);
        return (FromInteger(e), new((ushort)((n ? 0x8000 : 0) | 16383), s));
    }

    /// <summary>To the nearest double (for the transcendental functions, which run in double precision).</summary>
    public static double ToDouble(ExtendedReal a)
    {
        int ignored = 0;
        return BitConverter.UInt64BitsToDouble(ToBinary(a, true, 0, ref ignored));
    }

    /// <summary>A double, exactly.</summary>
    public static ExtendedReal FromDouble(double d)
    {
        int ignored = 0;
        return FromBinary(BitConverter.DoubleToUInt64Bits(d), true, true, ref ignored);
    }

    /// <summary>Rounds a wider value (sig / 2^127 · 2^exponent) in the given mode to extended
    /// precision, without reporting inexactness (the loaded constants).</summary>
    public static ExtendedReal Constant(int exponent, UInt128 sig, int rc)
    {
        int ignored = 0;
        return Make(false, exponent, sig, false, RealFormat.Extended, rc, ref ignored);
    }
}
