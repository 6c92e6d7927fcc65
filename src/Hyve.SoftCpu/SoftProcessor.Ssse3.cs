// SSE3 and SSSE3, which the CPUID policy offers at x86-64-v2 (CpuFeatures gates them): the
// alternating and horizontal floating-point forms and the duplicating moves of SSE3 (its lanes
// through SimdFloat, so MXCSR rounds and records as for SSE2), LDDQU, and SSSE3's packed-integer
// set (PSHUFB, the horizontal adds and subtracts, PMADDUBSW, PMULHRSW, PSIGN, PABS, PALIGNR) on
// XMM registers and, for SSSE3, on MMX registers too.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private static bool IsSsse3(Mnemonic m) => m is Mnemonic.Pshufb or Mnemonic.Phaddw or Mnemonic.Phaddd or Mnemonic.Phaddsw
        or Mnemonic.Pmaddubsw or Mnemonic.Phsubw or Mnemonic.Phsubd or Mnemonic.Phsubsw or Mnemonic.Psignb or Mnemonic.Psignw
        or Mnemonic.Psignd or Mnemonic.Pmulhrsw or Mnemonic.Pabsb or Mnemonic.Pabsw or Mnemonic.Pabsd or Mnemonic.Palignr;

    // SSE3's instructions on XMM registers; true when completed (or raised), false with handled
    // clear when the mnemonic is not one of them.
    private bool Sse3(ulong next, out bool handled)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        handled = true;
        CpuFeatures needed = IsSsse3(m) ? CpuFeatures.Ssse3 : m is Mnemonic.Addsubps or Mnemonic.Addsubpd or Mnemonic.Haddps
            or Mnemonic.Haddpd or Mnemonic.Hsubps or Mnemonic.Hsubpd or Mnemonic.Movshdup or Mnemonic.Movsldup or Mnemonic.Movddup
            or Mnemonic.Lddqu ? CpuFeatures.Sse3 : CpuFeatures.None;
        if (needed != CpuFeatures.None && (_features & needed) == 0)
            return Raise(ExceptionVector.UD);
        switch (m)
        {
            case Mnemonic.Addsubps or Mnemonic.Addsubpd or Mnemonic.Haddps or Mnemonic.Haddpd or Mnemonic.Hsubps or Mnemonic.Hsubpd:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    UInt128 a = Xmm(0);
                    bool dbl = m is Mnemonic.Addsubpd or Mnemonic.Haddpd or Mnemonic.Hsubpd;
                    int width = dbl ? 64 : 32, lanes = 128 / width;
                    ulong laneMask = dbl ? ulong.MaxValue : 0xFFFF_FFFF;
                    var c = new SimdControl(_mxcsr);
                    UInt128 r = 0;
                    for (int k = 0; k < lanes; k++)
                    {
                        ulong x, y;
                        FloatOp op;
                        if (m is Mnemonic.Addsubps or Mnemonic.Addsubpd)
                        {
                            x = (ulong)(a >> (width * k)) & laneMask;
                            y = (ulong)(b >> (width * k)) & laneMask;
                            op = (k & 1) == 0 ? FloatOp.Sub : FloatOp.Add; // subtract in the even lanes
                        }
                        else
                        {
                            // The low half of the result pairs a's lanes, the high half b's.
                            UInt128 src = k < lanes / 2 ? a : b;
                            int pair = 2 * (k % (lanes / 2));
                            x = (ulong)(src >> (width * pair)) & laneMask;
                            y = (ulong)(src >> (width * (pair + 1))) & laneMask;
                            op = m is Mnemonic.Haddps or Mnemonic.Haddpd ? FloatOp.Add : FloatOp.Sub;
                        }
                        r |= (UInt128)(SimdFloat.Arithmetic(op, dbl, x, y, ref c) & laneMask) << (width * k);
                    }
                    if (!CommitSimd(c.Flags))
                        return false;
                    Xmm(0) = r;
                    break;
                }
            case Mnemonic.Movshdup or Mnemonic.Movsldup:
                {
                    if (!Operand128(1, true, out UInt128 s))
                        return false;
                    int from = m == Mnemonic.Movshdup ? 32 : 0;
                    UInt128 lo = (s >> from) & 0xFFFF_FFFF, hi = (s >> (64 + from)) & 0xFFFF_FFFF;
                    Xmm(0) = lo | (lo << 32) | (hi << 64) | (hi << 96);
                    break;
                }
            case Mnemonic.Movddup:
                {
                    if (!Low(1, 8, out ulong v))
                        return false;
                    Xmm(0) = v | ((UInt128)v << 64);
                    break;
                }
            case Mnemonic.Lddqu:
                {
                    if (!Operand128(1, false, out UInt128 v))
                        return false;
                    Xmm(0) = v;
                    break;
                }
            case var _ when IsSsse3(m):
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    Xmm(0) = PackedSsse3(m, Xmm(0), b, 16, (int)(i.Immediate & 0xFF));
                    break;
                }
            default:
                handled = false;
                return false;
        }
        _rip = next;
        return true;
    }

    // SSSE3's packed-integer forms over a register of the given bytes (16 for XMM, 8 for MMX).
    private static UInt128 PackedSsse3(Mnemonic m, UInt128 a, UInt128 b, int bytes, int imm)
    {
        UInt128 mask = bytes == 16 ? UInt128.MaxValue : ulong.MaxValue;
        a &= mask;
        b &= mask;
        switch (m)
        {
            case Mnemonic.Pshufb:
                {
                    UInt128 r = 0;
                    for (int k = 0; k < bytes; k++)
                    {
                        int sel = (int)(b >> (8 * k)) & 0xFF;
                        if ((sel & 0x80) == 0)
                            r |= ((a >> (8 * (sel & (bytes - 1)))) & 0xFF) << (8 * k);
                    }
                    return r;
                }
            case Mnemonic.Palignr:
                {
                    // The concatenation b (low) : a (high), shifted right by imm bytes.
                    if (imm >= 2 * bytes)
                        return 0;
                    UInt128 low = imm >= bytes ? a >> (8 * (imm - bytes)) : (b >> (8 * imm)) | (imm == 0 ? 0 : a << (8 * (bytes - imm)));
                    return low & mask;
                }
        }
        int width = m is Mnemonic.Phaddd or Mnemonic.Phsubd or Mnemonic.Psignd or Mnemonic.Pabsd ? 4
            : m is Mnemonic.Psignb or Mnemonic.Pabsb ? 1 : 2;
        int n = bytes / width;
        ulong laneMask = width == 8 ? ulong.MaxValue : (1UL << (8 * width)) - 1;
        long Lane(UInt128 v, int k) => Alu.SignExtend((ulong)(v >> (8 * width * k)) & laneMask, width);
        UInt128 result = 0;
        for (int k = 0; k < n; k++)
        {
            long v;
            switch (m)
            {
                case Mnemonic.Phaddw or Mnemonic.Phaddd or Mnemonic.Phaddsw or Mnemonic.Phsubw or Mnemonic.Phsubd or Mnemonic.Phsubsw:
                    {
                        UInt128 src = k < n / 2 ? a : b;
                        int pair = 2 * (k % (n / 2));
                        long x = Lane(src, pair), y = Lane(src, pair + 1);
                        bool sub = m is Mnemonic.Phsubw or Mnemonic.Phsubd or Mnemonic.Phsubsw;
                        v = sub ? x - y : x + y;
                        if (m is Mnemonic.Phaddsw or Mnemonic.Phsubsw)
                            v = Math.Clamp(v, short.MinValue, short.MaxValue);
                        break;
                    }
                case Mnemonic.Pmaddubsw:
                    {
                        // Unsigned bytes of a times signed bytes of b, pairs summed with saturation.
                        long sum = 0;
                        for (int h = 0; h < 2; h++)
                        {
                            int at = 16 * k + 8 * h;
                            sum += (long)(byte)(a >> at) * (sbyte)(byte)(b >> at);
                        }
                        v = Math.Clamp(sum, short.MinValue, short.MaxValue);
                        break;
                    }
                case Mnemonic.Pmulhrsw:
                    v = (((Lane(a, k) * Lane(b, k)) >> 14) + 1) >> 1;
                    break;
                case Mnemonic.Psignb or Mnemonic.Psignw or Mnemonic.Psignd:
                    {
                        long s = Lane(b, k);
                        v = s < 0 ? -Lane(a, k) : s == 0 ? 0 : Lane(a, k);
                        break;
                    }
                default: // PABSB/W/D of the source
                    v = Math.Abs(Lane(b, k));
                    break;
            }
            result |= (UInt128)((ulong)v & laneMask) << (8 * width * k);
        }
        return result;
    }
}
