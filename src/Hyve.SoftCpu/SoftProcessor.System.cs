// The software CPU's system instructions: control registers (and the mode changes they make),
// descriptor tables, segment loads from the GDT or LDT with the SDM's checks, far jumps, IRET;
// and 32-bit protected-mode event delivery. Transfers through gates and task switches are
// Gates' and Tasks'.
using System;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private ushort _gdtrLimit;

    // The task-priority register as CR8 when the vmm does not take CR8 accesses as exits.
    private ulong _cr8;

    // MOV to or from CR0, CR2, CR3, CR4 and, in 64-bit mode, CR8.
    private bool MovControl(ulong next)
    {
        bool toCr = SpecialMove(Register.CR0, Register.CR15, out int n, out Register gpr);
        if (Cpl != 0)
            return Raise(ExceptionVector.GP);
        if (n == 8 && _bitness == Bitness.Bits64)
            return MovCr8(toCr, gpr, next);
        if (n is not (0 or 2 or 3 or 4))
            return Raise(ExceptionVector.UD);
        if (!toCr)
        {
            Set(gpr, n switch { 0 => _cr0, 2 => _area.Cr2, 3 => _cr3, _ => _cr4 });
            _rip = next;
            return true;
        }
        ulong v = Get(gpr);
        switch (n)
        {
            case 0:
                v |= 0x10; // ET is fixed
                if ((v & PagingState.Cr0PG) != 0 && (v & PagingState.Cr0PE) == 0)
                    return Raise(ExceptionVector.GP);
                bool enablingPaging = (v & PagingState.Cr0PG) != 0 && (_cr0 & PagingState.Cr0PG) == 0;
                if (enablingPaging && (_efer & PagingState.EferLME) != 0 && (_cr4 & PagingState.Cr4PAE) == 0)
                    return Raise(ExceptionVector.GP);
                _cr0 = v;
                // EFER.LMA follows LME and PG.
                _efer = (_efer & PagingState.EferLME) != 0 && (v & PagingState.Cr0PG) != 0
                    ? _efer | PagingState.EferLMA : _efer & ~PagingState.EferLMA;
                break;
            case 2: _area.Cr2 = v; break;
            case 3:
                _cr3 = v;
                FlushTlb(); // a CR3 load flushes even when the value is the same
                break;
            default:
                if ((_efer & PagingState.EferLMA) != 0 && (v & PagingState.Cr4PAE) == 0)
                    return Raise(ExceptionVector.GP); // PAE cannot go off in long mode
                if ((v & PagingState.Cr4OSXSAVE) != 0 && (_features & CpuFeatures.Xsave) == 0)
                    return Raise(ExceptionVector.GP); // a reserved bit without XSAVE
                _cr4 = v;
                break;
        }
        Modes();
        _rip = next;
        return true;
    }

    // MOV to or from CR8, the local APIC's task priority (TPR bits 7:4 as CR8 bits 3:0): a
    // write with bits 63:4 set is #GP(0); otherwise, with the CR8-load or CR8-store exiting
    // control set, a control-register-access exit for the vmm, which owns the APIC (the
    // qualification: CR 8, access type 0 to or 1 from, the general register).
    private bool MovCr8(bool toCr, Register gpr, ulong next)
    {
        if (toCr && (Get(gpr) & ~0xFUL) != 0)
            return Raise(ExceptionVector.GP);
        ulong controls = _vmcs.Load(VmcsField.PrimaryProcessorControls);
        if ((controls & (toCr ? VmxVcpu.Cr8LoadExiting : VmxVcpu.Cr8StoreExiting)) != 0)
        {
            Exit(VmxExitReason.CrAccess, 8 | (toCr ? 0UL : 1UL << 4) | ((ulong)(gpr - Register.RAX) << 8), _insn.Length);
            return false;
        }
        if (toCr)
            _cr8 = Get(gpr);
        else
            Set(gpr, _cr8);
        _rip = next;
        return true;
    }

    // MOV between a general register and a control or debug register (first..last): whether it
    // writes the special register, its number, and the general register.
    private bool SpecialMove(Register first, Register last, out int n, out Register gpr)
    {
        ref readonly Instruction i = ref _insn;
        bool to = i.GetRegister(0) >= first && i.GetRegister(0) <= last;
        n = (to ? i.GetRegister(0) : i.GetRegister(1)) - first;
        gpr = to ? i.GetRegister(1) : i.GetRegister(0);
        return to;
    }

    // LGDT/LIDT: a 2-byte limit and a 4-byte (8 in 64-bit mode) base.
    private bool LoadTable(bool gdt, ulong next)
    {
        if (Cpl != 0)
            return Raise(ExceptionVector.GP);
        ulong ea = Ea();
        if (!Read(_insn.MemorySegment, ea, 2, out ulong limit)
            || !Read(_insn.MemorySegment, (ea + 2) & Alu.Mask(_insn.AddressSize), _bitness == Bitness.Bits64 ? 8 : 4, out ulong b))
            return false;
        if (_bitness != Bitness.Bits64 && _insn.OperandSize == 2)
            b &= 0xFF_FFFF;
        if (gdt)
        {
            _gdtrBase = b;
            _gdtrLimit = (ushort)limit;
        }
        else
        {
            _idtrBase = b;
            _idtrLimit = (uint)limit;
        }
        _rip = next;
        return true;
    }

    // The segment a selector names: real mode makes it from the selector; protected mode reads
    // the GDT or LDT (as a supervisor access) and applies the SDM's checks for loading it at
    // privilege level cpl (the current one unless an IRET or RET is returning outward): SS must
    // be writable data with RPL = DPL = cpl (a null SS only in 64-bit mode below CPL 3), data
    // segments need max(cpl, RPL) <= DPL unless conforming code, and CS must be code (its
    // privilege rules are the caller's, since they differ between JMP, CALL, RET and IRET).
    private bool SegmentFor(Register seg, ushort selector, out Segment s, int cpl = -1) =>
        SegmentCheck(seg, selector, out s, cpl) || RaiseFault();

    // SegmentFor's checks without raising: false with the fault recorded (Fail), so a task switch
    // can report it as #TS.
    private bool SegmentCheck(Register seg, ushort selector, out Segment s, int cpl = -1)
    {
        s = default;
        if (RealAddressing)
        {
            s = _seg[seg - Register.ES] with { Selector = selector, Base = (ulong)selector << 4 };
            return true;
        }
        if (cpl < 0)
            cpl = Cpl;
        uint error = (uint)(selector & ~3);
        int rpl = selector & 3;
        if ((selector & ~3) == 0)
        {
            if (seg is Register.CS)
                return Fail(ExceptionVector.GP, 0);
            // A null SS only in IA-32e mode below CPL 3 with RPL = CPL (MOV/POP SS: in 64-bit mode).
            bool nullStackOk = (_efer & PagingState.EferLMA) != 0 && cpl < 3 && rpl == cpl && (_bitness == Bitness.Bits64 || cpl != Cpl);
            if (seg is Register.SS && !nullStackOk)
                return Fail(ExceptionVector.GP, 0);
            s = new Segment(selector, 0, 0, 0x1_0000 | (uint)(rpl << 5)); // unusable; for SS the DPL is the CPL
            return true;
        }
        if (!DescriptorOf(selector, out ulong descriptor, error))
            return false;
        s = VmxConversions.SegmentFromDescriptor(descriptor, selector);
        bool code = s.IsCode, conforming = code && (s.Type & 4) != 0, readable = !code || (s.Type & 2) != 0;
        if ((s.Access & 0x10) == 0)
            return Fail(ExceptionVector.GP, error);
        switch (seg)
        {
            case Register.CS:
                if (!code)
                    return Fail(ExceptionVector.GP, error);
                break;
            case Register.SS:
                if (code || (s.Type & 2) == 0 || rpl != cpl || s.Dpl != cpl)
                    return Fail(ExceptionVector.GP, error);
                break;
            default:
                if (!readable || (!conforming && Math.Max(cpl, rpl) > s.Dpl))
                    return Fail(ExceptionVector.GP, error);
                break;
        }
        if ((s.Access & 0x80) == 0)
            return Fail(seg == Register.SS ? ExceptionVector.SS : VectorNp, error);
        return true;
    }

    // Far JMP or CALL straight to a code segment keeps the privilege level: non-conforming code
    // needs RPL <= CPL and DPL = CPL, conforming code DPL <= CPL; CS.RPL becomes the CPL. (Gates
    // and TSSs are SoftProcessor.Gates'.)
    private bool CodeAtSameLevel(ushort selector, out Segment cs)
    {
        if (!SegmentFor(Register.CS, selector, out cs))
            return false;
        if (RealAddressing)
            return true;
        int cpl = Cpl;
        bool conforming = (cs.Type & 4) != 0;
        if (conforming ? cs.Dpl > cpl : (selector & 3) > cpl || cs.Dpl != cpl)
            return Raise(ExceptionVector.GP, (uint)(selector & ~3));
        cs = cs with { Selector = (ushort)((selector & ~3) | cpl) };
        return true;
    }

    // MOV Sreg, r/m16 (CS cannot be loaded this way).
    private bool MovSegment(ulong next)
    {
        Register seg = _insn.GetRegister(0);
        if (seg == Register.CS)
            return Raise(ExceptionVector.UD);
        if (!Source(1, 2, out ulong sel) || !SegmentFor(seg, (ushort)sel, out Segment s))
            return false;
        LoadDataSegment(seg, in s);
        _rip = next;
        return true;
    }

    // A data or stack segment register takes a checked descriptor; loading SS starts the
    // one-instruction interrupt shadow and may change the stack width.
    private void LoadDataSegment(Register seg, in Segment s)
    {
        _seg[seg - Register.ES] = s;
        if (seg == Register.SS)
        {
            _interruptibility |= Interruptibility.MovSs;
            Modes();
        }
    }

    // Far JMP to ptr16:16/32 or m16:16/32/64, at the current privilege level.
    private bool FarJump()
    {
        if (!FarPointer(out ushort selector, out ulong offset))
            return false;
        if (NamesSystemDescriptor(selector, out ulong descriptor, out bool faulted))
            return ThroughSystemDescriptor(call: false, selector, descriptor, (_rip + _insn.Length) & IpMask);
        if (faulted || !CodeAtSameLevel(selector, out Segment cs))
            return false;
        return EnterCode(in cs, offset);
    }

    // Continues at offset in code segment cs (already checked).
    private bool EnterCode(in Segment cs, ulong offset)
    {
        _seg[1] = cs;
        Modes();
        _rip = offset & IpMask;
        return true;
    }

    // IRET at the current privilege level: real mode, 32-bit protected mode and 64-bit mode
    // (IRETQ also restores RSP and SS).
    private bool InterruptReturn()
    {
        if (_v86)
            return V86InterruptReturn();
        if ((_cr0 & PagingState.Cr0PE) != 0 && (Flags & (FlagNtBit | FlagVmBit)) == FlagNtBit)
            return TaskReturn((_rip + _insn.Length) & IpMask); // back to the linked task
        int size = _insn.OperandSize;
        int sw = StackWidth;
        ulong sp = _gpr[4] & Alu.Mask(sw);
        if (!Read(Register.SS, sp, size, out ulong ip)
            || !Read(Register.SS, (sp + (ulong)size) & Alu.Mask(sw), size, out ulong cs)
            || !Read(Register.SS, (sp + 2 * (ulong)size) & Alu.Mask(sw), size, out ulong flags))
            return false;
        if ((_cr0 & PagingState.Cr0PE) != 0 && (_efer & PagingState.EferLMA) == 0 && Cpl == 0 && size == 4 && (flags & FlagVm) != 0)
            return ReturnToV86(ip, cs, flags, sp, sw);
        ulong rsp = 0, ss = 0;
        // 64-bit IRET always pops SS:RSP; a protected-mode one does when it returns outward.
        bool popStack = _bitness == Bitness.Bits64 || ((_cr0 & PagingState.Cr0PE) != 0 && (int)(cs & 3) > Cpl);
        if (popStack && (!Read(Register.SS, (sp + 3 * (ulong)size) & Alu.Mask(sw), size, out rsp)
            || !Read(Register.SS, (sp + 4 * (ulong)size) & Alu.Mask(sw), size, out ss)))
            return false;
        int newCpl = (_cr0 & PagingState.Cr0PE) == 0 ? 0 : (int)(cs & 3);
        if ((_cr0 & PagingState.Cr0PE) != 0 && newCpl < Cpl)
            return Raise(ExceptionVector.GP, (uint)(cs & 0xFFFC)); // IRET never returns inward
        if (!SegmentFor(Register.CS, (ushort)cs, out Segment code))
            return false;
        if ((_cr0 & PagingState.Cr0PE) != 0 && ((code.Type & 4) != 0 ? code.Dpl > newCpl : code.Dpl != newCpl))
            return Raise(ExceptionVector.GP, (uint)(cs & 0xFFFC));
        Segment stack = default;
        if (popStack && !SegmentFor(Register.SS, (ushort)ss, out stack, newCpl))
            return false;
        // IOPL changes only at CPL 0 and IF only at CPL <= IOPL, as with POPF.
        ulong writable = Rflags.Status | Rflags.TF | Rflags.DF | FlagNt | FlagRf | Rflags.AC | FlagId;
        if (Cpl == 0)
            writable |= FlagIopl;
        if (Cpl <= Iopl)
            writable |= Rflags.IF;
        ulong mask = size == 2 ? writable & 0xFFFF : writable;
        _interruptibility &= ~Interruptibility.Nmi; // IRET ends NMI blocking
        Flags = (Flags & ~mask) | (flags & mask) | Rflags.Fixed1;
        bool outward = (_cr0 & PagingState.Cr0PE) != 0 && newCpl > Cpl;
        _seg[1] = code;
        if (popStack)
        {
            _seg[2] = stack;
            _gpr[4] = _bitness == Bitness.Bits64 || stack.Big ? rsp : (_gpr[4] & ~0xFFFFUL) | (rsp & 0xFFFF);
        }
        else
        {
            SetStackPointer((sp + 3 * (ulong)size) & Alu.Mask(sw), sw);
        }
        if (outward)
            NullOuterDataSegments(newCpl);
        Modes();
        _rip = ip & IpMask;
        return true;
    }

    // The state VM exit stores besides what Store() covers: control registers, EFER (and the
    // IA-32e-mode entry control with it), descriptor tables.
    private void StoreSystem()
    {
        _vmcs.Store(VmcsField.GuestCr0, _cr0);
        _vmcs.Store(VmcsField.GuestCr3, _cr3);
        _vmcs.Store(VmcsField.GuestCr4, _cr4);
        _vmcs.Store(VmcsField.GuestEfer, _efer);
        uint entry = (uint)_vmcs.Load(VmcsField.EntryControls);
        _vmcs.Store(VmcsField.EntryControls, VmxConversions.EntryControlsFor(entry, _efer));
        _vmcs.Store(VmcsField.GuestGdtrBase, _gdtrBase);
        _vmcs.Store(VmcsField.GuestGdtrLimit, _gdtrLimit);
        _vmcs.Store(VmcsField.GuestIdtrBase, _idtrBase);
        _vmcs.Store(VmcsField.GuestIdtrLimit, _idtrLimit);
    }
}
