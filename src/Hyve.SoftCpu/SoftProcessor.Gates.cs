// Far transfers that change privilege: far CALL and JMP through call gates (16- and 32-bit gates,
// and IA-32e mode's 64-bit gates), with the stack switch from the TSS and the parameter copy of a
// CALL to a more privileged level, and far RET to an outer level (the outer SS:ESP popped, data
// segment registers the outer level may not use made null). A far JMP or CALL to a TSS or task
// gate switches tasks (SoftProcessor.Tasks); in IA-32e mode it is #GP.
using System;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const ulong DescriptorS = 1UL << 44, DescriptorP = 1UL << 47;

    // Whether a far JMP or CALL to selector names a system descriptor (a gate or a TSS), in
    // protected mode. False with faulted when the descriptor could not be read (the fault raised).
    private bool NamesSystemDescriptor(ushort selector, out ulong descriptor, out bool faulted)
    {
        descriptor = 0;
        faulted = false;
        if ((_cr0 & PagingState.Cr0PE) == 0 || (Flags & (1UL << 17)) != 0 || (selector & ~3) == 0)
            return false;
        if (!DescriptorOf(selector, out descriptor, (uint)(selector & ~3)))
        {
            faulted = true;
            RaiseFault();
            return false;
        }
        return (descriptor & DescriptorS) == 0;
    }

    // A far JMP or CALL to a system descriptor: a call gate, or a task (gate or TSS).
    private bool ThroughSystemDescriptor(bool call, ushort selector, ulong descriptor, ulong next)
    {
        uint error = (uint)(selector & ~3);
        int type = (int)((descriptor >> 40) & 0xF);
        bool ia32e = (_efer & PagingState.EferLMA) != 0;
        int dpl = (int)((descriptor >> 45) & 3);
        switch (type)
        {
            case 0x4 or 0xC when !ia32e || type == 0xC:
                break;
            case 0x1 or 0x9 or 0x5 when !ia32e:
                return TaskSwitchFrom(call ? TaskEntry.Call : TaskEntry.Jump, selector, descriptor, next);
            default:
                return Raise(ExceptionVector.GP, error);
        }
        if (dpl < Cpl || dpl < (selector & 3))
            return Raise(ExceptionVector.GP, error);
        if ((descriptor & DescriptorP) == 0)
            return Raise(VectorNp, error);
        ulong offset = descriptor & 0xFFFF;
        if (ia32e)
        {
            // The 16-byte gate's upper half: the offset's top 32 bits, and a type field of zero.
            if (!DescriptorOf((ushort)(selector + 8), out ulong high, error))
                return RaiseFault();
            if (((high >> 40) & 0x1F) != 0)
                return Raise(ExceptionVector.GP, error);
            offset |= ((descriptor >> 32) & 0xFFFF_0000) | (high << 32);
        }
        else if (type == 0xC)
            offset |= (descriptor >> 32) & 0xFFFF_0000;
        ushort target = (ushort)(descriptor >> 16);
        uint targetError = (uint)(target & ~3);
        if ((target & ~3) == 0)
            return Raise(ExceptionVector.GP);
        if (!DescriptorOf(target, out ulong codeDescriptor, targetError))
            return RaiseFault();
        Segment cs = VmxConversions.SegmentFromDescriptor(codeDescriptor, target);
        int cpl = Cpl;
        bool conforming = (cs.Type & 4) != 0;
        if ((cs.Access & 0x10) == 0 || !cs.IsCode || cs.Dpl > cpl || (ia32e && (!cs.Long || cs.Big)))
            return Raise(ExceptionVector.GP, targetError);
        if (!call && !conforming && cs.Dpl != cpl)
            return Raise(ExceptionVector.GP, targetError);
        if ((cs.Access & 0x80) == 0)
            return Raise(VectorNp, targetError);
        int width = ia32e ? 8 : type == 0xC ? 4 : 2;
        if (!TargetWithin(in cs, offset))
            return Raise(ExceptionVector.GP); // checked before anything changes
        if (!call)
            return EnterCode(cs with { Selector = (ushort)((target & ~3) | cpl) }, offset);
        int newCpl = conforming ? cpl : cs.Dpl;
        cs = cs with { Selector = (ushort)((target & ~3) | newCpl) };
        if (newCpl == cpl)
        {
            ulong sp = _gpr[4];
            if (!Push(_seg[1].Selector, width) || !Push(next, width))
            {
                _gpr[4] = sp;
                return false;
            }
            return EnterCode(in cs, offset);
        }
        return CallInward(cs, offset, newCpl, width, ia32e ? 0 : (int)((descriptor >> 32) & 0x1F), next);
    }

    // The stack for privilege level newCpl (or, in IA-32e mode, IST entry ist) from the TSS: in
    // IA-32e mode RSPn (or ISTn) with a null SS at the new level; otherwise SSn:ESPn from a 32-bit
    // TSS or SSn:SPn from a 16-bit one, with SS checked (#TS, or #SS when absent). False with
    // the fault recorded; ext is added to the error codes of event delivery.
    private bool InnerStack(int newCpl, int ist, uint ext, out ulong sp, out Segment ss)
    {
        ss = default;
        sp = 0;
        uint tsError = (uint)(_tr.Selector & ~3) + ext;
        if ((_efer & PagingState.EferLMA) != 0)
        {
            ulong slot = ist != 0 ? 0x24 + 8UL * (ulong)(ist - 1) : 4 + 8UL * (ulong)newCpl;
            if (slot + 7 > _tr.Limit)
                return Fail(VectorTs, tsError);
            if (!SystemRead(_tr.Base + slot, 8, out sp))
                return false;
            ss = new Segment((ushort)newCpl, 0, 0, 0x1_0000 | (uint)(newCpl << 5));
            return true;
        }
        bool tss32 = (_tr.Type & 8) != 0;
        ulong at = tss32 ? 4 + 8UL * (ulong)newCpl : 2 + 4UL * (ulong)newCpl;
        int spSize = tss32 ? 4 : 2;
        if (at + (ulong)spSize + 1 > _tr.Limit)
            return Fail(VectorTs, tsError);
        if (!SystemRead(_tr.Base + at, spSize, out sp) || !SystemRead(_tr.Base + at + (ulong)spSize, 2, out ulong ssSel))
            return false;
        uint ssError = (uint)(ssSel & ~3UL) + ext;
        if ((ssSel & ~3UL) == 0 || (int)(ssSel & 3) != newCpl)
            return Fail(VectorTs, ssError);
        if (!DescriptorOf((ushort)ssSel, out ulong ssDesc, ssError))
            return false;
        ss = VmxConversions.SegmentFromDescriptor(ssDesc, (ushort)ssSel);
        if (ss.IsCode || (ss.Type & 2) == 0 || ss.Dpl != newCpl || (ss.Access & 0x10) == 0)
            return Fail(VectorTs, ssError);
        if ((ss.Access & 0x80) == 0)
            return Fail(ExceptionVector.SS, ssError);
        return true;
    }

    // A CALL through a gate to a more privileged level: the inner stack from the TSS, then the
    // caller's SS and ESP, the parameters copied from the caller's stack, CS and the return EIP.
    private bool CallInward(Segment cs, ulong offset, int newCpl, int width, int parameters, ulong next)
    {
        bool ia32e = (_efer & PagingState.EferLMA) != 0;
        if (!InnerStack(newCpl, 0, 0, out ulong sp, out Segment ss))
            return RaiseFault();
        // The caller's parameters, read at its privilege before anything changes.
        Span<ulong> frame = stackalloc ulong[36];
        int n = 0;
        frame[n++] = _seg[2].Selector;
        frame[n++] = _gpr[4] & Alu.Mask(StackWidth);
        for (int k = parameters - 1; k >= 0; k--)
        {
            ulong from = (_gpr[4] + (ulong)(k * width)) & Alu.Mask(StackWidth);
            if (!Read(Register.SS, from, width, out ulong p))
                return false;
            frame[n++] = p;
        }
        frame[n++] = _seg[1].Selector;
        frame[n++] = next;
        ulong stackMask = ia32e ? ulong.MaxValue : ss.Big ? 0xFFFF_FFFFUL : 0xFFFFUL;
        ulong top = ia32e ? sp : sp & stackMask; // a call gate does not align the new stack (interrupts do)
        if (ia32e && (!_paging.IsCanonical(top - 1) || !_paging.IsCanonical(top - (ulong)(width * n))))
            return Raise(ExceptionVector.SS); // a non-canonical inner stack
        for (int k = 0; k < n; k++)
        {
            top = (top - (ulong)width) & stackMask;
            if (!ia32e && !ss.AllowsData(top, width, true))
                return Raise(ExceptionVector.SS, (uint)(ss.Selector & ~3));
            if (!SystemWrite(ia32e ? top : (uint)(ss.Base + top), width, frame[k]))
                return RaiseFault();
        }
        _seg[2] = ss;
        _gpr[4] = ia32e ? top : stackMask == 0xFFFF ? (_gpr[4] & ~0xFFFFUL) | top : top;
        return EnterCode(in cs, offset);
    }

    // Far RET to an outer level (CS.RPL > CPL): the outer SS:ESP above the return address and any
    // immediate, checked at the outer level; DS, ES, FS and GS become null if they hold a data or
    // non-conforming code segment more privileged than the new level.
    private bool FarReturnOutward(ulong ip, ushort selector, int size, ulong sp, ulong imm)
    {
        int sw = StackWidth;
        int newCpl = selector & 3;
        uint error = (uint)(selector & ~3);
        ulong at = (sp + 2 * (ulong)size + imm) & Alu.Mask(sw);
        if (!Read(Register.SS, at, size, out ulong outerSp) || !Read(Register.SS, (at + (ulong)size) & Alu.Mask(sw), size, out ulong ssSel))
            return false;
        if (!SegmentFor(Register.CS, selector, out Segment cs))
            return false;
        bool conforming = (cs.Type & 4) != 0;
        if (conforming ? cs.Dpl > newCpl : cs.Dpl != newCpl)
            return Raise(ExceptionVector.GP, error);
        if (!SegmentFor(Register.SS, (ushort)ssSel, out Segment ss, newCpl))
            return false;
        ulong target = ip;
        if (!(cs.Long && (_efer & PagingState.EferLMA) != 0))
            target &= size == 2 ? 0xFFFFUL : 0xFFFF_FFFFUL;
        if (!TargetWithin(in cs, target))
            return Raise(ExceptionVector.GP);
        _seg[1] = cs with { Selector = (ushort)((selector & ~3) | newCpl) };
        _seg[2] = ss;
        Modes();
        int newWidth = StackWidth;
        SetStackPointer((outerSp + imm) & Alu.Mask(newWidth), newWidth);
        NullOuterDataSegments(newCpl);
        _rip = target;
        return true;
    }

    // A far branch target: canonical in 64-bit code, within the limit elsewhere.
    private bool TargetWithin(in Segment cs, ulong offset)
    {
        if (cs.Long && (_efer & PagingState.EferLMA) != 0)
            return _paging.IsCanonical(offset);
        return offset <= cs.Limit;
    }

    // After a RET or IRET to an outer level: ES, DS, FS and GS become null if they hold data or
    // non-conforming code more privileged than the new level (FS and GS keep their bases, which
    // 64-bit code sets through MSRs).
    private void NullOuterDataSegments(int newCpl)
    {
        foreach (Register r in (ReadOnlySpan<Register>)[Register.ES, Register.DS, Register.FS, Register.GS])
        {
            ref Segment s = ref _seg[r - Register.ES];
            bool dataOrNonConforming = !s.IsCode || (s.Type & 4) == 0;
            if (!s.Unusable && dataOrNonConforming && s.Dpl < newCpl)
                s = new Segment(0, r is Register.FS or Register.GS ? s.Base : 0, 0, 0x1_0000); // null, unusable
        }
    }
}
