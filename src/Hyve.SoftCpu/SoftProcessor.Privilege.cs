// Privilege on the software CPU: the fast system calls (SYSCALL/SYSRET, SYSENTER/SYSEXIT)
// with the flat segments they load without reading the GDT, I/O permission (IOPL, then the
// TSS bitmap), alignment checks at CPL 3, far CALL and RET at the current privilege level, and
// POP into a segment register.
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const ulong EferSce = 1;

    // The flat segments the fast system calls load (access rights as VMX stores them).
    private static Segment FlatCode(ushort selector, int dpl, bool longMode) =>
        new(selector, 0, 0xFFFF_FFFF, (uint)(longMode ? 0xA09B : 0xC09B) | (uint)(dpl << 5));

    private static Segment FlatStack(ushort selector, int dpl) => new(selector, 0, 0xFFFF_FFFF, 0xC093 | (uint)(dpl << 5));

    private bool SystemCall(ulong next)
    {
        // Intel processors (the CPUID policy says GenuineIntel) allow SYSCALL in 64-bit mode only.
        if ((_efer & EferSce) == 0 || _bitness != Bitness.Bits64)
            return Raise(ExceptionVector.UD);
        ushort cs = (ushort)((_area.Star >> 32) & 0xFFFC);
        _gpr[1] = next;
        _gpr[11] = Flags & ~FlagRf;
        _seg[1] = FlatCode(cs, 0, true);
        _seg[2] = FlatStack((ushort)(cs + 8), 0);
        Flags = (Flags & ~(_area.Fmask | FlagRf)) | Rflags.Fixed1;
        _rip = _area.Lstar;
        Modes();
        return true;
    }

    private bool SystemReturn()
    {
        if ((_efer & EferSce) == 0 || (_efer & PagingState.EferLMA) == 0 || _bitness != Bitness.Bits64)
            return Raise(ExceptionVector.UD);
        if (Cpl != 0)
            return Raise(ExceptionVector.GP);
        bool to64 = _insn.OperandSize == 8;
        if (to64 && !_paging.IsCanonical(_gpr[1]))
            return Raise(ExceptionVector.GP);
        ushort sel = (ushort)(_area.Star >> 48);
        _seg[1] = FlatCode((ushort)((to64 ? sel + 16 : sel) | 3), 3, to64);
        _seg[2] = FlatStack((ushort)((sel + 8) | 3), 3);
        Flags = (_gpr[11] & 0x3C_7FD7) | Rflags.Fixed1;
        _rip = to64 ? _gpr[1] : (uint)_gpr[1];
        Modes();
        return true;
    }

    private bool SysEnter()
    {
        ulong cs = _vmcs.Load(VmcsField.GuestSysenterCs) & 0xFFFC;
        if ((_cr0 & PagingState.Cr0PE) == 0 || cs == 0)
            return Raise(ExceptionVector.GP);
        bool longMode = (_efer & PagingState.EferLMA) != 0;
        _seg[1] = FlatCode((ushort)cs, 0, longMode);
        _seg[2] = FlatStack((ushort)(cs + 8), 0);
        Flags &= ~(Rflags.IF | FlagRf | FlagVm);
        _rip = longMode ? _vmcs.Load(VmcsField.GuestSysenterEip) : (uint)_vmcs.Load(VmcsField.GuestSysenterEip);
        _gpr[4] = longMode ? _vmcs.Load(VmcsField.GuestSysenterEsp) : (uint)_vmcs.Load(VmcsField.GuestSysenterEsp);
        Modes();
        return true;
    }

    private bool SysExit()
    {
        ulong cs = _vmcs.Load(VmcsField.GuestSysenterCs) & 0xFFFC;
        if ((_cr0 & PagingState.Cr0PE) == 0 || cs == 0 || Cpl != 0)
            return Raise(ExceptionVector.GP);
        bool to64 = _insn.OperandSize == 8;
        if (to64 && (!_paging.IsCanonical(_gpr[1]) || !_paging.IsCanonical(_gpr[2])))
            return Raise(ExceptionVector.GP);
        _seg[1] = FlatCode((ushort)((cs + (to64 ? 32UL : 16UL)) | 3), 3, to64);
        _seg[2] = FlatStack((ushort)((cs + (to64 ? 40UL : 24UL)) | 3), 3);
        _rip = to64 ? _gpr[2] : (uint)_gpr[2];
        _gpr[4] = to64 ? _gpr[1] : (uint)_gpr[1];
        Modes();
        return true;
    }

    // Whether the current privilege may use ports [port, port+size): always at CPL <= IOPL,
    // otherwise only when the TSS's I/O bitmap clears every bit (#GP(0) if not).
    private bool IoPermitted(ushort port, int size)
    {
        if ((_cr0 & PagingState.Cr0PE) == 0 || (!_v86 && Cpl <= Iopl))
            return true; // virtual-8086 mode always consults the bitmap
        ulong limit = _tr.Limit;
        if (_tr.Unusable || limit < 0x67)
            return Raise(ExceptionVector.GP);
        if (!SystemRead(_tr.Base + 0x66, 2, out ulong bitmap))
            return RaiseFault();
        ulong at = bitmap + (ulong)(port >> 3);
        if (at + 1 > limit)
            return Raise(ExceptionVector.GP);
        if (!SystemRead(_tr.Base + at, 2, out ulong bits))
            return RaiseFault();
        ulong mask = ((1UL << size) - 1) << (port & 7);
        return (bits & mask) == 0 || Raise(ExceptionVector.GP);
    }

    // #AC(0): a misaligned data access at CPL 3 with CR0.AM and RFLAGS.AC.
    private bool Aligned(ulong la, int size)
    {
        if (size == 1 || (la & (ulong)(size - 1)) == 0 || Cpl != 3 || (_cr0 & PagingState.Cr0AM) == 0 || (Flags & Rflags.AC) == 0)
            return true;
        return Raise(ExceptionVector.AC);
    }

    // Far CALL to ptr16:16/32 or m16:16/32/64 at the current privilege level: pushes CS and the
    // return offset at the operand size.
    private bool FarCall(ulong next)
    {
        if (!FarPointer(out ushort selector, out ulong offset))
            return false;
        if (NamesSystemDescriptor(selector, out ulong descriptor, out bool faulted))
            return ThroughSystemDescriptor(call: true, selector, descriptor, next);
        if (faulted || !CodeAtSameLevel(selector, out Segment cs))
            return false;
        int size = _insn.OperandSize;
        ulong sp = _gpr[4];
        if (!Push(_seg[1].Selector, size) || !Push(next, size))
        {
            _gpr[4] = sp;
            return false;
        }
        return EnterCode(in cs, offset);
    }

    // Far RET (with an optional immediate) to the same privilege level.
    private bool FarReturn()
    {
        int size = _insn.OperandSize;
        int sw = StackWidth;
        ulong sp = _gpr[4] & Alu.Mask(sw);
        if (!Read(Register.SS, sp, size, out ulong ip) || !Read(Register.SS, (sp + (ulong)size) & Alu.Mask(sw), size, out ulong cs))
            return false;
        ulong imm = _insn.OpcodeByte == 0xCA ? _insn.Immediate & 0xFFFF : 0;
        if ((_cr0 & PagingState.Cr0PE) != 0 && (Flags & (1UL << 17)) == 0 && ((ushort)cs & 3) != Cpl)
        {
            if (((ushort)cs & 3) < Cpl)
                return Raise(ExceptionVector.GP, (uint)(cs & 0xFFFC)); // RET never goes inward
            return FarReturnOutward(ip, (ushort)cs, size, sp, imm);
        }
        if (!CodeAtSameLevel((ushort)cs, out Segment code))
            return false;
        SetStackPointer((sp + 2 * (ulong)size + imm) & Alu.Mask(sw), sw);
        return EnterCode(in code, ip);
    }

    private bool FarPointer(out ushort selector, out ulong offset)
    {
        OperandKind kind = _insn.GetOperandKind(0);
        if (kind is OperandKind.FarBranch16 or OperandKind.FarBranch32)
        {
            offset = _insn.Immediate;
            selector = _insn.Immediate2;
            return true;
        }
        selector = 0;
        int size = _insn.MemorySize - 2;
        ulong ea = Ea();
        if (!Read(_insn.MemorySegment, ea, size, out offset) || !Read(_insn.MemorySegment, (ea + (ulong)size) & Alu.Mask(_insn.AddressSize), 2, out ulong s16))
            return false;
        selector = (ushort)s16;
        return true;
    }

    // POP DS/ES/SS/FS/GS.
    private bool PopSegment(ulong next)
    {
        Register seg = _insn.GetRegister(0);
        int size = _insn.OperandSize;
        int sw = StackWidth;
        if (!Read(Register.SS, _gpr[4] & Alu.Mask(sw), size, out ulong v) || !SegmentFor(seg, (ushort)v, out Segment s))
            return false;
        SetStackPointer((_gpr[4] + (ulong)size) & Alu.Mask(sw), sw);
        LoadDataSegment(seg, in s);
        _rip = next;
        return true;
    }
}
