// Hardware task switches in legacy protected mode, with 32-bit TSSs: a far JMP or CALL to a TSS
// or a task gate, an interrupt or exception through a task gate in the IDT, and IRET with NT set
// (back along the link). The outgoing task's registers go to its TSS; the incoming task's CR3,
// EFLAGS, EIP, general registers, LDTR and segment registers come from its TSS; busy bits, the
// back link and NT follow the SDM's table for each kind of entry, and CR0.TS is set. Checks on
// the incoming segments after the switch raise #TS (or #NP, #SS) in the new task, as hardware
// does. 16-bit TSSs and virtual-8086 tasks are not modelled: #GP on the selector (#TS for an
// IRET), before anything changes.
using System;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private enum TaskEntry : byte
    {
        Jump,
        Call,
        Return,    // IRET with NT
        Interrupt, // through a task gate
    }

    private const ulong FlagNtBit = 1UL << 14, FlagVmBit = 1UL << 17;

    // JMP or CALL to a TSS (type 1 or 9) or a task gate (type 5); the descriptor is the one the
    // instruction named. Privilege: the descriptor's DPL must be at least CPL and the RPL.
    private bool TaskSwitchFrom(TaskEntry entry, ushort selector, ulong descriptor, ulong next)
    {
        uint error = (uint)(selector & ~3);
        int dpl = (int)((descriptor >> 45) & 3);
        if (dpl < Cpl || dpl < (selector & 3))
            return Raise(ExceptionVector.GP, error);
        if ((descriptor & DescriptorP) == 0)
            return Raise(VectorNp, error);
        if (((descriptor >> 40) & 0xF) == 5)
        {
            selector = (ushort)(descriptor >> 16); // the task gate's TSS selector
            error = (uint)(selector & ~3);
            if ((selector & 4) != 0 || (selector & ~3) == 0)
                return Raise(ExceptionVector.GP, error);
            if (!DescriptorOf(selector, out descriptor, error))
                return RaiseFault();
        }
        if (!TaskSwitch(entry, selector, descriptor, next, false, 0, out byte vector, out uint code))
            return vector == 0xFF ? RaiseFault() : Raise(vector, code);
        return true;
    }

    // IRET with NT set in protected mode: back to the task in the current TSS's link field.
    private bool TaskReturn(ulong next)
    {
        if ((_efer & PagingState.EferLMA) != 0)
            return Raise(ExceptionVector.GP); // no task switches in IA-32e mode
        if (!SystemRead(_tr.Base, 2, out ulong link))
            return RaiseFault();
        ushort selector = (ushort)link;
        uint error = (uint)(selector & ~3);
        if ((selector & 4) != 0)
            return Raise(VectorTs, error);
        if (!DescriptorOf(selector, out ulong descriptor, error))
            return _faultVector == ExceptionVector.GP && !_faultShutdown ? Raise(VectorTs, error) : RaiseFault();
        if (!TaskSwitch(TaskEntry.Return, selector, descriptor, next, false, 0, out byte vector, out uint code))
            return vector == 0xFF ? RaiseFault() : Raise(vector, code);
        return true;
    }

    // The switch itself. False with the exception to raise in vector and code (0xFF: a fault
    // already recorded by a system access).
    private bool TaskSwitch(TaskEntry entry, ushort selector, ulong descriptor, ulong returnEip, bool hasError, uint errorCode,
        out byte vector, out uint code)
    {
        vector = ExceptionVector.GP;
        code = (uint)(selector & ~3);
        int type = (int)((descriptor >> 40) & 0xF);
        bool busy = (type & 2) != 0;
        if ((descriptor & DescriptorS) != 0 || (type & ~2) != 0x9)
        {
            vector = entry == TaskEntry.Return ? VectorTs : ExceptionVector.GP; // not a 32-bit TSS
            return false;
        }
        if (entry == TaskEntry.Return ? !busy : busy)
        {
            vector = entry == TaskEntry.Return ? VectorTs : ExceptionVector.GP;
            return false;
        }
        if ((descriptor & DescriptorP) == 0)
        {
            vector = VectorNp;
            return false;
        }
        var tss = VmxConversions.SegmentFromDescriptor(descriptor, selector);
        if (tss.Limit < 0x67)
        {
            vector = VectorTs;
            return false;
        }
        // The incoming state, read before anything is written.
        Span<ulong> incoming = stackalloc ulong[26];
        for (int k = 0; k < 26; k++)
        {
            if (!SystemRead(tss.Base + 4UL * (ulong)k, 4, out incoming[k]))
            {
                vector = 0xFF;
                return false;
            }
        }
        // Neither a 16-bit TSS (outgoing or incoming) nor a virtual-8086 task is modelled: refused
        // before anything changes.
        if ((_tr.Type & 8) == 0 || (incoming[9] & FlagVmBit) != 0)
            return false;
        // The busy bytes and the new TSS's link must be writable before anything is written.
        if (!SystemRead(_gdtrBase + (ulong)(_tr.Selector & ~7) + 5, 1, out _) || !SystemRead(_gdtrBase + (ulong)(selector & ~7) + 5, 1, out _)
            || !SystemWrite(tss.Base, 2, entry is TaskEntry.Call or TaskEntry.Interrupt ? _tr.Selector : incoming[0]))
        {
            vector = 0xFF;
            return false;
        }
        // The outgoing task's registers into its TSS: EIP, EFLAGS, the general registers and the
        // segment selectors (an IRET leaves with NT clear in the saved EFLAGS).
        ulong flags = Flags;
        if (entry == TaskEntry.Return)
            flags &= ~FlagNtBit;
        ulong old = _tr.Base;
        bool saved = SystemWrite(old + 32, 4, returnEip) && SystemWrite(old + 36, 4, flags);
        for (int r = 0; saved && r < 8; r++)
            saved = SystemWrite(old + 40 + 4UL * (ulong)r, 4, _gpr[r]);
        for (int s = 0; saved && s < 6; s++)
            saved = SystemWrite(old + 72 + 4UL * (ulong)s, 2, _seg[s].Selector);
        if (!saved)
        {
            vector = 0xFF;
            return false;
        }
        // Busy bits and the link.
        if (entry is TaskEntry.Jump or TaskEntry.Return)
            SetTssBusy(_tr.Selector, false);
        if (entry is TaskEntry.Call or TaskEntry.Interrupt)
            incoming[9] |= FlagNtBit; // the link was written above
        if (entry != TaskEntry.Return)
            SetTssBusy(selector, true);
        _tr = tss with { Access = (tss.Access & ~0xFu) | 0xB };
        // The incoming task's state: CR3 (with paging), EFLAGS, EIP and the general registers
        // first; then LDTR and the segments, whose checks now fault in the new task.
        if ((_cr0 & PagingState.Cr0PG) != 0)
        {
            _cr3 = incoming[7];
            FlushTlb();
        }
        _cr0 |= PagingState.Cr0TS;
        Flags = (incoming[9] & ~FlagVmBit) | Rflags.Fixed1;
        _rip = (uint)incoming[8];
        for (int r = 0; r < 8; r++)
            _gpr[r] = (uint)incoming[10 + r];
        _ldtr = new Segment((ushort)incoming[24], 0, 0, 0x1_0000);
        int cpl = (int)(incoming[19] & 3);
        for (int s = 0; s < 6; s++)
            _seg[s] = new Segment((ushort)incoming[18 + s], 0, 0, 0x1_0000 | (s == 2 ? (uint)(cpl << 5) : 0));
        Modes();
        if (!LoadTaskSegments(cpl, out vector, out code))
        {
            Modes(); // the fault is delivered in the new task, with what it has loaded so far
            return false;
        }
        if (hasError)
        {
            // The error code goes on the new task's stack.
            ulong mask = _seg[2].Big ? 0xFFFF_FFFFUL : 0xFFFFUL;
            ulong top = (_gpr[4] - 4) & mask;
            if (!_seg[2].AllowsData(top, 4, true))
            {
                vector = ExceptionVector.SS;
                code = 0;
                return false;
            }
            if (!SystemWrite((uint)(_seg[2].Base + top), 4, errorCode))
            {
                vector = 0xFF;
                return false;
            }
            _gpr[4] = (_gpr[4] & ~mask) | top;
        }
        return true;
    }

    // LDTR, CS, SS and the data segments from the new task's selectors, with their checks (#TS).
    private bool LoadTaskSegments(int cpl, out byte vector, out uint code)
    {
        vector = VectorTs;
        code = 0;
        ushort ldt = _ldtr.Selector;
        if ((ldt & ~3) != 0)
        {
            code = (uint)(ldt & ~3);
            if ((ldt & 4) != 0)
                return false;
            if (!DescriptorOf(ldt, out ulong d, code))
                return FaultAsTaskSegment(ref vector);
            var s = VmxConversions.SegmentFromDescriptor(d, ldt);
            if ((s.Access & 0x10) != 0 || s.Type != 2)
                return false;
            if ((s.Access & 0x80) == 0)
                return false;
            _ldtr = s;
        }
        foreach (Register r in (ReadOnlySpan<Register>)[Register.SS, Register.CS, Register.DS, Register.ES, Register.FS, Register.GS])
        {
            ushort selector = _seg[r - Register.ES].Selector;
            code = (uint)(selector & ~3);
            if (r == Register.CS)
            {
                if ((selector & ~3) == 0)
                    return false;
                if (!DescriptorOf(selector, out ulong d, code))
                    return FaultAsTaskSegment(ref vector);
                var cs = VmxConversions.SegmentFromDescriptor(d, selector);
                bool conforming = (cs.Type & 4) != 0;
                if (!cs.IsCode || (cs.Access & 0x10) == 0 || (conforming ? cs.Dpl > cpl : cs.Dpl != cpl))
                    return false;
                if ((cs.Access & 0x80) == 0)
                {
                    vector = VectorNp;
                    return false;
                }
                _seg[1] = cs;
                continue;
            }
            if (!SegmentCheck(r, selector, out Segment s, cpl))
            {
                code = _faultError;
                return FaultAsTaskSegment(ref vector);
            }
            _seg[r - Register.ES] = s;
        }
        Modes();
        return true;
    }

    // A descriptor read or segment check that failed: its #GP becomes #TS (vector is #TS
    // already); #NP, #SS and page faults stay as recorded.
    private bool FaultAsTaskSegment(ref byte vector)
    {
        if (_faultShutdown || _faultVector != ExceptionVector.GP)
            vector = 0xFF;
        return false;
    }

    // Sets or clears the busy bit of the TSS descriptor selector names in the GDT.
    private void SetTssBusy(ushort selector, bool busy)
    {
        ulong at = _gdtrBase + (ulong)(selector & ~7) + 5;
        if (SystemRead(at, 1, out ulong access))
            SystemWrite(at, 1, busy ? access | 2 : access & ~2UL);
    }
}
