// The rest of SSE and SSE2 that compiled code and C libraries use: scalar and half-register
// moves, the saturating, averaging, min/max, multiply and pack forms of the packed integer set,
// word shuffles and inserts, SHUFPS/SHUFPD (the float unpacks are Sse's). The floating-point
// arithmetic, comparisons and conversions are SseFloat's, by MXCSR.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private ref UInt128 Xmm(int k) => ref _area.Xmm[_insn.GetRegister(k) - Register.XMM0];

    private bool IsXmmOperand(int k) => _insn.GetOperandKind(k) == OperandKind.Register && IsXmm(_insn.GetRegister(k));

    // Operand k's low size bytes: an XMM register's low lanes or memory (no alignment needed).
    private bool Low(int k, int size, out ulong value)
    {
        if (_insn.GetOperandKind(k) == OperandKind.Register)
        {
            Register r = _insn.GetRegister(k);
            value = IsXmm(r) ? (ulong)_area.Xmm[r - Register.XMM0] & Alu.Mask(size) : Get(r) & Alu.Mask(size);
            return true;
        }
        return Read(_insn.MemorySegment, Ea(), size, out value);
    }

    // The SSE/SSE2 instructions beyond Sse(): true when completed (or raised).
    private bool SseMore(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Movss or Mnemonic.Movsd:
                {
                    int size = m == Mnemonic.Movss ? 4 : 8;
                    if (!IsXmmOperand(0))
                    {
                        if (!Write(i.MemorySegment, Ea(), size, (ulong)Xmm(1) & Alu.Mask(size)))
                            return false;
                        break;
                    }
                    if (!Low(1, size, out ulong v))
                        return false;
                    ref UInt128 d = ref Xmm(0);
                    // From memory the rest is cleared; from a register it is kept.
                    d = IsXmmOperand(1) ? (d & ~(UInt128)Alu.Mask(size)) | v : v;
                    break;
                }
            case Mnemonic.Movhps or Mnemonic.Movhpd or Mnemonic.Movlps or Mnemonic.Movlpd or Mnemonic.Movhlps or Mnemonic.Movlhps:
                {
                    bool high = m is Mnemonic.Movhps or Mnemonic.Movhpd or Mnemonic.Movlhps;
                    if (!IsXmmOperand(0))
                    {
                        UInt128 s = Xmm(1);
                        if (!Write(i.MemorySegment, Ea(), 8, (ulong)(high ? s >> 64 : s)))
                            return false;
                        break;
                    }
                    ulong v;
                    if (m == Mnemonic.Movhlps)
                        v = (ulong)(Xmm(1) >> 64);
                    else if (!Low(1, 8, out v))
                        return false;
                    ref UInt128 d = ref Xmm(0);
                    d = high ? (d & ulong.MaxValue) | ((UInt128)v << 64) : (d & ~(UInt128)ulong.MaxValue) | v;
                    break;
                }
            case Mnemonic.Movmskps or Mnemonic.Movmskpd:
                {
                    UInt128 v = Xmm(1);
                    int width = m == Mnemonic.Movmskps ? 32 : 64;
                    uint mask = 0;
                    for (int k = 0; k < 128 / width; k++)
                        mask |= (uint)((v >> (width * k + width - 1)) & 1) << k;
                    Set(i.GetRegister(0), mask);
                    break;
                }
            case Mnemonic.Pminub or Mnemonic.Pmaxub or Mnemonic.Pminsw or Mnemonic.Pmaxsw or Mnemonic.Pcmpgtb or Mnemonic.Pcmpgtw
                or Mnemonic.Pcmpgtd or Mnemonic.Paddusb or Mnemonic.Paddusw or Mnemonic.Psubusb or Mnemonic.Psubusw
                or Mnemonic.Paddsb or Mnemonic.Paddsw or Mnemonic.Psubsb or Mnemonic.Psubsw or Mnemonic.Pavgb or Mnemonic.Pavgw
                or Mnemonic.Pmullw or Mnemonic.Pmulhw or Mnemonic.Pmulhuw or Mnemonic.Pmuludq or Mnemonic.Pmaddwd or Mnemonic.Psadbw
                or Mnemonic.Packuswb or Mnemonic.Packsswb or Mnemonic.Packssdw:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref Xmm(0);
                    a = m is Mnemonic.Pmuludq or Mnemonic.Pmaddwd or Mnemonic.Psadbw ? WideLanes(m, a, b)
                        : m is Mnemonic.Packuswb or Mnemonic.Packsswb or Mnemonic.Packssdw ? Pack(m, a, b)
                        : IntegerLanes(m, a, b);
                    break;
                }
            case Mnemonic.Pshuflw or Mnemonic.Pshufhw:
                {
                    if (!Operand128(1, true, out UInt128 src))
                        return false;
                    int half = m == Mnemonic.Pshufhw ? 64 : 0;
                    UInt128 words = 0;
                    for (int k = 0; k < 4; k++)
                        words |= ((src >> (half + 16 * (int)((i.Immediate >> (2 * k)) & 3))) & 0xFFFF) << (half + 16 * k);
                    UInt128 kept = src & (half == 0 ? ~(UInt128)ulong.MaxValue : ulong.MaxValue);
                    Xmm(0) = kept | words;
                    break;
                }
            case Mnemonic.Pinsrw:
                {
                    if (!Low(1, 2, out ulong w))
                        return false;
                    int at = 16 * (int)(i.Immediate & 7);
                    ref UInt128 d = ref Xmm(0);
                    d = (d & ~((UInt128)0xFFFF << at)) | ((UInt128)w << at);
                    break;
                }
            case Mnemonic.Maskmovdqu:
                {
                    int first = i.OperandCount - 2; // after the implicit [rDI], when listed
                    if (!MaskedStore(Xmm(first), Xmm(first + 1), 16))
                        return false;
                    break;
                }
            case Mnemonic.Pextrw when IsXmmOperand(1) && i.GetOperandKind(0) == OperandKind.Register:
                Set(i.GetRegister(0), (ulong)(Xmm(1) >> (16 * (int)(i.Immediate & 7))) & 0xFFFF);
                break;
            case Mnemonic.Shufps or Mnemonic.Shufpd:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref Xmm(0);
                    UInt128 r = 0;
                    if (m == Mnemonic.Shufps)
                    {
                        for (int k = 0; k < 4; k++)
                        {
                            UInt128 from = k < 2 ? a : b;
                            r |= ((from >> (32 * (int)((i.Immediate >> (2 * k)) & 3))) & 0xFFFF_FFFF) << (32 * k);
                        }
                    }
                    else
                    {
                        r = ((a >> (64 * (int)(i.Immediate & 1))) & ulong.MaxValue)
                            | (((b >> (64 * (int)((i.Immediate >> 1) & 1))) & ulong.MaxValue) << 64);
                    }
                    a = r;
                    break;
                }
            default:
                return SseFloat(next);
        }
        _rip = next;
        return true;
    }

    private static UInt128 IntegerLanes(Mnemonic m, UInt128 a, UInt128 b)
    {
        int width = m is Mnemonic.Pminub or Mnemonic.Pmaxub or Mnemonic.Pcmpgtb or Mnemonic.Paddusb or Mnemonic.Psubusb
            or Mnemonic.Paddsb or Mnemonic.Psubsb or Mnemonic.Pavgb ? 1 : m == Mnemonic.Pcmpgtd ? 4 : 2;
        ulong mask = Alu.Mask(width);
        long max = (long)(mask >> 1), min = -max - 1;
        UInt128 r = 0;
        for (int k = 0; k < 16 / width; k++)
        {
            int shift = 8 * width * k;
            ulong x = (ulong)(a >> shift) & mask, y = (ulong)(b >> shift) & mask;
            long sx = Alu.SignExtend(x, width), sy = Alu.SignExtend(y, width);
            ulong v = m switch
            {
                Mnemonic.Pminub => Math.Min(x, y),
                Mnemonic.Pmaxub => Math.Max(x, y),
                Mnemonic.Pminsw => (ulong)Math.Min(sx, sy),
                Mnemonic.Pmaxsw => (ulong)Math.Max(sx, sy),
                Mnemonic.Pcmpgtb or Mnemonic.Pcmpgtw or Mnemonic.Pcmpgtd => sx > sy ? ulong.MaxValue : 0,
                Mnemonic.Paddusb or Mnemonic.Paddusw => Math.Min(x + y, mask),
                Mnemonic.Psubusb or Mnemonic.Psubusw => x > y ? x - y : 0,
                Mnemonic.Paddsb or Mnemonic.Paddsw => (ulong)Math.Clamp(sx + sy, min, max),
                Mnemonic.Psubsb or Mnemonic.Psubsw => (ulong)Math.Clamp(sx - sy, min, max),
                Mnemonic.Pavgb or Mnemonic.Pavgw => (x + y + 1) >> 1,
                Mnemonic.Pmullw => (ulong)(sx * sy),
                Mnemonic.Pmulhw => (ulong)((sx * sy) >> 16),
                _ => (x * y) >> 16, // PMULHUW
            };
            r |= (UInt128)(v & mask) << shift;
        }
        return r;
    }

    private static UInt128 WideLanes(Mnemonic m, UInt128 a, UInt128 b)
    {
        UInt128 r = 0;
        for (int k = 0; k < 2; k++)
        {
            ulong x = (ulong)(a >> (64 * k)), y = (ulong)(b >> (64 * k));
            ulong v;
            if (m == Mnemonic.Pmuludq)
                v = (x & 0xFFFF_FFFF) * (y & 0xFFFF_FFFF);
            else if (m == Mnemonic.Pmaddwd)
            {
                v = 0;
                for (int d = 0; d < 2; d++)
                {
                    long sum = 0;
                    for (int w = 0; w < 2; w++)
                    {
                        int at = 32 * d + 16 * w;
                        sum += (long)(short)(x >> at) * (short)(y >> at);
                    }
                    v |= ((ulong)sum & 0xFFFF_FFFF) << (32 * d);
                }
            }
            else
            {
                ulong sum = 0; // PSADBW: the sum of the byte differences, in the low word
                for (int n = 0; n < 8; n++)
                {
                    int p = (int)((x >> (8 * n)) & 0xFF), q = (int)((y >> (8 * n)) & 0xFF);
                    sum += (ulong)Math.Abs(p - q);
                }
                v = sum;
            }
            r |= (UInt128)v << (64 * k);
        }
        return r;
    }

    private static UInt128 Pack(Mnemonic m, UInt128 a, UInt128 b)
    {
        int from = m == Mnemonic.Packssdw ? 4 : 2, to = from / 2;
        UInt128 r = 0;
        for (int k = 0; k < 16 / from * 2; k++)
        {
            UInt128 src = k < 16 / from ? a : b;
            long v = Alu.SignExtend((ulong)(src >> (8 * from * (k % (16 / from)))), from);
            long lo = m == Mnemonic.Packuswb ? 0 : -(1L << (8 * to - 1));
            long hi = m == Mnemonic.Packuswb ? 0xFF : (1L << (8 * to - 1)) - 1;
            r |= (UInt128)((ulong)Math.Clamp(v, lo, hi) & Alu.Mask(to)) << (8 * to * k);
        }
        return r;
    }
}
