// SSE/SSE2 floating point: ADD, SUB, MUL, DIV, MIN, MAX and SQRT in their packed and scalar
// single and double forms, CMPcc, COMIS/UCOMIS and the conversions between integers, singles
// and doubles. Lanes run on the host's IEEE arithmetic (round to nearest, exceptions masked);
// which NaN comes out is decided here, as the SDM says (the first source's, quieted), so it does
// not depend on how the host code orders its operands.
using System;
using System.Numerics;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private enum FloatOp : byte { Add, Sub, Mul, Div, Min, Max, Sqrt }

    private bool SseFloat(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Addss or Mnemonic.Addsd or Mnemonic.Addps or Mnemonic.Addpd
                or Mnemonic.Subss or Mnemonic.Subsd or Mnemonic.Subps or Mnemonic.Subpd
                or Mnemonic.Mulss or Mnemonic.Mulsd or Mnemonic.Mulps or Mnemonic.Mulpd
                or Mnemonic.Divss or Mnemonic.Divsd or Mnemonic.Divps or Mnemonic.Divpd
                or Mnemonic.Minss or Mnemonic.Minsd or Mnemonic.Minps or Mnemonic.Minpd
                or Mnemonic.Maxss or Mnemonic.Maxsd or Mnemonic.Maxps or Mnemonic.Maxpd
                or Mnemonic.Sqrtss or Mnemonic.Sqrtsd or Mnemonic.Sqrtps or Mnemonic.Sqrtpd
                or Mnemonic.Cmpss or Mnemonic.Cmpsd or Mnemonic.Cmpps or Mnemonic.Cmppd:
                {
                    (bool dbl, bool scalar) = Shape(m);
                    if (!FloatSource(dbl, scalar, out UInt128 b))
                        return false;
                    ref UInt128 a = ref Xmm(0);
                    int width = dbl ? 64 : 32, lanes = scalar ? 1 : 128 / width;
                    bool compare = m is Mnemonic.Cmpss or Mnemonic.Cmpsd or Mnemonic.Cmpps or Mnemonic.Cmppd;
                    FloatOp op = OpOf(m);
                    UInt128 r = a;
                    ulong laneMask = dbl ? ulong.MaxValue : 0xFFFF_FFFF;
                    for (int k = 0; k < lanes; k++)
                    {
                        int at = width * k;
                        ulong x = (ulong)(a >> at) & laneMask, y = (ulong)(b >> at) & laneMask;
                        ulong v = compare ? (Compare(dbl, x, y, (int)(i.Immediate & 7)) ? laneMask : 0) : FloatLane(op, dbl, x, y);
                        r = (r & ~((UInt128)laneMask << at)) | ((UInt128)v << at);
                    }
                    a = r;
                    break;
                }
            case Mnemonic.Comiss or Mnemonic.Ucomiss or Mnemonic.Comisd or Mnemonic.Ucomisd:
                {
                    bool dbl = m is Mnemonic.Comisd or Mnemonic.Ucomisd;
                    if (!Low(1, dbl ? 8 : 4, out ulong y))
                        return false;
                    ulong x = (ulong)Xmm(0);
                    double p = dbl ? BitConverter.Int64BitsToDouble((long)x) : BitConverter.Int32BitsToSingle((int)x);
                    double q = dbl ? BitConverter.Int64BitsToDouble((long)y) : BitConverter.Int32BitsToSingle((int)y);
                    ulong bits = double.IsNaN(p) || double.IsNaN(q) ? Rflags.ZF | Rflags.PF | Rflags.CF
                        : p < q ? Rflags.CF : p == q ? Rflags.ZF : 0;
                    ref ulong flags = ref Flags;
                    flags = (flags & ~Rflags.Status) | bits;
                    break;
                }
            case Mnemonic.Cvtsi2ss or Mnemonic.Cvtsi2sd:
                {
                    int size = i.GetOperandKind(1) == OperandKind.Register ? RegisterInfo.GprNumber(i.GetRegister(1)).Size : i.MemorySize;
                    if (!Low(1, size, out ulong raw))
                        return false;
                    long v = Alu.SignExtend(raw, size);
                    ref UInt128 d = ref Xmm(0);
                    d = m == Mnemonic.Cvtsi2sd
                        ? (d & ~(UInt128)ulong.MaxValue) | (ulong)BitConverter.DoubleToInt64Bits(v)
                        : (d & ~(UInt128)0xFFFF_FFFF) | (uint)BitConverter.SingleToInt32Bits(v);
                    break;
                }
            case Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si or Mnemonic.Cvtss2si or Mnemonic.Cvtsd2si:
                {
                    bool dbl = m is Mnemonic.Cvttsd2si or Mnemonic.Cvtsd2si;
                    if (!Low(1, dbl ? 8 : 4, out ulong raw))
                        return false;
                    double x = dbl ? BitConverter.Int64BitsToDouble((long)raw) : BitConverter.Int32BitsToSingle((int)raw);
                    int size = RegisterInfo.GprNumber(i.GetRegister(0)).Size;
                    Set(i.GetRegister(0), ToInteger(x, size, truncate: m is Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si));
                    break;
                }
            case Mnemonic.Cvtss2sd or Mnemonic.Cvtsd2ss:
                {
                    bool fromDouble = m == Mnemonic.Cvtsd2ss;
                    if (!Low(1, fromDouble ? 8 : 4, out ulong raw))
                        return false;
                    ref UInt128 d = ref Xmm(0);
                    d = fromDouble
                        ? (d & ~(UInt128)0xFFFF_FFFF) | (uint)BitConverter.SingleToInt32Bits((float)BitConverter.Int64BitsToDouble((long)raw))
                        : (d & ~(UInt128)ulong.MaxValue) | (ulong)BitConverter.DoubleToInt64Bits(BitConverter.Int32BitsToSingle((int)raw));
                    break;
                }
            case Mnemonic.Cvtdq2ps or Mnemonic.Cvtps2dq or Mnemonic.Cvttps2dq:
                {
                    if (!Operand128(1, true, out UInt128 s))
                        return false;
                    UInt128 r = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        uint x = (uint)(s >> (32 * k));
                        uint v = m == Mnemonic.Cvtdq2ps ? (uint)BitConverter.SingleToInt32Bits((int)x)
                            : (uint)ToInteger(BitConverter.Int32BitsToSingle((int)x), 4, truncate: m == Mnemonic.Cvttps2dq);
                        r |= (UInt128)v << (32 * k);
                    }
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Cvtdq2pd or Mnemonic.Cvtps2pd:
                {
                    if (!Low(1, 8, out ulong s))
                        return false;
                    UInt128 r = 0;
                    for (int k = 0; k < 2; k++)
                    {
                        uint x = (uint)(s >> (32 * k));
                        double v = m == Mnemonic.Cvtdq2pd ? (double)(int)x : (double)BitConverter.Int32BitsToSingle((int)x);
                        r |= (UInt128)(ulong)BitConverter.DoubleToInt64Bits(v) << (64 * k);
                    }
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Cvtpd2dq or Mnemonic.Cvttpd2dq or Mnemonic.Cvtpd2ps:
                {
                    if (!Operand128(1, true, out UInt128 s))
                        return false;
                    ulong r = 0;
                    for (int k = 0; k < 2; k++)
                    {
                        double x = BitConverter.Int64BitsToDouble((long)(ulong)(s >> (64 * k)));
                        uint v = m == Mnemonic.Cvtpd2ps ? (uint)BitConverter.SingleToInt32Bits((float)x)
                            : (uint)ToInteger(x, 4, truncate: m == Mnemonic.Cvttpd2dq);
                        r |= (ulong)v << (32 * k);
                    }
                    Xmm(0) = r; // the upper half is cleared
                    break;
                }
            default:
                return ExitException(ExceptionVector.UD); // an SSE instruction not implemented yet
        }
        _rip = next;
        return true;
    }

    private static (bool Double, bool Scalar) Shape(Mnemonic m) => m switch
    {
        Mnemonic.Addss or Mnemonic.Subss or Mnemonic.Mulss or Mnemonic.Divss or Mnemonic.Minss or Mnemonic.Maxss
            or Mnemonic.Sqrtss or Mnemonic.Cmpss => (false, true),
        Mnemonic.Addsd or Mnemonic.Subsd or Mnemonic.Mulsd or Mnemonic.Divsd or Mnemonic.Minsd or Mnemonic.Maxsd
            or Mnemonic.Sqrtsd or Mnemonic.Cmpsd => (true, true),
        Mnemonic.Addpd or Mnemonic.Subpd or Mnemonic.Mulpd or Mnemonic.Divpd or Mnemonic.Minpd or Mnemonic.Maxpd
            or Mnemonic.Sqrtpd or Mnemonic.Cmppd => (true, false),
        _ => (false, false),
    };

    private static FloatOp OpOf(Mnemonic m) => m switch
    {
        Mnemonic.Addss or Mnemonic.Addsd or Mnemonic.Addps or Mnemonic.Addpd => FloatOp.Add,
        Mnemonic.Subss or Mnemonic.Subsd or Mnemonic.Subps or Mnemonic.Subpd => FloatOp.Sub,
        Mnemonic.Mulss or Mnemonic.Mulsd or Mnemonic.Mulps or Mnemonic.Mulpd => FloatOp.Mul,
        Mnemonic.Divss or Mnemonic.Divsd or Mnemonic.Divps or Mnemonic.Divpd => FloatOp.Div,
        Mnemonic.Minss or Mnemonic.Minsd or Mnemonic.Minps or Mnemonic.Minpd => FloatOp.Min,
        Mnemonic.Maxss or Mnemonic.Maxsd or Mnemonic.Maxps or Mnemonic.Maxpd => FloatOp.Max,
        _ => FloatOp.Sqrt, // CMPcc does not use it
    };

    // The second source: a whole register, 16 aligned bytes, or a scalar's 4 or 8 bytes.
    private bool FloatSource(bool dbl, bool scalar, out UInt128 value)
    {
        if (!scalar)
            return Operand128(1, true, out value);
        bool ok = Low(1, dbl ? 8 : 4, out ulong v);
        value = v;
        return ok;
    }

    // One lane of op on the raw bits of x and y. A NaN operand gives the first NaN source, quieted
    // (MIN and MAX give the second source for NaN or equal operands, as their comparison says).
    private static ulong FloatLane(FloatOp op, bool dbl, ulong x, ulong y)
    {
        ulong quiet = dbl ? 1UL << 51 : 1UL << 22;
        bool xNaN = dbl ? double.IsNaN(BitConverter.Int64BitsToDouble((long)x)) : float.IsNaN(BitConverter.Int32BitsToSingle((int)x));
        bool yNaN = dbl ? double.IsNaN(BitConverter.Int64BitsToDouble((long)y)) : float.IsNaN(BitConverter.Int32BitsToSingle((int)y));
        if (op == FloatOp.Sqrt && yNaN)
            return y | quiet;
        if (op is not (FloatOp.Min or FloatOp.Max or FloatOp.Sqrt) && (xNaN || yNaN))
            return (xNaN ? x : y) | quiet;
        return dbl
            ? (ulong)BitConverter.DoubleToInt64Bits(Lane(op, BitConverter.Int64BitsToDouble((long)x), BitConverter.Int64BitsToDouble((long)y)))
            : (uint)BitConverter.SingleToInt32Bits(Lane(op, BitConverter.Int32BitsToSingle((int)x), BitConverter.Int32BitsToSingle((int)y)));
    }

    private static T Lane<T>(FloatOp op, T x, T y) where T : IFloatingPointIeee754<T> => op switch
    {
        FloatOp.Add => x + y,
        FloatOp.Sub => x - y,
        FloatOp.Mul => x * y,
        FloatOp.Div => x / y,
        FloatOp.Min => x < y ? x : y,
        FloatOp.Max => x > y ? x : y,
        _ => T.Sqrt(y),
    };

    // CMPcc's predicates 0-7: EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD.
    private static bool Compare(bool dbl, ulong a, ulong b, int predicate)
    {
        double x = dbl ? BitConverter.Int64BitsToDouble((long)a) : BitConverter.Int32BitsToSingle((int)a);
        double y = dbl ? BitConverter.Int64BitsToDouble((long)b) : BitConverter.Int32BitsToSingle((int)b);
        bool unordered = double.IsNaN(x) || double.IsNaN(y);
        return predicate switch
        {
            0 => x == y,
            1 => x < y,
            2 => x <= y,
            3 => unordered,
            4 => !(x == y),
            5 => !(x < y),
            6 => !(x <= y),
            _ => !unordered,
        };
    }

    // A conversion to a size-byte integer: truncated or rounded to nearest even; NaN and values
    // out of range give the integer indefinite (only the sign bit set).
    private static ulong ToInteger(double x, int size, bool truncate)
    {
        double t = truncate ? Math.Truncate(x) : Math.Round(x, MidpointRounding.ToEven);
        double limit = size == 8 ? 9223372036854775808.0 : 2147483648.0;
        if (double.IsNaN(t) || t >= limit || t < -limit)
            return Alu.SignBit(size);
        return (ulong)(long)t & Alu.Mask(size);
    }
}
