// SSE/SSE2 floating point: ADD, SUB, MUL, DIV, MIN, MAX and SQRT in their packed and scalar
// single and double forms, CMPcc, COMIS/UCOMIS and the conversions between integers, singles
// and doubles, lane by lane in SimdFloat with MXCSR's rounding mode, DAZ and FTZ. The lanes'
// exception flags are gathered and then committed as the SDM orders it: an unmasked invalid,
// denormal or divide-by-zero exception in any lane stops the instruction before the others are
// recorded; any unmasked exception leaves the destination unwritten and raises #XM (#UD when
// CR4.OSXMMEXCPT is clear).
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const ulong Cr4OSXMMEXCPT = 1 << 10;

    // Records the lanes' flags in MXCSR; true when the result may be written.
    private bool CommitSimd(int flags)
    {
        int unmasked = flags & ~(int)(_mxcsr >> 7) & 0x3F;
        const int pre = X87Flags.IE | X87Flags.DE | X87Flags.ZE;
        if ((unmasked & pre) != 0)
            _mxcsr |= (uint)(flags & pre);
        else
            _mxcsr |= (uint)(flags & 0x3F);
        if (unmasked == 0)
            return true;
        return Raise((_cr4 & Cr4OSXMMEXCPT) != 0 ? ExceptionVector.XM : ExceptionVector.UD);
    }

    private bool SseFloat(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        var c = new SimdControl(_mxcsr);
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
                    UInt128 a = Xmm(0);
                    int width = dbl ? 64 : 32, lanes = scalar ? 1 : 128 / width;
                    bool compare = m is Mnemonic.Cmpss or Mnemonic.Cmpsd or Mnemonic.Cmpps or Mnemonic.Cmppd;
                    FloatOp op = OpOf(m);
                    UInt128 r = a;
                    ulong laneMask = dbl ? ulong.MaxValue : 0xFFFF_FFFF;
                    for (int k = 0; k < lanes; k++)
                    {
                        int at = width * k;
                        ulong x = (ulong)(a >> at) & laneMask, y = (ulong)(b >> at) & laneMask;
                        ulong v = compare ? (SimdFloat.Compare(dbl, x, y, (int)(i.Immediate & (_vexLane ? 0x1FUL : 7)), ref c) ? laneMask : 0)
                            : SimdFloat.Arithmetic(op, dbl, x, y, ref c);
                        r = (r & ~((UInt128)laneMask << at)) | ((UInt128)v << at);
                    }
                    if (!CommitSimd(c.Flags))
                        return false;
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Comiss or Mnemonic.Ucomiss or Mnemonic.Comisd or Mnemonic.Ucomisd:
                {
                    bool dbl = m is Mnemonic.Comisd or Mnemonic.Ucomisd;
                    if (!Low(1, dbl ? 8 : 4, out ulong y))
                        return false;
                    int order = SimdFloat.Order(dbl, (ulong)Xmm(0) & (dbl ? ulong.MaxValue : 0xFFFF_FFFF), y, signaling: m is Mnemonic.Comiss or Mnemonic.Comisd, ref c);
                    if (!CommitSimd(c.Flags))
                        return false;
                    ulong bits = order switch { 2 => Rflags.ZF | Rflags.PF | Rflags.CF, -1 => Rflags.CF, 0 => Rflags.ZF, _ => 0 };
                    ref ulong flags = ref Flags;
                    flags = (flags & ~Rflags.Status) | bits;
                    break;
                }
            case Mnemonic.Cvtsi2ss or Mnemonic.Cvtsi2sd:
                {
                    int size = i.GetOperandKind(1) == OperandKind.Register ? RegisterInfo.GprNumber(i.GetRegister(1)).Size : i.MemorySize;
                    if (!Low(1, size, out ulong raw))
                        return false;
                    bool dbl = m == Mnemonic.Cvtsi2sd;
                    ulong v = SimdFloat.FromInteger(Alu.SignExtend(raw, size), dbl, ref c);
                    if (!CommitSimd(c.Flags))
                        return false;
                    ref UInt128 d = ref Xmm(0);
                    d = dbl ? (d & ~(UInt128)ulong.MaxValue) | v : (d & ~(UInt128)0xFFFF_FFFF) | v;
                    break;
                }
            case Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si or Mnemonic.Cvtss2si or Mnemonic.Cvtsd2si:
                {
                    bool dbl = m is Mnemonic.Cvttsd2si or Mnemonic.Cvtsd2si;
                    if (!Low(1, dbl ? 8 : 4, out ulong raw))
                        return false;
                    int size = RegisterInfo.GprNumber(i.GetRegister(0)).Size;
                    ulong v = SimdFloat.ToInteger(dbl, raw, size, truncate: m is Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si, ref c);
                    if (!CommitSimd(c.Flags))
                        return false;
                    Set(i.GetRegister(0), v);
                    break;
                }
            case Mnemonic.Cvtss2sd or Mnemonic.Cvtsd2ss:
                {
                    bool fromDouble = m == Mnemonic.Cvtsd2ss;
                    if (!Low(1, fromDouble ? 8 : 4, out ulong raw))
                        return false;
                    ulong v = SimdFloat.Convert(raw, fromDouble, ref c);
                    if (!CommitSimd(c.Flags))
                        return false;
                    ref UInt128 d = ref Xmm(0);
                    d = fromDouble ? (d & ~(UInt128)0xFFFF_FFFF) | v : (d & ~(UInt128)ulong.MaxValue) | v;
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
                        ulong v = m == Mnemonic.Cvtdq2ps ? SimdFloat.FromInteger((int)x, false, ref c)
                            : SimdFloat.ToInteger(false, x, 4, truncate: m == Mnemonic.Cvttps2dq, ref c);
                        r |= (UInt128)(v & 0xFFFF_FFFF) << (32 * k);
                    }
                    if (!CommitSimd(c.Flags))
                        return false;
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
                        ulong v = m == Mnemonic.Cvtdq2pd ? SimdFloat.FromInteger((int)x, true, ref c) : SimdFloat.Convert(x, false, ref c);
                        r |= (UInt128)v << (64 * k);
                    }
                    if (!CommitSimd(c.Flags))
                        return false;
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Rcpps or Mnemonic.Rcpss or Mnemonic.Rsqrtps or Mnemonic.Rsqrtss:
                {
                    bool scalar = m is Mnemonic.Rcpss or Mnemonic.Rsqrtss;
                    if (!FloatSource(false, scalar, out UInt128 b))
                        return false;
                    UInt128 r = Xmm(0);
                    for (int k = 0; k < (scalar ? 1 : 4); k++)
                    {
                        uint x = (uint)(b >> (32 * k));
                        uint v = SimdFloat.Reciprocal(x, squareRoot: m is Mnemonic.Rsqrtps or Mnemonic.Rsqrtss);
                        r = (r & ~((UInt128)0xFFFF_FFFF << (32 * k))) | ((UInt128)v << (32 * k));
                    }
                    Xmm(0) = r; // no exceptions, no MXCSR flags
                    break;
                }
            case Mnemonic.Cvtpd2dq or Mnemonic.Cvttpd2dq or Mnemonic.Cvtpd2ps:
                {
                    if (!Operand128(1, true, out UInt128 s))
                        return false;
                    ulong r = 0;
                    for (int k = 0; k < 2; k++)
                    {
                        ulong x = (ulong)(s >> (64 * k));
                        ulong v = m == Mnemonic.Cvtpd2ps ? SimdFloat.Convert(x, true, ref c)
                            : SimdFloat.ToInteger(true, x, 4, truncate: m == Mnemonic.Cvttpd2dq, ref c);
                        r |= (v & 0xFFFF_FFFF) << (32 * k);
                    }
                    if (!CommitSimd(c.Flags))
                        return false;
                    Xmm(0) = r; // the upper half is cleared
                    break;
                }
            default:
                {
                    bool done = Sse3(next, out bool sse3);
                    if (sse3)
                        return done;
                    done = Sse4(next, out bool sse4);
                    return sse4 ? done : RaiseUnimplemented(); // the VEX forms, which CPUID does not offer
                }
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
}
