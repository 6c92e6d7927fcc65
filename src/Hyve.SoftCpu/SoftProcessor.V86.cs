// Virtual-8086 mode (EFLAGS.VM in protected mode outside IA-32e mode), as the SDM's chapter on
// 8086 emulation describes it: segments load as in real mode (base = selector × 16, limit
// 0xFFFF) at CPL 3 with paging; CLI, STI, PUSHF, POPF, INT n and IRET are IOPL-sensitive
// (#GP(0) below IOPL 3); IN/OUT always consult the TSS's I/O bitmap; interrupts and exceptions
// leave for a CPL 0 handler through the IDT with the segment registers saved and cleared; IRET
// at CPL 0 with VM set in the popped EFLAGS returns to it. With CR4.VME the sensitive
// instructions work on VIF instead of faulting and INT n follows the TSS's interrupt
// redirection bitmap; CR4.PVI gives CPL 3 protected-mode code the same CLI/STI.
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const ulong FlagVif = 1UL << 19, FlagVip = 1UL << 20;
    private const ulong Cr4Vme = 1UL << 0, Cr4Pvi = 1UL << 1;

    // The access rights VMX gives every virtual-8086 segment: present, DPL 3, read/write data,
    // accessed.
    private const uint V86Access = 0xF3;

    private bool _v86;

    // Real-mode segmentation: real mode itself, or virtual-8086 mode.
    private bool RealAddressing => (_cr0 & PagingState.Cr0PE) == 0 || _v86;

    private static Segment V86Segment(ushort selector) => new(selector, (ulong)selector << 4, 0xFFFF, V86Access);

    // CLI or STI at CPL > IOPL in protected mode: VIF with VME (virtual-8086 mode) or PVI (CPL 3),
    // #GP(0) otherwise; STI with VIP set faults so the monitor can deliver the pending interrupt.
    private bool VirtualInterruptFlag(bool set)
    {
        bool virtualized = _v86 ? (_cr4 & Cr4Vme) != 0 : Cpl == 3 && (_cr4 & Cr4Pvi) != 0;
        if (!virtualized || (set && (Flags & FlagVip) != 0))
            return Raise(ExceptionVector.GP);
        Flags = set ? Flags | FlagVif : Flags & ~FlagVif;
        return true;
    }

    // FLAGS as the 8086 program sees it below IOPL 3 with VME: IF is VIF and IOPL reads 3.
    private ulong VirtualFlagsImage() =>
        (Flags & 0xFFFF & ~(Rflags.IF | FlagIopl)) | FlagIopl | ((Flags & FlagVif) != 0 ? Rflags.IF : 0);

    // PUSHF or POPF in virtual-8086 mode below IOPL 3: with VME the 16-bit forms run on a FLAGS
    // image whose IF is VIF (IOPL reads as 3); everything else is #GP(0).
    private bool V86Flags(bool push, int size, ulong next)
    {
        if ((_cr4 & Cr4Vme) == 0 || size != 2)
            return Raise(ExceptionVector.GP);
        if (push)
        {
            if (!Push(VirtualFlagsImage(), 2))
                return false;
            _rip = next;
            return true;
        }
        if (!Read(Register.SS, _gpr[4] & 0xFFFF, 2, out ulong v))
            return false;
        if ((v & Rflags.TF) != 0 || ((Flags & FlagVip) != 0 && (v & Rflags.IF) != 0))
            return Raise(ExceptionVector.GP);
        SetStackPointer((_gpr[4] + 2) & 0xFFFF, 2);
        // IF and IOPL stay; the popped IF becomes VIF.
        const ulong Writable = Rflags.Status | Rflags.TF | Rflags.DF | FlagNt;
        Flags = (Flags & ~(Writable | FlagVif)) | (v & Writable) | ((v & Rflags.IF) != 0 ? FlagVif : 0);
        _rip = next;
        return true;
    }

    // INT n in virtual-8086 mode. With VME, a clear bit n in the TSS's redirection bitmap sends
    // it to the 8086 program's own vector table; otherwise (and without VME) it needs IOPL 3 and
    // goes through the IDT to a CPL 0 handler.
    private bool V86SoftwareInterrupt(byte vector, ulong next)
    {
        if ((_cr4 & Cr4Vme) != 0)
        {
            if (!RedirectionBit(vector, out bool protectedMode))
                return false;
            if (!protectedMode)
                return RedirectedInterrupt(vector, next);
        }
        if (Iopl < 3)
            return Raise(ExceptionVector.GP);
        return SoftwareEvent(vector, EventSource.Software, next);
    }

    // Bit vector of the 32-byte interrupt redirection bitmap just below the TSS's I/O map base.
    private bool RedirectionBit(byte vector, out bool set)
    {
        set = true;
        if (_tr.Unusable || (_tr.Type & 8) == 0 || _tr.Limit < 0x67)
            return Raise(ExceptionVector.GP);
        if (!SystemRead(_tr.Base + 0x66, 2, out ulong ioBase))
            return RaiseFault();
        ulong at = ioBase - 32 + (ulong)(vector >> 3);
        if (ioBase < 32 || at > _tr.Limit)
            return Raise(ExceptionVector.GP);
        if (!SystemRead(_tr.Base + at, 1, out ulong bits))
            return RaiseFault();
        set = ((bits >> (vector & 7)) & 1) != 0;
        return true;
    }

    // A software interrupt the 8086 program handles: FLAGS, CS and IP on its stack (IF as VIF
    // and IOPL as 3 when IOPL < 3), CS:IP from its vector table at linear address 0 (read at
    // CPL 3 through paging), TF cleared and VIF (or IF at IOPL 3) cleared.
    private bool RedirectedInterrupt(byte vector, ulong next)
    {
        ulong la = (ulong)vector * 4;
        if (!Translate(la, AccessType.Read, out ulong pa))
            return false;
        Span<byte> b = stackalloc byte[4];
        if (!_memory.ReadRam(pa, b))
            return DeviceAccess(pa, la, AccessType.Read);
        uint target = BinaryPrimitives.ReadUInt32LittleEndian(b);
        bool iopl3 = Iopl == 3;
        ulong image = iopl3 ? Flags & 0xFFFF : VirtualFlagsImage();
        ulong sp = _gpr[4];
        if (!Push(image, 2) || !Push(_seg[1].Selector, 2) || !Push(next & 0xFFFF, 2))
        {
            _gpr[4] = sp;
            return false;
        }
        Flags &= ~(Rflags.TF | FlagRf | (iopl3 ? Rflags.IF : FlagVif));
        _seg[1] = V86Segment((ushort)(target >> 16));
        _rip = target & 0xFFFF;
        Modes();
        return true;
    }

    // IRET in virtual-8086 mode: at IOPL 3 as in real mode (VM, IOPL, VIP and VIF kept); below
    // it, with VME and a 16-bit operand, with the popped IF going to VIF (#GP(0) when the popped
    // TF is set or an interrupt is pending, VIP, and the popped IF would enable it); else #GP(0).
    private bool V86InterruptReturn()
    {
        int size = _insn.OperandSize;
        bool iopl3 = Iopl == 3;
        if (!iopl3 && ((_cr4 & Cr4Vme) == 0 || size != 2))
            return Raise(ExceptionVector.GP);
        ulong sp = _gpr[4] & 0xFFFF;
        if (!Read(Register.SS, sp, size, out ulong ip) || !Read(Register.SS, (sp + (ulong)size) & 0xFFFF, size, out ulong cs)
            || !Read(Register.SS, (sp + 2 * (ulong)size) & 0xFFFF, size, out ulong flags))
            return false;
        if (ip > 0xFFFF)
            return Raise(ExceptionVector.GP);
        ulong writable = Rflags.Status | Rflags.TF | Rflags.DF | FlagNt;
        if (iopl3)
        {
            writable |= Rflags.IF;
            if (size == 4)
                writable |= FlagRf | Rflags.AC | FlagId;
            Flags = (Flags & ~writable) | (flags & writable);
        }
        else
        {
            if ((flags & Rflags.TF) != 0 || ((Flags & FlagVip) != 0 && (flags & Rflags.IF) != 0))
                return Raise(ExceptionVector.GP);
            Flags = (Flags & ~(writable | FlagVif)) | (flags & writable) | ((flags & Rflags.IF) != 0 ? FlagVif : 0);
        }
        _interruptibility &= ~Interruptibility.Nmi;
        SetStackPointer((sp + 3 * (ulong)size) & 0xFFFF, 2);
        _seg[1] = V86Segment((ushort)cs);
        _rip = ip;
        Modes();
        return true;
    }

    // IRET at CPL 0 whose popped EFLAGS (32-bit) has VM set: EIP, CS and EFLAGS are already read
    // from sp; ESP, SS, ES, DS, FS and GS follow. Every segment becomes a virtual-8086 one.
    private bool ReturnToV86(ulong ip, ulong cs, ulong flags, ulong sp, int sw)
    {
        Span<ulong> rest = stackalloc ulong[6];
        for (int k = 0; k < 6; k++)
        {
            if (!Read(Register.SS, (sp + 4 * (ulong)(3 + k)) & Alu.Mask(sw), 4, out rest[k]))
                return false;
        }
        if (ip > 0xFFFF)
            return Raise(ExceptionVector.GP);
        _interruptibility &= ~Interruptibility.Nmi;
        Flags = (flags & 0xFFFF_FFFF & ~(1UL << 15 | 1UL << 5 | 1UL << 3)) | Rflags.Fixed1;
        _seg[0] = V86Segment((ushort)rest[2]);
        _seg[1] = V86Segment((ushort)cs);
        _seg[2] = V86Segment((ushort)rest[1]);
        _seg[3] = V86Segment((ushort)rest[3]);
        _seg[4] = V86Segment((ushort)rest[4]);
        _seg[5] = V86Segment((ushort)rest[5]);
        _gpr[4] = rest[0] & 0xFFFF_FFFF;
        _rip = ip;
        Modes();
        return true;
    }
}
