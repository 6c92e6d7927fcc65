// The SSE/SSE2 instructions the software CPU runs so far: the 128-bit moves (aligned ones raise
// #GP on a misaligned address), MOVD/MOVQ between XMM, general registers and memory, the bitwise
// logic of both the integer and floating-point forms, packed integer add/subtract/compare,
// PMOVMSKB, PSHUFD, the byte and quadword shifts and the unpacks (the rest is in SseMore and
// SseFloat). CR0.EM raises #UD, CR0.TS #NM, and CR4.OSFXSR clear raises #UD.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private static bool IsXmm(Register r) => r is >= Register.XMM0 and <= Register.XMM15;

    // True: the instruction is one of these and completed (or raised); false with handled = false
    // when it is not an SSE instruction this file knows.
    private bool Sse(ulong next, out bool handled)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        handled = true;
        if (IsMmOperand(0) || IsMmOperand(1) || IsMmxConversion(m))
            return Mmx(next);
        bool xmm0 = i.OperandCount > 0 && i.GetOperandKind(0) == OperandKind.Register && IsXmm(i.GetRegister(0));
        bool xmm1 = i.OperandCount > 1 && i.GetOperandKind(1) == OperandKind.Register && IsXmm(i.GetRegister(1));
        // The conversions to an integer also take their source from memory (no XMM operand then).
        if (!xmm0 && !xmm1 && m is not (Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si or Mnemonic.Cvtss2si or Mnemonic.Cvtsd2si))
        {
            handled = false;
            return false;
        }
        // A VEX instruction running as its SSE form has had its own checks (CR4.OSXSAVE, XCR0).
        if (!_vexLane && ((_cr0 & PagingState.Cr0EM) != 0 || (_cr4 & PagingState.Cr4OSFXSR) == 0))
            return Raise(ExceptionVector.UD);
        if ((_cr0 & PagingState.Cr0TS) != 0)
            return Raise(ExceptionVector.NM);
        switch (m)
        {
            case Mnemonic.Movdqa or Mnemonic.Movdqu or Mnemonic.Movaps or Mnemonic.Movups or Mnemonic.Movapd or Mnemonic.Movupd
                or Mnemonic.Movntdq or Mnemonic.Movntps or Mnemonic.Movntpd:
                {
                    bool aligned = m is not (Mnemonic.Movdqu or Mnemonic.Movups or Mnemonic.Movupd);
                    if (!Operand128(1, aligned, out UInt128 v) || !Store128(0, aligned, v))
                        return false;
                    break;
                }
            case Mnemonic.Movd or Mnemonic.Movq:
                {
                    int size = m == Mnemonic.Movd ? 4 : 8;
                    if (xmm0)
                    {
                        ulong v;
                        if (xmm1)
                            v = (ulong)_area.Xmm[i.GetRegister(1) - Register.XMM0];
                        else if (i.GetOperandKind(1) == OperandKind.Register)
                            v = Get(i.GetRegister(1));
                        else if (!Read(i.MemorySegment, Ea(), size, out v))
                            return false;
                        _area.Xmm[i.GetRegister(0) - Register.XMM0] = v & Alu.Mask(size); // zero-extended to 128 bits
                    }
                    else
                    {
                        ulong v = (ulong)_area.Xmm[i.GetRegister(1) - Register.XMM0] & Alu.Mask(size);
                        if (i.GetOperandKind(0) == OperandKind.Register)
                            Set(i.GetRegister(0), v);
                        else if (!Write(i.MemorySegment, Ea(), size, v))
                            return false;
                    }
                    break;
                }
            case Mnemonic.Pxor or Mnemonic.Xorps or Mnemonic.Xorpd or Mnemonic.Por or Mnemonic.Orps or Mnemonic.Orpd
                or Mnemonic.Pand or Mnemonic.Andps or Mnemonic.Andpd or Mnemonic.Pandn or Mnemonic.Andnps or Mnemonic.Andnpd:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref _area.Xmm[i.GetRegister(0) - Register.XMM0];
                    a = Logic(m, a, b);
                    break;
                }
            case Mnemonic.Paddb or Mnemonic.Paddw or Mnemonic.Paddd or Mnemonic.Paddq
                or Mnemonic.Psubb or Mnemonic.Psubw or Mnemonic.Psubd or Mnemonic.Psubq
                or Mnemonic.Pcmpeqb or Mnemonic.Pcmpeqw or Mnemonic.Pcmpeqd:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref _area.Xmm[i.GetRegister(0) - Register.XMM0];
                    a = Lanes(m, a, b);
                    break;
                }
            case Mnemonic.Pmovmskb:
                Set(i.GetRegister(0), ByteSigns(_area.Xmm[i.GetRegister(1) - Register.XMM0], 16));
                break;
            case Mnemonic.Pshufd:
                {
                    if (!Operand128(1, true, out UInt128 src))
                        return false;
                    UInt128 r = 0;
                    for (int k = 0; k < 4; k++)
                        r |= ((src >> (32 * (int)((i.Immediate >> (2 * k)) & 3))) & 0xFFFF_FFFF) << (32 * k);
                    _area.Xmm[i.GetRegister(0) - Register.XMM0] = r;
                    break;
                }
            case Mnemonic.Psrldq or Mnemonic.Pslldq:
                {
                    int bytes = (int)Math.Min(i.Immediate & 0xFF, 16);
                    ref UInt128 a = ref _area.Xmm[i.GetRegister(0) - Register.XMM0];
                    a = bytes == 16 ? 0 : m == Mnemonic.Psrldq ? a >> (8 * bytes) : a << (8 * bytes);
                    break;
                }
            case Mnemonic.Punpcklbw or Mnemonic.Punpcklwd or Mnemonic.Punpckldq or Mnemonic.Punpcklqdq
                or Mnemonic.Punpckhbw or Mnemonic.Punpckhwd or Mnemonic.Punpckhdq or Mnemonic.Punpckhqdq
                or Mnemonic.Unpcklps or Mnemonic.Unpckhps or Mnemonic.Unpcklpd or Mnemonic.Unpckhpd:
                {
                    if (!Operand128(1, true, out UInt128 b))
                        return false;
                    ref UInt128 a = ref _area.Xmm[i.GetRegister(0) - Register.XMM0];
                    a = Unpack(m, a, b, 64);
                    break;
                }
            case Mnemonic.Psrlw or Mnemonic.Psrld or Mnemonic.Psrlq or Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq
                or Mnemonic.Psraw or Mnemonic.Psrad:
                {
                    ulong count;
                    if (i.OperandCount > 1 && i.GetOperandKind(1) is >= OperandKind.Immediate8 and <= OperandKind.Immediate64)
                        count = i.Immediate & 0xFF;
                    else if (Operand128(1, true, out UInt128 c))
                        count = (ulong)c;
                    else
                        return false;
                    ref UInt128 a = ref _area.Xmm[i.GetRegister(0) - Register.XMM0];
                    a = Shift(m, a, count, 16);
                    break;
                }
            default:
                return SseMore(next);
        }
        _rip = next;
        return true;
    }

    // PMOVMSKB: the top bit of each of the low bytes of v.
    private static uint ByteSigns(UInt128 v, int bytes)
    {
        uint mask = 0;
        for (int k = 0; k < bytes; k++)
            mask |= (uint)((v >> (8 * k + 7)) & 1) << k;
        return mask;
    }

    private static UInt128 Logic(Mnemonic m, UInt128 a, UInt128 b) => m switch
    {
        Mnemonic.Pxor or Mnemonic.Xorps or Mnemonic.Xorpd => a ^ b,
        Mnemonic.Por or Mnemonic.Orps or Mnemonic.Orpd => a | b,
        Mnemonic.Pand or Mnemonic.Andps or Mnemonic.Andpd => a & b,
        _ => ~a & b,
    };

    // Interleaves the low (or, for the high forms, the upper) halves of a and b element by element:
    // a0 b0 a1 b1 ...; half is the register's half in bits (64 for XMM, 32 for MMX).
    private static UInt128 Unpack(Mnemonic m, UInt128 a, UInt128 b, int half)
    {
        // UNPCKxPS interleaves dwords and UNPCKxPD quadwords, as PUNPCKxDQ and PUNPCKxQDQ.
        int width = m is Mnemonic.Punpcklbw or Mnemonic.Punpckhbw ? 1
            : m is Mnemonic.Punpcklwd or Mnemonic.Punpckhwd ? 2
            : m is Mnemonic.Punpckldq or Mnemonic.Punpckhdq or Mnemonic.Unpcklps or Mnemonic.Unpckhps ? 4 : 8;
        bool high = m is Mnemonic.Punpckhbw or Mnemonic.Punpckhwd or Mnemonic.Punpckhdq or Mnemonic.Punpckhqdq
            or Mnemonic.Unpckhps or Mnemonic.Unpckhpd;
        UInt128 x = high ? a >> half : a, y = high ? b >> half : b;
        UInt128 lane = ((UInt128)1 << (8 * width)) - 1, r = 0;
        for (int k = 0; k < half / 8 / width; k++)
        {
            r |= ((x >> (8 * width * k)) & lane) << (8 * width * 2 * k);
            r |= ((y >> (8 * width * k)) & lane) << (8 * width * (2 * k + 1));
        }
        return r;
    }

    // PSRL/PSLL/PSRA by count over a register of the given bytes (16 for XMM, 8 for MMX).
    private static UInt128 Shift(Mnemonic m, UInt128 a, ulong count, int bytes)
    {
        int width = m is Mnemonic.Psrlw or Mnemonic.Psllw or Mnemonic.Psraw ? 2 : m is Mnemonic.Psrld or Mnemonic.Pslld or Mnemonic.Psrad ? 4 : 8;
        ulong mask = Alu.Mask(width);
        UInt128 r = 0;
        for (int k = 0; k < bytes / width; k++)
        {
            ulong x = (ulong)(a >> (8 * width * k)) & mask;
            ulong v = m switch
            {
                Mnemonic.Psrlw or Mnemonic.Psrld or Mnemonic.Psrlq => count >= (ulong)(8 * width) ? 0 : x >> (int)count,
                Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq => count >= (ulong)(8 * width) ? 0 : x << (int)count,
                _ => (ulong)(Alu.SignExtend(x, width) >> (int)Math.Min(count, (ulong)(8 * width - 1))),
            };
            r |= (UInt128)(v & mask) << (8 * width * k);
        }
        return r;
    }

    private static UInt128 Lanes(Mnemonic m, UInt128 a, UInt128 b)
    {
        int width = m switch
        {
            Mnemonic.Paddb or Mnemonic.Psubb or Mnemonic.Pcmpeqb => 1,
            Mnemonic.Paddw or Mnemonic.Psubw or Mnemonic.Pcmpeqw => 2,
            Mnemonic.Paddd or Mnemonic.Psubd or Mnemonic.Pcmpeqd => 4,
            _ => 8,
        };
        ulong mask = Alu.Mask(width);
        UInt128 r = 0;
        for (int k = 0; k < 16 / width; k++)
        {
            int shift = 8 * width * k;
            ulong x = (ulong)(a >> shift) & mask, y = (ulong)(b >> shift) & mask;
            ulong v = m switch
            {
                Mnemonic.Paddb or Mnemonic.Paddw or Mnemonic.Paddd or Mnemonic.Paddq => x + y,
                Mnemonic.Psubb or Mnemonic.Psubw or Mnemonic.Psubd or Mnemonic.Psubq => x - y,
                _ => x == y ? ulong.MaxValue : 0,
            };
            r |= (UInt128)(v & mask) << shift;
        }
        return r;
    }

    // Operand k as 128 bits: an XMM register or 16 bytes of memory (aligned ones #GP otherwise).
    private bool Operand128(int k, bool aligned, out UInt128 value)
    {
        value = 0;
        if (_insn.GetOperandKind(k) == OperandKind.Register)
        {
            value = _area.Xmm[_insn.GetRegister(k) - Register.XMM0];
            return true;
        }
        ulong ea = Ea();
        if (aligned && (Linear(_insn.MemorySegment, ea) & 15) != 0)
            return Raise(ExceptionVector.GP);
        if (!Read(_insn.MemorySegment, ea, 8, out ulong lo) || !Read(_insn.MemorySegment, (ea + 8) & Alu.Mask(_insn.AddressSize), 8, out ulong hi))
            return false;
        value = ((UInt128)hi << 64) | lo;
        return true;
    }

    private bool Store128(int k, bool aligned, UInt128 value)
    {
        if (_insn.GetOperandKind(k) == OperandKind.Register)
        {
            _area.Xmm[_insn.GetRegister(k) - Register.XMM0] = value;
            return true;
        }
        ulong ea = Ea();
        Register seg = _insn.MemorySegment;
        if (aligned && (Linear(seg, ea) & 15) != 0)
            return Raise(ExceptionVector.GP);
        ulong second = (ea + 8) & Alu.Mask(_insn.AddressSize);
        // Both halves writable before either is written.
        if (!Read(seg, ea, 8, out _, forWrite: true) || !Read(seg, second, 8, out _, forWrite: true))
            return false;
        return Write(seg, ea, 8, (ulong)value) && Write(seg, second, 8, (ulong)(value >> 64));
    }
}
