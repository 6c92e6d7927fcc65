// The software CPU's memory side: linear addresses, the page walk, RAM, exits for accesses to
// memory that is not RAM (EPT violations the vmm turns into MMIO emulation), and event delivery
// through the guest's interrupt tables.
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private ulong Linear(Register seg, ulong offset)
    {
        int i = seg - Register.ES;
        if (_bitness == Bitness.Bits64)
            return seg is Register.FS or Register.GS ? _seg[i].Base + offset : offset;
        return (uint)(_seg[i].Base + offset);
    }

    // Linear to physical; a page fault is raised in the guest (false).
    private bool Translate(ulong la, AccessType type, out ulong pa)
    {
        switch (PageWalker.Translate(_memory, in _paging, la, type, (_rflags & Rflags.AC) != 0, out pa, out GuestFault f))
        {
            case WalkResult.Ok:
                return true;
            case WalkResult.PageFault:
                Raise(ExceptionVector.PF, f.ErrorCode, f.Address);
                return false;
            default:
                Exit(VmxExitReason.TripleFault); // paging structures outside RAM: nothing sensible to do
                return false;
        }
    }

    // An access to memory that is not RAM: the EPT-violation exit the vmm emulates the
    // instruction from (RIP stays on it).
    private bool DeviceAccess(ulong pa, ulong la, AccessType type)
    {
        ulong q = (type == AccessType.Write ? 2UL : type == AccessType.Fetch ? 4UL : 1UL) | 0x80 | 0x100;
        _vmcs.Store(VmcsField.GuestPhysicalAddress, pa);
        _vmcs.Store(VmcsField.GuestLinearAddress, la);
        Exit(VmxExitReason.EptViolation, q);
        return false;
    }

    private bool Read(Register seg, ulong offset, int size, out ulong value, bool forWrite = false)
    {
        value = 0;
        ulong la = Linear(seg, offset);
        Span<byte> b = stackalloc byte[8];
        int first = (int)Math.Min((ulong)size, 0x1000 - (la & 0xFFF));
        AccessType type = forWrite ? AccessType.Write : AccessType.Read;
        if (!Translate(la, type, out ulong pa0))
            return false;
        ulong pa1 = 0;
        if (first < size && !Translate(la + (ulong)first, type, out pa1))
            return false;
        if (!_memory.ReadRam(pa0, b[..first]))
            return DeviceAccess(pa0, la, type);
        if (first < size && !_memory.ReadRam(pa1, b[first..size]))
            return DeviceAccess(pa1, la + (ulong)first, type);
        value = BinaryPrimitives.ReadUInt64LittleEndian(b) & Alu.Mask(size);
        return true;
    }

    private bool Write(Register seg, ulong offset, int size, ulong value)
    {
        ulong la = Linear(seg, offset);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        int first = (int)Math.Min((ulong)size, 0x1000 - (la & 0xFFF));
        if (!Translate(la, AccessType.Write, out ulong pa0))
            return false;
        ulong pa1 = 0;
        if (first < size && !Translate(la + (ulong)first, AccessType.Write, out pa1))
            return false;
        // Both pieces must be RAM before either is written, so a device access restarts cleanly.
        if (!_memory.IsRam(pa0))
            return DeviceAccess(pa0, la, AccessType.Write);
        if (first < size && !_memory.IsRam(pa1))
            return DeviceAccess(pa1, la + (ulong)first, AccessType.Write);
        _memory.WriteRam(pa0, b[..first]);
        if (first < size)
            _memory.WriteRam(pa1, b[first..size]);
        return true;
    }

    // Up to 15 bytes at CS:RIP; stops at a page that is not RAM or does not translate.
    private int Fetch(Span<byte> buf)
    {
        ulong ip = _rip;
        int n = 0;
        while (n < 15)
        {
            ulong la = Linear(Register.CS, ip + (ulong)n);
            int chunk = (int)Math.Min(15UL - (ulong)n, 0x1000 - (la & 0xFFF));
            if (PageWalker.Translate(_memory, in _paging, la, AccessType.Fetch, false, out ulong pa, out _) != WalkResult.Ok
                || !_memory.ReadRam(pa, buf.Slice(n, chunk)))
                break;
            n += chunk;
        }
        return n;
    }

    private bool Push(ulong value, int size)
    {
        int sw = StackWidth;
        ulong sp = (_gpr[4] - (ulong)size) & Alu.Mask(sw);
        if (!Write(Register.SS, sp, size, value))
            return false;
        SetStackPointer(sp, sw);
        return true;
    }

    private int StackWidth => _bitness == Bitness.Bits64 ? 8 : _seg[2].Big ? 4 : 2;

    private void SetStackPointer(ulong sp, int sw) => _gpr[4] = CodeSize.AddAtWidth(_gpr[4], sp - _gpr[4], sw);

    // Event delivery: real mode through the IVT, 64-bit mode through 16-byte IDT gates at the
    // current privilege level (IST and privilege changes are still to come). A failure during
    // delivery shuts the processor down (a triple fault exit) in this slice.
    private bool Deliver(byte vector, bool hasError, uint errorCode)
    {
        if ((_cr0 & PagingState.Cr0PE) == 0)
        {
            if (!ReadPhysical(_idtrBase + vector * 4UL, 4, out ulong ivt)
                || !Push(_rflags & 0xFFFF, 2) || !Push(_seg[1].Selector, 2) || !Push(_rip & 0xFFFF, 2))
                return Shutdown();
            _rflags &= ~(Rflags.IF | Rflags.TF | Rflags.AC);
            ushort cs = (ushort)(ivt >> 16);
            _seg[1] = _seg[1] with { Selector = cs, Base = (ulong)cs << 4 };
            _rip = ivt & 0xFFFF;
            Modes();
            return true;
        }
        if (_bitness != Bitness.Bits64)
            return Deliver32(vector, hasError, errorCode);
        if (vector * 16UL + 15 > _idtrLimit)
            return Shutdown();
        ulong gateLa = _idtrBase + vector * 16UL;
        if (!ReadLinear(gateLa, out ulong low) || !ReadLinear(gateLa + 8, out ulong high))
            return Shutdown();
        bool present = (low & (1UL << 47)) != 0;
        int gateType = (int)((low >> 40) & 0xF);
        if (!present || gateType is not (0xE or 0xF))
            return Shutdown();
        ulong target = (low & 0xFFFF) | ((low >> 32) & 0xFFFF_0000) | (high << 32);
        ushort selector = (ushort)(low >> 16);
        if (!ReadLinear(_gdtrBase + (ulong)(selector & ~7), out ulong descriptor))
            return Shutdown();
        ulong oldRsp = _gpr[4];
        _gpr[4] &= ~0xFUL; // the frame is 16-byte aligned
        if (!Push(_seg[2].Selector, 8) || !Push(oldRsp, 8) || !Push(_rflags, 8) || !Push(_seg[1].Selector, 8) || !Push(_rip, 8)
            || (hasError && !Push(errorCode, 8)))
            return Shutdown();
        _seg[1] = VmxConversions.SegmentFromDescriptor(descriptor, selector);
        _rip = target;
        _rflags &= ~(Rflags.TF | (1UL << 14) | (1UL << 16)); // TF, NT, RF
        if (gateType == 0xE)
            _rflags &= ~Rflags.IF;
        Modes();
        return true;
    }

    private bool ReadLinear(ulong la, out ulong value)
    {
        value = 0;
        return PageWalker.Translate(_memory, in _paging, la, AccessType.Read, true, out ulong pa, out _) == WalkResult.Ok
            && ReadPhysical(pa, 8, out value);
    }

    private bool ReadPhysical(ulong pa, int size, out ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        bool ok = _memory.ReadRam(pa, b[..size]);
        value = BinaryPrimitives.ReadUInt64LittleEndian(b);
        return ok;
    }

    private bool Shutdown()
    {
        Exit(VmxExitReason.TripleFault);
        return false;
    }
}
