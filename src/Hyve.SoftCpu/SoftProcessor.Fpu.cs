// The floating-point state as operating systems manage it: MXCSR (LDMXCSR/STMXCSR), EMMS, and
// FXSAVE/FXRSTOR of the whole 512-byte image (x87 control, status and tags, the x87 registers in
// stack order, XMM0-15, MXCSR). The x87 instructions themselves are in X87. #NM follows CR0.TS,
// #UD CR0.EM.
using System;
using System.Buffers.Binary;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private ushort _fcw = 0x037F, _fsw, _ftw = 0xFFFF, _fop;
    private ulong _fip, _fdp;
    private ushort _fcs, _fds; // the last instruction's CS and its operand's segment selector
    private uint _mxcsr = 0x1F80;

    private const uint MxcsrMask = 0xFFFF;

    // True when the instruction completed (RIP set); false when it raised.
    private bool FloatingPointState(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        // MMX, SSE and FXSAVE raise #UD under CR0.EM.
        if ((_cr0 & PagingState.Cr0EM) != 0)
            return Raise(ExceptionVector.UD);
        if ((_cr0 & (PagingState.Cr0EM | PagingState.Cr0TS)) != 0)
            return Raise(ExceptionVector.NM);
        switch (m)
        {
            case Mnemonic.Emms:
                if (!PendingErrorAllowsExecution())
                    return false;
                _ftw = 0xFFFF;
                break;
            case Mnemonic.Ldmxcsr or Mnemonic.Stmxcsr:
                {
                    if ((_cr4 & PagingState.Cr4OSFXSR) == 0)
                        return Raise(ExceptionVector.UD);
                    if (m == Mnemonic.Stmxcsr)
                    {
                        if (!Write(i.MemorySegment, Ea(), 4, _mxcsr))
                            return false;
                        break;
                    }
                    if (!Read(i.MemorySegment, Ea(), 4, out ulong v))
                        return false;
                    if ((v & ~MxcsrMask) != 0)
                        return Raise(ExceptionVector.GP);
                    _mxcsr = (uint)v;
                    break;
                }
            default: // FXSAVE, FXRSTOR (and their 64-bit forms)
                if (!SaveOrRestore(m is Mnemonic.Fxrstor or Mnemonic.Fxrstor64, m is Mnemonic.Fxsave64 or Mnemonic.Fxrstor64))
                    return false;
                break;
        }
        _rip = next;
        return true;
    }

    // The FXSAVE image: FCW, FSW, abridged FTW, FOP, FIP, FDP, MXCSR and its mask, the eight x87
    // registers in 16-byte slots, then XMM0-15 (XMM0-7 outside 64-bit mode).
    private bool SaveOrRestore(bool restore, bool wide)
    {
        ulong ea = Ea();
        Register seg = _insn.MemorySegment;
        if ((Linear(seg, ea) & 15) != 0)
            return Raise(ExceptionVector.GP);
        Span<byte> img = stackalloc byte[512];
        if (restore)
        {
            if (!ReadImage(seg, ea, img))
                return false;
            uint mxcsr = BinaryPrimitives.ReadUInt32LittleEndian(img[24..]);
            if ((mxcsr & ~MxcsrMask) != 0)
                return Raise(ExceptionVector.GP);
            LoadX87Image(img, wide);
            _mxcsr = mxcsr;
            LoadXmmImage(img);
            return true;
        }
        img.Clear();
        StoreX87Image(img, wide);
        StoreMxcsrImage(img);
        StoreXmmImage(img);
        return WriteImage(seg, ea, img);
    }

    // Reads an image of img.Length bytes (a multiple of 8) at seg:ea.
    private bool ReadImage(Register seg, ulong ea, Span<byte> img)
    {
        for (int k = 0; k < img.Length; k += 8)
        {
            if (!Read(seg, (ea + (ulong)k) & Alu.Mask(_insn.AddressSize), 8, out ulong v))
                return false;
            BinaryPrimitives.WriteUInt64LittleEndian(img[k..], v);
        }
        return true;
    }

    // Writes an image at seg:ea, probing both ends writable first so that a fault leaves memory
    // untouched.
    private bool WriteImage(Register seg, ulong ea, ReadOnlySpan<byte> img) =>
        ProbeImage(seg, ea, img.Length) && WriteImageRange(seg, ea, img, 0, img.Length);

    // Both ends of an image of size bytes writable (an image spans at most two pages).
    private bool ProbeImage(Register seg, ulong ea, int size) =>
        Read(seg, ea, 1, out _, forWrite: true) && Read(seg, (ea + (ulong)size - 1) & Alu.Mask(_insn.AddressSize), 1, out _, forWrite: true);

    // Bytes [from, to) of the image (multiples of 8) to seg:ea + from.
    private bool WriteImageRange(Register seg, ulong ea, ReadOnlySpan<byte> img, int from, int to)
    {
        for (int k = from; k < to; k += 8)
        {
            if (!Write(seg, (ea + (ulong)k) & Alu.Mask(_insn.AddressSize), 8, BinaryPrimitives.ReadUInt64LittleEndian(img[k..])))
                return false;
        }
        return true;
    }

    // The x87 part of the image (bytes 0-23 but MXCSR, and the registers at 32-159).
    private void LoadX87Image(ReadOnlySpan<byte> img, bool wide)
    {
        _fcw = BinaryPrimitives.ReadUInt16LittleEndian(img);
        _fsw = BinaryPrimitives.ReadUInt16LittleEndian(img[2..]);
        byte abridged = img[4];
        _ftw = 0;
        for (int r = 0; r < 8; r++)
            _ftw |= (ushort)(((abridged >> r) & 1) != 0 ? 0 : 3 << (2 * r)); // valid, or empty
        _fop = BinaryPrimitives.ReadUInt16LittleEndian(img[6..]);
        _fip = wide ? BinaryPrimitives.ReadUInt64LittleEndian(img[8..]) : BinaryPrimitives.ReadUInt32LittleEndian(img[8..]);
        _fdp = wide ? BinaryPrimitives.ReadUInt64LittleEndian(img[16..]) : BinaryPrimitives.ReadUInt32LittleEndian(img[16..]);
        _fcs = wide ? (ushort)0 : BinaryPrimitives.ReadUInt16LittleEndian(img[12..]);
        _fds = wide ? (ushort)0 : BinaryPrimitives.ReadUInt16LittleEndian(img[20..]);
        for (int k = 0; k < 8; k++)
        {
            int p = Physical(k); // the image holds ST0-ST7 in stack order
            _area.Mm[p] = BinaryPrimitives.ReadUInt64LittleEndian(img[(32 + 16 * k)..]);
            _fprHigh[p] = BinaryPrimitives.ReadUInt16LittleEndian(img[(40 + 16 * k)..]);
        }
    }

    private void StoreX87Image(Span<byte> img, bool wide)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(img, _fcw);
        BinaryPrimitives.WriteUInt16LittleEndian(img[2..], _fsw);
        byte tags = 0;
        for (int r = 0; r < 8; r++)
        {
            if (((_ftw >> (2 * r)) & 3) != 3)
                tags |= (byte)(1 << r);
        }
        img[4] = tags;
        BinaryPrimitives.WriteUInt16LittleEndian(img[6..], _fop);
        // The 32-bit image keeps FCS and FDS beside 32-bit pointers; the 64-bit one has 64-bit pointers.
        BinaryPrimitives.WriteUInt64LittleEndian(img[8..], wide ? _fip : (uint)_fip | ((ulong)_fcs << 32));
        BinaryPrimitives.WriteUInt64LittleEndian(img[16..], wide ? _fdp : (uint)_fdp | ((ulong)_fds << 32));
        for (int k = 0; k < 8; k++)
        {
            int p = Physical(k);
            BinaryPrimitives.WriteUInt64LittleEndian(img[(32 + 16 * k)..], _area.Mm[p]);
            BinaryPrimitives.WriteUInt16LittleEndian(img[(40 + 16 * k)..], _fprHigh[p]);
        }
    }

    private void StoreMxcsrImage(Span<byte> img)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(img[24..], _mxcsr);
        BinaryPrimitives.WriteUInt32LittleEndian(img[28..], MxcsrMask);
    }

    // XMM0-15 at 160 (XMM0-7 outside 64-bit mode).
    private int ImageXmms => _bitness == Bitness.Bits64 ? 16 : 8;

    private void LoadXmmImage(ReadOnlySpan<byte> img)
    {
        for (int x = 0; x < ImageXmms; x++)
            _area.Xmm[x] = BinaryPrimitives.ReadUInt128LittleEndian(img[(160 + 16 * x)..]);
    }

    private void StoreXmmImage(Span<byte> img)
    {
        for (int x = 0; x < ImageXmms; x++)
            BinaryPrimitives.WriteUInt128LittleEndian(img[(160 + 16 * x)..], _area.Xmm[x]);
    }
}
