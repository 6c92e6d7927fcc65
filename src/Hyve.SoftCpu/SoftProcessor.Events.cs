// Event delivery as the SDM describes it: the real-mode IVT; 32-bit interrupt and trap gates
// (16- and 32-bit) with the stack switch from the TSS on a privilege change; 64-bit gates with
// IST stacks and the RSP from the TSS; gate, descriptor and privilege checks with their error
// codes (the EXT bit included); the double-fault rules for a fault during delivery, and
// shutdown (a triple-fault exit) when the double fault cannot be delivered either. The frame is
// written before any register changes, so a fault while writing it leaves the state as it was.
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    // How an event arrives: decides the EXT bit, the gate-DPL check and the exception bitmap.
    private enum EventSource : byte
    {
        External,
        Nmi,
        Exception,
        Software,           // INT n
        PrivilegedSoftware, // INT1
        SoftwareException,  // INT3, INTO
    }

    private const int ClassBenign = 0, ClassContributory = 1, ClassPageFault = 2, ClassDouble = 3;
    private const byte VectorNp = 11, VectorTs = 10;

    private bool _exitPending;
    private Segment _tr, _ldtr;

    // The fault a delivery step ran into (or shutdown).
    private byte _faultVector;
    private uint _faultError;
    private ulong _faultCr2;
    private bool _faultShutdown;

    private int Cpl => (_cr0 & PagingState.Cr0PE) == 0 ? 0 : _seg[2].Dpl;

    // Raises a fault from the current instruction (RIP on it). Always false: the instruction
    // stops; the next step runs the handler, unless delivery exited.
    private bool Raise(byte vector, uint errorCode = 0, ulong cr2 = 0)
    {
        if (vector == ExceptionVector.PF)
            _area.Cr2 = cr2;
        bool hasError = ExceptionVector.HasErrorCode(vector) && (_cr0 & PagingState.Cr0PE) != 0;
        Event(vector, EventSource.Exception, hasError, errorCode, _rip, injected: false);
        return false;
    }

    // A trap-like software event (INT n, INT3, INTO, INT1) returning to next.
    private bool SoftwareEvent(byte vector, EventSource source, ulong next)
    {
        Event(vector, source, false, 0, next, injected: false);
        return false;
    }

    private bool Shutdown()
    {
        Exit(VmxExitReason.TripleFault);
        return false;
    }

    // Delivers an event; a fault on the way is delivered in its place, or becomes a double
    // fault, or shuts the processor down.
    private void Event(byte vector, EventSource source, bool hasError, uint errorCode, ulong returnRip, bool injected)
    {
        int previous = -1;
        while (true)
        {
            int cls = source != EventSource.Exception ? ClassBenign : ClassOf(vector);
            if (previous == ClassDouble)
            {
                Shutdown();
                return;
            }
            if ((previous == ClassContributory && cls == ClassContributory)
                || (previous == ClassPageFault && cls is ClassContributory or ClassPageFault))
            {
                vector = ExceptionVector.DF;
                hasError = true;
                errorCode = 0;
                cls = ClassDouble;
            }
            if (!injected && source is EventSource.Exception or EventSource.SoftwareException or EventSource.PrivilegedSoftware
                && (_vmcs.Load(VmcsField.ExceptionBitmap) & (1UL << vector)) != 0)
            {
                ExitException(vector, errorCode, hasError);
                return;
            }
            if (Through(vector, source, hasError, errorCode, returnRip))
            {
                if (source == EventSource.Nmi)
                    _interruptibility |= Interruptibility.Nmi;
                return;
            }
            if (_faultShutdown || _exitPending)
            {
                if (!_exitPending)
                    Shutdown();
                return;
            }
            // A fault while delivering: it reports the interrupted instruction's RIP.
            previous = cls;
            bool fromHardware = source is EventSource.External or EventSource.Nmi or EventSource.Exception or EventSource.PrivilegedSoftware;
            vector = _faultVector;
            source = EventSource.Exception;
            hasError = ExceptionVector.HasErrorCode(vector);
            errorCode = _faultError | (fromHardware && vector != ExceptionVector.PF ? 1u : 0u);
            returnRip = _rip;
            injected = false;
            if (vector == ExceptionVector.PF)
                _area.Cr2 = _faultCr2;
        }
    }

    private static int ClassOf(byte vector) => vector switch
    {
        0 or 10 or 11 or 12 or 13 => ClassContributory,
        14 => ClassPageFault,
        8 => ClassDouble,
        _ => ClassBenign,
    };

    private bool Fail(byte vector, uint error, ulong cr2 = 0)
    {
        _faultVector = vector;
        _faultError = error;
        _faultCr2 = cr2;
        _faultShutdown = false;
        return false;
    }

    private bool FailShutdown()
    {
        _faultShutdown = true;
        return false;
    }

    // One delivery attempt. False with the fault in _fault* (or shutdown, or an exit).
    private bool Through(byte vector, EventSource source, bool hasError, uint errorCode, ulong returnRip)
    {
        _faultShutdown = false;
        if ((_cr0 & PagingState.Cr0PE) == 0)
            return ThroughIvt(vector, returnRip);
        uint ext = source is EventSource.Software or EventSource.SoftwareException ? 0u : 1u; // only INT n, INT3 and INTO clear EXT
        uint idtError = (uint)vector * 8 + 2 + ext;
        bool long64 = (_efer & PagingState.EferLMA) != 0;
        int gateSize = long64 ? 16 : 8;
        if ((ulong)vector * (ulong)gateSize + (ulong)gateSize - 1 > _idtrLimit)
            return Fail(ExceptionVector.GP, idtError);
        ulong gateLa = _idtrBase + (ulong)vector * (ulong)gateSize;
        ulong high = 0;
        if (!SystemRead(gateLa, 8, out ulong low) || (long64 && !SystemRead(gateLa + 8, 8, out high)))
            return false;
        int type = (int)((low >> 40) & 0xF);
        bool validType = long64 ? type is 0xE or 0xF : type is 0x5 or 0x6 or 0x7 or 0xE or 0xF;
        if (!validType)
            return Fail(ExceptionVector.GP, idtError);
        if (source is EventSource.Software or EventSource.SoftwareException && (int)((low >> 45) & 3) < Cpl)
            return Fail(ExceptionVector.GP, idtError);
        if ((low & (1UL << 47)) == 0)
            return Fail(VectorNp, idtError);
        if (type == 0x5)
        {
            // A task gate: the handler is another task.
            ushort tss = (ushort)(low >> 16);
            uint tssError = (uint)(tss & ~3) + ext;
            if ((tss & 4) != 0 || (tss & ~3) == 0)
                return Fail(ExceptionVector.GP, tssError);
            if (!DescriptorOf(tss, out ulong tssDescriptor, tssError))
                return false;
            if (TaskSwitch(TaskEntry.Interrupt, tss, tssDescriptor, returnRip, hasError, errorCode, out byte v, out uint c))
                return true;
            return v == 0xFF ? false : Fail(v, c + (v == ExceptionVector.PF ? 0 : ext));
        }

        ushort selector = (ushort)(low >> 16);
        ulong target = (low & 0xFFFF) | ((low >> 32) & 0xFFFF_0000) | (high << 32);
        uint selError = (uint)(selector & ~3) + ext;
        if ((selector & ~3) == 0)
            return Fail(ExceptionVector.GP, ext);
        if (!DescriptorOf(selector, out ulong descriptor, selError))
            return false;
        Segment cs = VmxConversions.SegmentFromDescriptor(descriptor, selector);
        if (!cs.IsCode || (long64 && (!cs.Long || cs.Big)))
            return Fail(ExceptionVector.GP, selError);
        if ((cs.Access & 0x80) == 0)
            return Fail(VectorNp, selError);
        int cpl = Cpl;
        if (cs.Dpl > cpl)
            return Fail(ExceptionVector.GP, selError);
        // From virtual-8086 mode only to a CPL 0 handler (not conforming code).
        bool fromV86 = _v86;
        if (fromV86 && ((cs.Type & 4) != 0 || cs.Dpl != 0))
            return Fail(ExceptionVector.GP, selError);
        int newCpl = (cs.Type & 4) != 0 ? cpl : cs.Dpl; // a conforming segment keeps the privilege
        bool outward = newCpl < cpl;

        ulong oldSp = _gpr[4];
        Segment oldSs = _seg[2];
        Segment ss = oldSs;
        ulong sp = oldSp;
        int width;
        ulong stackMask;
        if (long64)
        {
            width = 8;
            stackMask = ulong.MaxValue;
            int ist = (int)((low >> 32) & 7);
            if (outward || ist != 0)
            {
                if (!InnerStack(newCpl, ist, ext, out sp, out Segment inner))
                    return false;
                if (outward)
                    ss = inner; // a null SS at the new level
            }
            sp &= ~0xFUL;
        }
        else
        {
            width = (type & 8) != 0 ? 4 : 2;
            if (outward && !InnerStack(newCpl, 0, ext, out sp, out ss))
                return false;
            stackMask = ss.Big ? 0xFFFF_FFFFUL : 0xFFFFUL;
        }

        // The frame, from the top: [GS, FS, DS, ES,] [SS, RSP,] RFLAGS, CS, RIP[, error code].
        Span<ulong> frame = stackalloc ulong[10];
        int n = 0;
        if (fromV86)
        {
            frame[n++] = _seg[5].Selector;
            frame[n++] = _seg[4].Selector;
            frame[n++] = _seg[3].Selector;
            frame[n++] = _seg[0].Selector;
        }
        if (long64 || outward)
        {
            frame[n++] = oldSs.Selector;
            frame[n++] = oldSp;
        }
        frame[n++] = Flags;
        frame[n++] = _seg[1].Selector;
        frame[n++] = returnRip;
        if (hasError)
            frame[n++] = errorCode;
        ulong top = sp;
        for (int k = 0; k < n; k++)
        {
            top = (top - (ulong)width) & stackMask;
            ulong la = long64 ? top : (uint)(ss.Base + top);
            if (!long64 && !ss.AllowsData(top, width, true))
                return Fail(ExceptionVector.SS, outward ? (uint)(ss.Selector & ~3) + ext : ext);
            if (!SystemWrite(la, width, frame[k]))
                return false;
        }

        _seg[1] = cs with { Selector = (ushort)((selector & ~3) | newCpl) };
        if (outward)
            _seg[2] = ss;
        _gpr[4] = long64 ? top : (_gpr[4] & ~stackMask) | top;
        if (outward && !long64 && stackMask == 0xFFFF)
            _gpr[4] = top;
        if (fromV86)
        {
            // The handler starts with null data segments (the frame holds the 8086 ones).
            var unusable = new Segment(0, 0, 0, 0x1_0000);
            _seg[0] = _seg[3] = _seg[4] = _seg[5] = unusable;
        }
        Flags &= ~(Rflags.TF | (1UL << 14) | (1UL << 16) | (1UL << 17)); // TF, NT, RF, VM
        if ((type & 1) == 0)
            Flags &= ~Rflags.IF;
        _rip = width == 2 ? target & 0xFFFF : target;
        Modes();
        return true;
    }

    // Real mode: FLAGS, CS, IP on the stack, CS:IP from the 4-byte vector.
    private bool ThroughIvt(byte vector, ulong returnRip)
    {
        if (vector * 4UL + 3 > _idtrLimit)
            return Fail(ExceptionVector.GP, 0);
        if (!SystemRead(_idtrBase + vector * 4UL, 4, out ulong ivt))
            return false;
        ulong sp = _gpr[4];
        Span<ulong> frame = [Flags & 0xFFFF, _seg[1].Selector, returnRip & 0xFFFF];
        foreach (ulong v in frame)
        {
            sp = (sp - 2) & 0xFFFF;
            if (!SystemWrite((uint)(_seg[2].Base + sp), 2, v))
                return false;
        }
        _gpr[4] = (_gpr[4] & ~0xFFFFUL) | sp;
        Flags &= ~(Rflags.IF | Rflags.TF | Rflags.AC);
        ushort cs = (ushort)(ivt >> 16);
        _seg[1] = _seg[1] with { Selector = cs, Base = (ulong)cs << 4 };
        _rip = ivt & 0xFFFF;
        Modes();
        return true;
    }

    // A GDT or LDT descriptor. False with #GP(error) when the selector is outside its table.
    private bool DescriptorOf(ushort selector, out ulong descriptor, uint error)
    {
        descriptor = 0;
        bool ldt = (selector & 4) != 0;
        ulong tableBase = ldt ? _ldtr.Base : _gdtrBase;
        ulong limit = ldt ? (_ldtr.Unusable ? 0 : _ldtr.Limit) : _gdtrLimit;
        if ((ldt && _ldtr.Unusable) || (ulong)(selector | 7) > limit)
            return Fail(ExceptionVector.GP, error);
        return SystemRead(tableBase + (ulong)(selector & ~7), 8, out descriptor);
    }

    private bool SystemRead(ulong la, int size, out ulong value)
    {
        value = 0;
        return SystemAccess(la, size, false, ref value);
    }

    private bool SystemWrite(ulong la, int size, ulong value) => SystemAccess(la, size, true, ref value);

    // An implicit supervisor access (descriptor tables, the TSS, the delivery frame): translated
    // as CPL 0 would; a page fault is recorded, memory that is not RAM shuts down.
    private bool SystemAccess(ulong la, int size, bool write, ref ulong value)
    {
        PagingState supervisor = _paging with { Cpl = 0 };
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        int done = 0;
        while (done < size)
        {
            ulong a = la + (ulong)done;
            int chunk = (int)Math.Min((ulong)(size - done), 0x1000 - (a & 0xFFF));
            switch (PageWalker.Translate(_memory, in supervisor, a, write ? AccessType.Write : AccessType.Read, false, out ulong pa, out GuestFault f))
            {
                case WalkResult.Ok:
                    break;
                case WalkResult.PageFault:
                    return Fail(ExceptionVector.PF, f.ErrorCode, f.Address);
                default:
                    return FailShutdown();
            }
            bool ok = write ? _memory.WriteRam(pa, b.Slice(done, chunk)) : _memory.ReadRam(pa, b.Slice(done, chunk));
            if (!ok)
                return FailShutdown();
            done += chunk;
        }
        if (!write)
            value = BinaryPrimitives.ReadUInt64LittleEndian(b) & Alu.Mask(size);
        return true;
    }
}
