// MMX: the 64-bit packed-integer instructions on MM0-MM7, which are the significands of the x87
// registers R0-R7. Every MMX instruction moves the x87 unit to MMX use (TOP 0, every register
// tagged in use) and a write to MMn sets Rn's sign and exponent to all ones; EMMS frees them all.
// The lane arithmetic is SSE's, run on the low 64 bits. Also here: the SSE-era additions on MMX
// registers (PSHUFW, PINSRW/PEXTRW, PMOVMSKB, MASKMOVQ, MOVNTQ, PMULUDQ, PADDQ/PSUBQ),
// MOVQ2DQ/MOVDQ2Q, and the conversions between MMX integers and SSE floats (CVTPI2PS/PD,
// CVT(T)PS2PI, CVT(T)PD2PI). CR0.EM raises #UD, CR0.TS #NM, a pending x87 error #MF.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private static bool IsMm(Register r) => r is >= Register.MM0 and <= Register.MM7;

    private bool IsMmOperand(int k) => _insn.OperandCount > k && _insn.GetOperandKind(k) == OperandKind.Register && IsMm(_insn.GetRegister(k));

    private static bool IsMmxConversion(Mnemonic m) => m is Mnemonic.Cvtpi2ps or Mnemonic.Cvtpi2pd or Mnemonic.Cvtps2pi
        or Mnemonic.Cvttps2pi or Mnemonic.Cvtpd2pi or Mnemonic.Cvttpd2pi;

    // Operand k as 64 bits: an MM register, an XMM register's low half, a general register or memory.
    private bool Operand64(int k, int size, out ulong value)
    {
        if (_insn.GetOperandKind(k) == OperandKind.Register)
        {
            Register r = _insn.GetRegister(k);
            value = IsMm(r) ? _area.Mm[r - Register.MM0] : IsXmm(r) ? (ulong)_area.Xmm[r - Register.XMM0] : Get(r);
            value &= Alu.Mask(size);
            return true;
        }
        return Read(_insn.MemorySegment, Ea(), size, out value);
    }

    private void SetMm(int k, ulong value)
    {
        int n = _insn.GetRegister(k) - Register.MM0;
        _area.Mm[n] = value;
        _fprHigh[n] = 0xFFFF;
    }

    // True when the instruction completed (RIP set); false when it raised.
    private bool Mmx(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        bool sseForm = IsMmxConversion(m) || m is Mnemonic.Movq2dq or Mnemonic.Movdq2q;
        if ((_cr0 & PagingState.Cr0EM) != 0 || (sseForm && (_cr4 & PagingState.Cr4OSFXSR) == 0))
            return Raise(ExceptionVector.UD);
        if ((_cr0 & PagingState.Cr0TS) != 0)
            return Raise(ExceptionVector.NM);
        // CVTPI2PS/PD from memory touch no MMX register and leave the x87 unit alone.
        bool mmxUse = IsMmOperand(0) || IsMmOperand(1);
        if (mmxUse && !PendingErrorAllowsExecution())
            return false;
        if (!MmxOperation(m))
            return false;
        if (mmxUse)
        {
            SetTop(0);
            _ftw = 0;
        }
        _rip = next;
        return true;
    }

    private bool MmxOperation(Mnemonic m)
    {
        ref readonly Instruction i = ref _insn;
        switch (m)
        {
            case Mnemonic.Movd or Mnemonic.Movq:
                {
                    int size = m == Mnemonic.Movd ? 4 : 8;
                    if (!Operand64(1, size, out ulong v))
                        return false;
                    if (IsMmOperand(0))
                        SetMm(0, v);
                    else if (i.GetOperandKind(0) == OperandKind.Register)
                        Set(i.GetRegister(0), v); // MOVD r32 zero-extends, as a 32-bit write does
                    else if (!Write(i.MemorySegment, Ea(), size, v))
                        return false;
                    return true;
                }
            case Mnemonic.Movntq:
                return Operand64(1, 8, out ulong stored) && Write(i.MemorySegment, Ea(), 8, stored);
            case Mnemonic.Movq2dq:
                _area.Xmm[i.GetRegister(0) - Register.XMM0] = _area.Mm[i.GetRegister(1) - Register.MM0];
                return true;
            case Mnemonic.Movdq2q:
                SetMm(0, (ulong)_area.Xmm[i.GetRegister(1) - Register.XMM0]);
                return true;
            case Mnemonic.Pmovmskb:
                Set(i.GetRegister(0), ByteSigns(_area.Mm[i.GetRegister(1) - Register.MM0], 8));
                return true;
            case Mnemonic.Pextrw:
                Set(i.GetRegister(0), (_area.Mm[i.GetRegister(1) - Register.MM0] >> (16 * (int)(i.Immediate & 3))) & 0xFFFF);
                return true;
            case Mnemonic.Pinsrw:
                {
                    if (!Operand64(1, 2, out ulong w))
                        return false;
                    int at = 16 * (int)(i.Immediate & 3);
                    ulong d = _area.Mm[i.GetRegister(0) - Register.MM0];
                    SetMm(0, (d & ~(0xFFFFUL << at)) | (w << at));
                    return true;
                }
            case Mnemonic.Pshufw:
                {
                    if (!Operand64(1, 8, out ulong src))
                        return false;
                    ulong r = 0;
                    for (int k = 0; k < 4; k++)
                        r |= ((src >> (16 * (int)((i.Immediate >> (2 * k)) & 3))) & 0xFFFF) << (16 * k);
                    SetMm(0, r);
                    return true;
                }
            case Mnemonic.Maskmovq:
                {
                    // The decoder lists the implicit [rDI] first when it names it.
                    int first = i.OperandCount - 2;
                    return MaskedStore(_area.Mm[i.GetRegister(first) - Register.MM0], _area.Mm[i.GetRegister(first + 1) - Register.MM0], 8);
                }
            case Mnemonic.Psrlw or Mnemonic.Psrld or Mnemonic.Psrlq or Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq
                or Mnemonic.Psraw or Mnemonic.Psrad:
                {
                    ulong count;
                    if (i.GetOperandKind(1) is >= OperandKind.Immediate8 and <= OperandKind.Immediate64)
                        count = i.Immediate & 0xFF;
                    else if (!Operand64(1, 8, out count))
                        return false;
                    SetMm(0, (ulong)Shift(m, _area.Mm[i.GetRegister(0) - Register.MM0], count, 8));
                    return true;
                }
            case var _ when IsMmxConversion(m):
                return MmxConversion(m);
            default:
                {
                    if (!IsMmOperand(0))
                        return RaiseUnimplemented(); // no MMX form has another destination
                    if (IsSsse3(m) && (_features & CpuFeatures.Ssse3) == 0)
                        return Raise(ExceptionVector.UD); // SSSE3 hidden by CPUID
                    if (!Operand64(1, 8, out ulong b))
                        return false;
                    ulong a = _area.Mm[i.GetRegister(0) - Register.MM0];
                    UInt128? r = m switch
                    {
                        Mnemonic.Pxor or Mnemonic.Por or Mnemonic.Pand or Mnemonic.Pandn => Logic(m, a, b),
                        Mnemonic.Paddb or Mnemonic.Paddw or Mnemonic.Paddd or Mnemonic.Paddq or Mnemonic.Psubb or Mnemonic.Psubw
                            or Mnemonic.Psubd or Mnemonic.Psubq or Mnemonic.Pcmpeqb or Mnemonic.Pcmpeqw or Mnemonic.Pcmpeqd => Lanes(m, a, b),
                        Mnemonic.Pmuludq or Mnemonic.Pmaddwd or Mnemonic.Psadbw => WideLanes(m, a, b),
                        // The 128-bit pack takes 16 bytes of each source: give it both MMX sources in one.
                        Mnemonic.Packuswb or Mnemonic.Packsswb or Mnemonic.Packssdw => Pack(m, a | ((UInt128)b << 64), 0),
                        Mnemonic.Punpcklbw or Mnemonic.Punpcklwd or Mnemonic.Punpckldq or Mnemonic.Punpckhbw or Mnemonic.Punpckhwd
                            or Mnemonic.Punpckhdq => Unpack(m, a, b, 32),
                        Mnemonic.Pminub or Mnemonic.Pmaxub or Mnemonic.Pminsw or Mnemonic.Pmaxsw or Mnemonic.Pcmpgtb or Mnemonic.Pcmpgtw
                            or Mnemonic.Pcmpgtd or Mnemonic.Paddusb or Mnemonic.Paddusw or Mnemonic.Psubusb or Mnemonic.Psubusw
                            or Mnemonic.Paddsb or Mnemonic.Paddsw or Mnemonic.Psubsb or Mnemonic.Psubsw or Mnemonic.Pavgb or Mnemonic.Pavgw
                            or Mnemonic.Pmullw or Mnemonic.Pmulhw or Mnemonic.Pmulhuw => IntegerLanes(m, a, b),
                        _ when IsSsse3(m) => PackedSsse3(m, a, b, 8, (int)(i.Immediate & 0xFF)),
                        _ => null,
                    };
                    if (r is not UInt128 result)
                        return RaiseUnimplemented(); // 3DNow!, which CPUID does not offer
                    SetMm(0, (ulong)result);
                    return true;
                }
        }
    }

    // CVTPI2PS/PD: two 32-bit integers to floats; CVT(T)PS2PI and CVT(T)PD2PI: two floats to
    // integers. MXCSR rounds and records as for the XMM forms.
    private bool MmxConversion(Mnemonic m)
    {
        ref readonly Instruction i = ref _insn;
        var c = new SimdControl(_mxcsr);
        switch (m)
        {
            case Mnemonic.Cvtpi2ps or Mnemonic.Cvtpi2pd:
                {
                    if (!Operand64(1, 8, out ulong s))
                        return false;
                    bool dbl = m == Mnemonic.Cvtpi2pd;
                    ulong lo = SimdFloat.FromInteger((int)s, dbl, ref c), hi = SimdFloat.FromInteger((int)(s >> 32), dbl, ref c);
                    if (!CommitSimd(c.Flags))
                        return false;
                    ref UInt128 d = ref _area.Xmm[i.GetRegister(0) - Register.XMM0];
                    d = dbl ? lo | ((UInt128)hi << 64) : (d & ~(UInt128)ulong.MaxValue) | lo | (hi << 32); // PS keeps the upper half
                    return true;
                }
            case Mnemonic.Cvtps2pi or Mnemonic.Cvttps2pi:
                {
                    if (!Operand64(1, 8, out ulong s))
                        return false;
                    bool truncate = m == Mnemonic.Cvttps2pi;
                    ulong r = SimdFloat.ToInteger(false, s & 0xFFFF_FFFF, 4, truncate, ref c) | (SimdFloat.ToInteger(false, s >> 32, 4, truncate, ref c) << 32);
                    if (!CommitSimd(c.Flags))
                        return false;
                    SetMm(0, r);
                    return true;
                }
            default: // CVTPD2PI, CVTTPD2PI: a 128-bit source, aligned in memory
                {
                    if (!Operand128(1, true, out UInt128 s))
                        return false;
                    bool truncate = m == Mnemonic.Cvttpd2pi;
                    ulong r = SimdFloat.ToInteger(true, (ulong)s, 4, truncate, ref c) | (SimdFloat.ToInteger(true, (ulong)(s >> 64), 4, truncate, ref c) << 32);
                    if (!CommitSimd(c.Flags))
                        return false;
                    SetMm(0, r);
                    return true;
                }
        }
    }

    // MASKMOVQ and MASKMOVDQU: the bytes of data whose mask byte has its top bit set, to DS:rDI
    // (a segment prefix replaces DS); every byte is checked before any is written, so a fault
    // leaves memory as it was.
    private bool MaskedStore(UInt128 data, UInt128 mask, int bytes)
    {
        ref readonly Instruction i = ref _insn;
        ulong at = _gpr[7] & Alu.Mask(i.AddressSize);
        Register seg = i.SegmentPrefix != Register.None ? i.SegmentPrefix : Register.DS;
        for (int pass = 0; pass < 2; pass++)
        {
            for (int k = 0; k < bytes; k++)
            {
                if (((mask >> (8 * k + 7)) & 1) == 0)
                    continue;
                ulong la = (at + (ulong)k) & Alu.Mask(i.AddressSize);
                if (pass == 0 ? !Read(seg, la, 1, out _, forWrite: true) : !Write(seg, la, 1, (ulong)(data >> (8 * k)) & 0xFF))
                    return false;
            }
        }
        return true;
    }
}
