// SSE4.1 and SSE4.2 on XMM registers, the vector half of x86-64-v2: blends, dot products, inserts
// and extracts, the sign- and zero-extending moves, the packed min/max/multiply/compare widths
// SSE2 lacks, PTEST, ROUNDxx, MPSADBW, PHMINPOSUW, and SSE4.2's PCMPGTQ and string compares
// (PCMPESTRI/M, PCMPISTRI/M). CRC32, SSE4.2's one instruction on general registers, is with
// the integer set. Full-width memory operands must be aligned, except the string compares'.
using System;
using System.Numerics;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private static UInt128 LaneMask(int width) => width == 8 ? ulong.MaxValue : (1UL << (8 * width)) - 1;

    private static ulong LaneOf(UInt128 v, int width, int k) => (ulong)((v >> (8 * width * k)) & LaneMask(width));

    // True when completed (or raised); false with handled clear when m is not SSE4.1/4.2.
    private bool Sse4(ulong next, out bool handled)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        int imm = (int)(i.Immediate & 0xFF);
        handled = true;
        if (!IsSse4(m))
        {
            handled = false;
            return false;
        }
        if ((_features & (m == Mnemonic.Pcmpgtq || IsStringCompare(m) ? CpuFeatures.Sse42 : CpuFeatures.Sse41)) == 0)
            return Raise(ExceptionVector.UD);
        switch (m)
        {
            case Mnemonic.Blendps or Mnemonic.Blendpd or Mnemonic.Pblendw or Mnemonic.Blendvps or Mnemonic.Blendvpd or Mnemonic.Pblendvb:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    int width = m is Mnemonic.Blendps or Mnemonic.Blendvps ? 4 : m is Mnemonic.Blendpd or Mnemonic.Blendvpd ? 8
                        : m == Mnemonic.Pblendw ? 2 : 1;
                    bool variable = m is Mnemonic.Blendvps or Mnemonic.Blendvpd or Mnemonic.Pblendvb;
                    UInt128 take = 0;
                    for (int k = 0; k < 16 / width; k++)
                    {
                        // The variable forms take lane k where XMM0's lane k has its top bit set.
                        bool from = variable ? ((_area.Xmm[0] >> (8 * width * (k + 1) - 1)) & 1) != 0 : ((imm >> k) & 1) != 0;
                        if (from)
                            take |= LaneMask(width) << (8 * width * k);
                    }
                    ref UInt128 a = ref Xmm(0);
                    a = (a & ~take) | (b & take);
                    break;
                }
            case Mnemonic.Pmovsxbw or Mnemonic.Pmovsxbd or Mnemonic.Pmovsxbq or Mnemonic.Pmovsxwd or Mnemonic.Pmovsxwq or Mnemonic.Pmovsxdq
                or Mnemonic.Pmovzxbw or Mnemonic.Pmovzxbd or Mnemonic.Pmovzxbq or Mnemonic.Pmovzxwd or Mnemonic.Pmovzxwq or Mnemonic.Pmovzxdq:
                {
                    (int from, int to) = m switch
                    {
                        Mnemonic.Pmovsxbw or Mnemonic.Pmovzxbw => (1, 2),
                        Mnemonic.Pmovsxbd or Mnemonic.Pmovzxbd => (1, 4),
                        Mnemonic.Pmovsxbq or Mnemonic.Pmovzxbq => (1, 8),
                        Mnemonic.Pmovsxwd or Mnemonic.Pmovzxwd => (2, 4),
                        Mnemonic.Pmovsxwq or Mnemonic.Pmovzxwq => (2, 8),
                        _ => (4, 8),
                    };
                    int count = 16 / to;
                    if (!Low(1, count * from, out ulong s))
                        return false;
                    bool signed = m is >= Mnemonic.Pmovsxbd and <= Mnemonic.Pmovsxwq;
                    UInt128 r = 0;
                    for (int k = 0; k < count; k++)
                    {
                        ulong v = (s >> (8 * from * k)) & Alu.Mask(from);
                        if (signed)
                            v = (ulong)Alu.SignExtend(v, from);
                        r |= (v & LaneMask(to)) << (8 * to * k);
                    }
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Pminsb or Mnemonic.Pmaxsb or Mnemonic.Pminuw or Mnemonic.Pmaxuw or Mnemonic.Pminsd or Mnemonic.Pmaxsd
                or Mnemonic.Pminud or Mnemonic.Pmaxud or Mnemonic.Pmulld or Mnemonic.Pcmpeqq or Mnemonic.Pcmpgtq:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    int width = m is Mnemonic.Pminsb or Mnemonic.Pmaxsb ? 1 : m is Mnemonic.Pminuw or Mnemonic.Pmaxuw ? 2
                        : m is Mnemonic.Pcmpeqq or Mnemonic.Pcmpgtq ? 8 : 4;
                    ref UInt128 a = ref Xmm(0);
                    UInt128 r = 0;
                    for (int k = 0; k < 16 / width; k++)
                    {
                        ulong x = LaneOf(a, width, k), y = LaneOf(b, width, k);
                        long sx = Alu.SignExtend(x, width), sy = Alu.SignExtend(y, width);
                        ulong v = m switch
                        {
                            Mnemonic.Pminsb or Mnemonic.Pminsd => sx <= sy ? x : y,
                            Mnemonic.Pmaxsb or Mnemonic.Pmaxsd => sx >= sy ? x : y,
                            Mnemonic.Pminuw or Mnemonic.Pminud => Math.Min(x, y),
                            Mnemonic.Pmaxuw or Mnemonic.Pmaxud => Math.Max(x, y),
                            Mnemonic.Pmulld => x * y,
                            Mnemonic.Pcmpeqq => x == y ? ulong.MaxValue : 0,
                            _ => sx > sy ? ulong.MaxValue : 0, // PCMPGTQ
                        };
                        r |= (v & LaneMask(width)) << (8 * width * k);
                    }
                    a = r;
                    break;
                }
            case Mnemonic.Pmuldq:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref Xmm(0);
                    ulong lo = (ulong)((long)(int)LaneOf(a, 4, 0) * (int)LaneOf(b, 4, 0));
                    ulong hi = (ulong)((long)(int)LaneOf(a, 4, 2) * (int)LaneOf(b, 4, 2));
                    a = ((UInt128)hi << 64) | lo;
                    break;
                }
            case Mnemonic.Packusdw:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref Xmm(0);
                    UInt128 r = 0;
                    for (int k = 0; k < 8; k++)
                    {
                        int v = (int)LaneOf(k < 4 ? a : b, 4, k & 3);
                        r |= (UInt128)(ushort)Math.Clamp(v, 0, ushort.MaxValue) << (16 * k);
                    }
                    a = r;
                    break;
                }
            case Mnemonic.Ptest:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    UInt128 a = Xmm(0);
                    ulong f = Flags & ~Rflags.Status;
                    if ((a & b) == 0)
                        f |= Rflags.ZF;
                    if ((~a & b) == 0)
                        f |= Rflags.CF;
                    Flags = f;
                    break;
                }
            case Mnemonic.Roundps or Mnemonic.Roundpd or Mnemonic.Roundss or Mnemonic.Roundsd:
                {
                    bool dbl = m is Mnemonic.Roundpd or Mnemonic.Roundsd, scalar = m is Mnemonic.Roundss or Mnemonic.Roundsd;
                    if (!FloatSource(dbl, scalar, out UInt128 b))
                        return false;
                    var c = new SimdControl(_mxcsr);
                    int rc = (imm & 4) != 0 ? c.Rounding : imm & 3, width = dbl ? 8 : 4;
                    UInt128 r = scalar ? Xmm(0) : 0;
                    for (int k = 0; k < (scalar ? 1 : 16 / width); k++)
                    {
                        ulong v = SimdFloat.Round(dbl, LaneOf(b, width, k), rc, suppressInexact: (imm & 8) != 0, ref c);
                        r = (r & ~(LaneMask(width) << (8 * width * k))) | ((UInt128)v << (8 * width * k));
                    }
                    if (!CommitSimd(c.Flags))
                        return false;
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Dpps or Mnemonic.Dppd:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    UInt128 a = Xmm(0);
                    bool dbl = m == Mnemonic.Dppd;
                    int width = dbl ? 8 : 4, lanes = 16 / width;
                    var c = new SimdControl(_mxcsr);
                    // The products of the lanes imm[7:4] selects (+0.0 for the others), summed in
                    // pairs and then the pairs, each step rounded as MXCSR says.
                    ulong p0 = 0, p1 = 0, p2 = 0, p3 = 0;
                    for (int k = 0; k < lanes; k++)
                    {
                        ulong p = ((imm >> (4 + k)) & 1) != 0 ? SimdFloat.Arithmetic(FloatOp.Mul, dbl, LaneOf(a, width, k), LaneOf(b, width, k), ref c) : 0;
                        switch (k)
                        {
                            case 0: p0 = p; break;
                            case 1: p1 = p; break;
                            case 2: p2 = p; break;
                            default: p3 = p; break;
                        }
                    }
                    ulong sum = SimdFloat.Arithmetic(FloatOp.Add, dbl, p0, p1, ref c);
                    if (!dbl)
                        sum = SimdFloat.Arithmetic(FloatOp.Add, dbl, sum, SimdFloat.Arithmetic(FloatOp.Add, dbl, p2, p3, ref c), ref c);
                    if (!CommitSimd(c.Flags))
                        return false;
                    UInt128 r = 0;
                    for (int k = 0; k < lanes; k++)
                    {
                        if (((imm >> k) & 1) != 0)
                            r |= (UInt128)sum << (8 * width * k);
                    }
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Extractps or Mnemonic.Pextrb or Mnemonic.Pextrw or Mnemonic.Pextrd or Mnemonic.Pextrq:
                {
                    int width = m switch { Mnemonic.Pextrb => 1, Mnemonic.Pextrw => 2, Mnemonic.Pextrq => 8, _ => 4 };
                    ulong v = LaneOf(Xmm(1), width, imm & (16 / width - 1));
                    if (i.GetOperandKind(0) == OperandKind.Register)
                        Set(i.GetRegister(0), v); // zero-extended into the whole register
                    else if (!Write(i.MemorySegment, Ea(), width, v))
                        return false;
                    break;
                }
            case Mnemonic.Pinsrb or Mnemonic.Pinsrd or Mnemonic.Pinsrq:
                {
                    int width = m switch { Mnemonic.Pinsrb => 1, Mnemonic.Pinsrq => 8, _ => 4 };
                    if (!Low(1, width, out ulong v))
                        return false;
                    int at = 8 * width * (imm & (16 / width - 1));
                    ref UInt128 d = ref Xmm(0);
                    d = (d & ~(LaneMask(width) << at)) | ((UInt128)v << at);
                    break;
                }
            case Mnemonic.Insertps:
                {
                    // From a register the lane imm[7:6] is taken; from memory the 32 bits there.
                    ulong v;
                    if (IsXmmOperand(1))
                        v = LaneOf(Xmm(1), 4, (imm >> 6) & 3);
                    else if (!Read(i.MemorySegment, Ea(), 4, out v))
                        return false;
                    int at = 32 * ((imm >> 4) & 3);
                    ref UInt128 d = ref Xmm(0);
                    UInt128 r = (d & ~((UInt128)0xFFFF_FFFF << at)) | ((UInt128)v << at);
                    for (int k = 0; k < 4; k++)
                    {
                        if (((imm >> k) & 1) != 0)
                            r &= ~((UInt128)0xFFFF_FFFF << (32 * k));
                    }
                    d = r;
                    break;
                }
            case Mnemonic.Movntdqa:
                {
                    if (!Operand128(1, true, out UInt128 v))
                        return false;
                    Xmm(0) = v;
                    break;
                }
            case Mnemonic.Mpsadbw:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref Xmm(0);
                    // Eight sums of absolute differences: four bytes of b at imm[1:0] × 4 against
                    // a sliding window of a from imm[2] × 4.
                    int aAt = 4 * ((imm >> 2) & 1), bAt = 4 * (imm & 3);
                    UInt128 r = 0;
                    for (int k = 0; k < 8; k++)
                    {
                        int sum = 0;
                        for (int j = 0; j < 4; j++)
                            sum += Math.Abs((int)LaneOf(a, 1, aAt + k + j) - (int)LaneOf(b, 1, bAt + j));
                        r |= (UInt128)(uint)sum << (16 * k);
                    }
                    a = r;
                    break;
                }
            case Mnemonic.Phminposuw:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ulong min = LaneOf(b, 2, 0), at = 0;
                    for (int k = 1; k < 8; k++)
                    {
                        ulong w = LaneOf(b, 2, k);
                        if (w < min)
                            (min, at) = (w, (ulong)k);
                    }
                    Xmm(0) = min | (at << 16);
                    break;
                }
            default: // the string compares
                if (!StringCompare(m, imm))
                    return false;
                break;
        }
        _rip = next;
        return true;
    }

    private static bool IsSse4(Mnemonic m) => m is Mnemonic.Blendps or Mnemonic.Blendpd or Mnemonic.Pblendw or Mnemonic.Blendvps
        or Mnemonic.Blendvpd or Mnemonic.Pblendvb or (>= Mnemonic.Pmovsxbd and <= Mnemonic.Pmovsxwq) or (>= Mnemonic.Pmovzxbd and <= Mnemonic.Pmovzxwq)
        or Mnemonic.Pminsb or Mnemonic.Pmaxsb or Mnemonic.Pminuw or Mnemonic.Pmaxuw or Mnemonic.Pminsd or Mnemonic.Pmaxsd
        or Mnemonic.Pminud or Mnemonic.Pmaxud or Mnemonic.Pmulld or Mnemonic.Pcmpeqq or Mnemonic.Pcmpgtq or Mnemonic.Pmuldq
        or Mnemonic.Packusdw or Mnemonic.Ptest or Mnemonic.Roundps or Mnemonic.Roundpd or Mnemonic.Roundss or Mnemonic.Roundsd
        or Mnemonic.Dpps or Mnemonic.Dppd or Mnemonic.Extractps or Mnemonic.Pextrb or Mnemonic.Pextrw or Mnemonic.Pextrd
        or Mnemonic.Pextrq or Mnemonic.Pinsrb or Mnemonic.Pinsrd or Mnemonic.Pinsrq or Mnemonic.Insertps or Mnemonic.Movntdqa
        or Mnemonic.Mpsadbw or Mnemonic.Phminposuw || IsStringCompare(m);

    private static bool IsStringCompare(Mnemonic m) => m is Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm
        or Mnemonic.Pcmpestrm64 or Mnemonic.Pcmpistri or Mnemonic.Pcmpistrm;

    // PCMPESTRI/M and PCMPISTRI/M: the comparison imm[3:2] of the string in the second operand
    // against the first, lengths from rAX/rDX (explicit) or the first zero element (implicit);
    // the result bits become an index in ECX or a mask in XMM0, and CF, ZF, SF and OF report.
    private bool StringCompare(Mnemonic m, int imm)
    {
        if (!Operand128(1, false, out UInt128 b))
            return false;
        UInt128 a = Xmm(0);
        bool words = (imm & 1) != 0;
        int n = words ? 8 : 16;
        int la, lb;
        if (m is Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64)
        {
            bool wide = m is Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64;
            la = ExplicitLength(_gpr[0], wide, n);
            lb = ExplicitLength(_gpr[2], wide, n);
        }
        else
        {
            la = ImplicitLength(a, words);
            lb = ImplicitLength(b, words);
        }
        int result = StringResult(a, b, la, lb, imm);
        if (m is Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpistri)
        {
            int index = result == 0 ? n : (imm & 0x40) != 0 ? 31 - BitOperations.LeadingZeroCount((uint)result) : BitOperations.TrailingZeroCount(result);
            Set(Register.ECX, (uint)index);
        }
        else if ((imm & 0x40) != 0)
        {
            // One all-ones element per result bit.
            int width = words ? 2 : 1;
            UInt128 mask = 0;
            for (int k = 0; k < n; k++)
            {
                if (((result >> k) & 1) != 0)
                    mask |= LaneMask(width) << (8 * width * k);
            }
            _area.Xmm[0] = mask;
        }
        else
            _area.Xmm[0] = (uint)result;
        ulong f = Flags & ~Rflags.Status;
        if (result != 0)
            f |= Rflags.CF;
        if (lb < n)
            f |= Rflags.ZF;
        if (la < n)
            f |= Rflags.SF;
        if ((result & 1) != 0)
            f |= Rflags.OF;
        Flags = f;
        return true;
    }

    // The absolute value of rAX or rDX (32 or 64 bits, signed), at most n.
    private static int ExplicitLength(ulong raw, bool wide, int n)
    {
        long v = wide ? (long)raw : (int)(uint)raw;
        ulong magnitude = v < 0 ? (ulong)(-(v + 1)) + 1 : (ulong)v;
        return magnitude >= (ulong)n ? n : (int)magnitude;
    }

    private static int ImplicitLength(UInt128 v, bool words)
    {
        int width = words ? 2 : 1;
        for (int k = 0; k < 16 / width; k++)
        {
            if (LaneOf(v, width, k) == 0)
                return k;
        }
        return 16 / width;
    }

    // The comparison's result bits after the polarity imm[5:4]: a holds the set, ranges or
    // needle (length la), b the string searched (length lb); element pairs beyond a length
    // compare as the SDM's table says for each aggregation.
    private static int StringResult(UInt128 a, UInt128 b, int la, int lb, int imm)
    {
        bool words = (imm & 1) != 0, signed = (imm & 2) != 0;
        int n = words ? 8 : 16, width = words ? 2 : 1;
        long A(int k) => signed ? Alu.SignExtend(LaneOf(a, width, k), width) : (long)LaneOf(a, width, k);
        long B(int k) => signed ? Alu.SignExtend(LaneOf(b, width, k), width) : (long)LaneOf(b, width, k);
        int result = 0;
        for (int j = 0; j < n; j++)
        {
            bool bit = false;
            switch ((imm >> 2) & 3)
            {
                case 0: // equal any: b[j] is one of a's elements
                    for (int k = 0; j < lb && k < la && !bit; k++)
                        bit = A(k) == B(j);
                    break;
                case 1: // ranges: b[j] within one of a's pairs (low, high)
                    for (int k = 0; j < lb && k + 1 < la && !bit; k += 2)
                        bit = A(k) <= B(j) && B(j) <= A(k + 1);
                    break;
                case 2: // equal each: beyond both lengths the elements match, beyond one they do not
                    bit = j < la && j < lb ? A(j) == B(j) : j >= la && j >= lb;
                    break;
                default: // equal ordered: a as a substring of b starting at j
                    bit = true;
                    for (int k = 0; k < n - j && k < la; k++)
                    {
                        if (j + k >= lb || A(k) != B(j + k))
                        {
                            bit = false;
                            break;
                        }
                    }
                    break;
            }
            if (bit)
                result |= 1 << j;
        }
        return ((imm >> 4) & 3) switch
        {
            1 => ~result & ((1 << n) - 1),
            3 => result ^ ((1 << lb) - 1), // negated within b's length only
            _ => result,
        };
    }
}
