// The software CPU's memory side: linear addresses, the page walk, RAM, and exits for accesses
// to memory that is not RAM (EPT violations the vmm turns into MMIO emulation).
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

    // Outside 64-bit mode every data access is checked against its segment: usable, readable or
    // writable as asked, and inside the limit (expand-down segments above it; real mode only the
    // limit). #SS(0) for the stack segment, #GP(0) for the others.
    private bool SegmentAllows(Register seg, ulong offset, int size, bool write)
    {
        ref readonly Segment s = ref _seg[seg - Register.ES];
        bool ok = RealAddressing ? offset + (ulong)size - 1 <= s.Limit : s.AllowsData(offset, size, write);
        return ok || Raise(seg == Register.SS ? ExceptionVector.SS : ExceptionVector.GP);
    }

    // Linear to physical; a page fault is raised in the guest (false).
    private bool Translate(ulong la, AccessType type, out ulong pa)
    {
        switch (PageWalker.Translate(_memory, in _paging, la, type, (_flags & Rflags.AC) != 0, out pa, out GuestFault f))
        {
            case WalkResult.Ok:
                return true;
            case WalkResult.PageFault:
                return Raise(ExceptionVector.PF, f.ErrorCode, f.Address);
            default:
                return Shutdown(); // paging structures outside RAM: nothing sensible to do
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

    // In 64-bit mode both ends of an access must be canonical: #SS(0) for stack references,
    // #GP(0) for the rest.
    private bool Canonical(Register seg, ulong la, int size)
    {
        if (_bitness != Bitness.Bits64 || (_paging.IsCanonical(la) && _paging.IsCanonical(la + (ulong)size - 1)))
            return true;
        return Raise(seg == Register.SS ? ExceptionVector.SS : ExceptionVector.GP);
    }

    private bool Read(Register seg, ulong offset, int size, out ulong value, bool forWrite = false)
    {
        value = 0;
        if (_bitness != Bitness.Bits64 && !SegmentAllows(seg, offset, size, forWrite))
            return false;
        ulong la = Linear(seg, offset);
        if (!Canonical(seg, la, size) || !Aligned(la, size))
            return false;
        int kind = forWrite ? KindWrite : KindRead;
        if (TryReadFast(la, size, kind, out value))
            return true;
        Span<byte> b = stackalloc byte[8];
        int first = (int)Math.Min((ulong)size, 0x1000 - (la & 0xFFF));
        AccessType type = forWrite ? AccessType.Write : AccessType.Read;
        if (!Translate(la, type, out ulong pa0))
            return false;
        if (first == size)
            TlbFill(la, pa0, kind);
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
        if (_bitness != Bitness.Bits64 && !SegmentAllows(seg, offset, size, write: true))
            return false;
        ulong la = Linear(seg, offset);
        if (!Canonical(seg, la, size) || !Aligned(la, size))
            return false;
        NoteStore(la, size);
        if (TryWriteFast(la, size, value))
            return true;
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        int first = (int)Math.Min((ulong)size, 0x1000 - (la & 0xFFF));
        if (!Translate(la, AccessType.Write, out ulong pa0))
            return false;
        if (first == size)
            TlbFill(la, pa0, KindWrite);
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

}
