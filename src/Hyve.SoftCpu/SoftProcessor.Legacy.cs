// The general-purpose instructions 64-bit mode dropped, which real-mode firmware, boot loaders
// and 16/32-bit systems run all the time: PUSHA/PUSHAD and POPA/POPAD, the decimal adjustments
// (DAA, DAS, AAA, AAS, AAM, AAD), SALC, ARPL, BOUND and the far-pointer loads LDS/LES, with
// LSS/LFS/LGS (which 64-bit mode kept). Each follows the SDM's operation section; the flags the
// SDM leaves undefined are left as the nearest arithmetic sets them.
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const byte VectorBr = 5;

    private static bool IsLegacy(Mnemonic m) => m is Mnemonic.Pusha or Mnemonic.Pushad or Mnemonic.Popa or Mnemonic.Popad
        or Mnemonic.Daa or Mnemonic.Das or Mnemonic.Aaa or Mnemonic.Aas or Mnemonic.Aam or Mnemonic.Aad or Mnemonic.Salc
        or Mnemonic.Arpl or Mnemonic.Bound or Mnemonic.Lds or Mnemonic.Les or Mnemonic.Lss or Mnemonic.Lfs or Mnemonic.Lgs;

    // True when the instruction completed (RIP set); false when it raised.
    private bool Legacy(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        bool kept64 = m is Mnemonic.Lss or Mnemonic.Lfs or Mnemonic.Lgs;
        if (_bitness == Bitness.Bits64 && !kept64)
            return Raise(ExceptionVector.UD);
        switch (m)
        {
            case Mnemonic.Pusha or Mnemonic.Pushad:
                if (!PushAll(i.OperandSize))
                    return false;
                break;
            case Mnemonic.Popa or Mnemonic.Popad:
                if (!PopAll(i.OperandSize))
                    return false;
                break;
            case Mnemonic.Daa or Mnemonic.Das:
                DecimalAdjust(m == Mnemonic.Das);
                break;
            case Mnemonic.Aaa or Mnemonic.Aas:
                AsciiAdjust(m == Mnemonic.Aas);
                break;
            case Mnemonic.Aam:
                {
                    ulong b = i.Immediate & 0xFF;
                    if (b == 0)
                        return Raise(ExceptionVector.DE);
                    ulong al = _gpr[0] & 0xFF;
                    SetAxWithFlags((al / b) << 8 | (al % b));
                    break;
                }
            case Mnemonic.Aad:
                SetAxWithFlags((_gpr[0] + (_gpr[0] >> 8 & 0xFF) * (i.Immediate & 0xFF)) & 0xFF);
                break;
            case Mnemonic.Salc:
                _gpr[0] = (_gpr[0] & ~0xFFUL) | ((Flags & Rflags.CF) != 0 ? 0xFFUL : 0);
                break;
            case Mnemonic.Arpl:
                {
                    if ((_cr0 & PagingState.Cr0PE) == 0 || (Flags & FlagVm) != 0)
                        return Raise(ExceptionVector.UD);
                    if (!Source(0, 2, out ulong dest, forWrite: true))
                        return false;
                    ulong src = Get(i.GetRegister(1));
                    bool raise = (dest & 3) < (src & 3);
                    if (raise && !Destination(2, (dest & ~3UL) | (src & 3)))
                        return false;
                    Flags = raise ? Flags | Rflags.ZF : Flags & ~Rflags.ZF;
                    break;
                }
            case Mnemonic.Bound:
                {
                    int size = i.OperandSize;
                    ulong ea = Ea();
                    if (!Read(i.MemorySegment, ea, size, out ulong lower)
                        || !Read(i.MemorySegment, (ea + (ulong)size) & Alu.Mask(i.AddressSize), size, out ulong upper))
                        return false;
                    long index = Alu.SignExtend(Get(i.GetRegister(0)), size);
                    if (index < Alu.SignExtend(lower, size) || index > Alu.SignExtend(upper, size))
                        return Raise(VectorBr);
                    break;
                }
            default: // LDS, LES, LSS, LFS, LGS
                {
                    int size = i.OperandSize;
                    ulong ea = Ea();
                    Register seg = m switch
                    {
                        Mnemonic.Lds => Register.DS,
                        Mnemonic.Les => Register.ES,
                        Mnemonic.Lss => Register.SS,
                        Mnemonic.Lfs => Register.FS,
                        _ => Register.GS,
                    };
                    // The pointer is read whole and the segment loaded before the register
                    // changes: a fault on either leaves both as they were.
                    if (!Read(i.MemorySegment, ea, size, out ulong offset)
                        || !Read(i.MemorySegment, (ea + (ulong)size) & Alu.Mask(i.AddressSize), 2, out ulong selector)
                        || !SegmentFor(seg, (ushort)selector, out Segment s))
                        return false;
                    LoadDataSegment(seg, in s);
                    Set(i.GetRegister(0), offset);
                    break;
                }
        }
        _rip = next;
        return true;
    }

    // PUSHA/PUSHAD: AX, CX, DX, BX, the SP from before the first push, BP, SI, DI; the stack
    // pointer moves only once all eight are written.
    private bool PushAll(int size)
    {
        int sw = StackWidth;
        ulong sp = _gpr[4];
        for (int k = 0; k < 8; k++)
        {
            ulong at = (sp - (ulong)((k + 1) * size)) & Alu.Mask(sw);
            if (!Write(Register.SS, at, size, _gpr[k] & Alu.Mask(size)))
                return false;
        }
        SetStackPointer((sp - (ulong)(8 * size)) & Alu.Mask(sw), sw);
        return true;
    }

    // POPA/POPAD: the reverse, the stored SP skipped; registers change only once all are read.
    private bool PopAll(int size)
    {
        int sw = StackWidth;
        ulong sp = _gpr[4];
        System.Span<ulong> v = stackalloc ulong[8];
        for (int k = 0; k < 8; k++)
        {
            if (!Read(Register.SS, (sp + (ulong)(k * size)) & Alu.Mask(sw), size, out v[7 - k]))
                return false;
        }
        for (int n = 0; n < 8; n++)
        {
            if (n != 4)
                Set(RegisterInfo.Gpr(n, size, false), v[n]);
        }
        SetStackPointer((sp + (ulong)(8 * size)) & Alu.Mask(sw), sw);
        return true;
    }

    // DAA and DAS: AL corrected after adding or subtracting two packed BCD bytes.
    private void DecimalAdjust(bool subtract)
    {
        ulong flags = Flags;
        ulong al = _gpr[0] & 0xFF, oldAl = al;
        bool oldCf = (flags & Rflags.CF) != 0, cf = false, af = false;
        if ((al & 0xF) > 9 || (flags & Rflags.AF) != 0)
        {
            cf = oldCf || (subtract ? al < 6 : al + 6 > 0xFF);
            al = (subtract ? al - 6 : al + 6) & 0xFF;
            af = true;
        }
        if (oldAl > 0x99 || oldCf)
        {
            al = (subtract ? al - 0x60 : al + 0x60) & 0xFF;
            cf = true;
        }
        else if (!subtract)
        {
            cf = false;
        }
        _gpr[0] = (_gpr[0] & ~0xFFUL) | al;
        Flags = WithResultFlags(flags, al, cf, af);
    }

    // AAA and AAS: AX corrected after adding or subtracting two unpacked BCD digits.
    private void AsciiAdjust(bool subtract)
    {
        ulong flags = Flags;
        ulong ax = _gpr[0] & 0xFFFF;
        bool adjust = (ax & 0xF) > 9 || (flags & Rflags.AF) != 0;
        if (adjust)
            ax = subtract ? ((ax - 6) & 0xFFFF) - 0x100 : ax + 0x106;
        ax &= 0xFF0F;
        _gpr[0] = (_gpr[0] & ~0xFFFFUL) | ax;
        Flags = WithResultFlags(flags, ax & 0xFF, adjust, adjust);
    }

    // AAM and AAD: AX set, SF, ZF and PF from AL (CF, AF and OF as a logical operation leaves them).
    private void SetAxWithFlags(ulong ax)
    {
        _gpr[0] = (_gpr[0] & ~0xFFFFUL) | (ax & 0xFFFF);
        Flags = WithResultFlags(Flags, ax & 0xFF, false, false);
    }

    // SF, ZF and PF of an 8-bit result, with CF and AF given and OF clear.
    private static ulong WithResultFlags(ulong flags, ulong result, bool cf, bool af)
    {
        ulong f = flags;
        Alu.Binary(Alu.Op.Or, result, 0, 1, ref f);
        f &= ~(Rflags.CF | Rflags.AF);
        return f | (cf ? Rflags.CF : 0) | (af ? Rflags.AF : 0);
    }
}
