// The XSAVE feature set: XGETBV, XSETBV, XSAVE and XRSTOR in the standard (non-compacted) format,
// for the state components XCR0 enables (x87 and SSE: both in the 512-byte legacy region laid out
// as FXSAVE's, then the 64-byte header with XSTATE_BV and XCOMP_BV, then AVX's upper halves of
// YMM0-15 at 576). XSETBV is always a VM exit
// under VMX once CPL 0 and CR4.OSXSAVE are checked: the vmm validates the value and sets XCR0, as
// bhyve's vmx_emulate_xsetbv does. Every component counts as in use (XINUSE all ones), which the
// SDM allows, so XSAVE writes every requested component and sets its XSTATE_BV bit. XSAVEOPT may
// skip components in their initial state or unmodified since the last XRSTOR; writing them all, as
// XSAVE does, is one of the behaviours the SDM permits.
using System;
using System.Buffers.Binary;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{

    // True when the instruction completed (RIP set); false when it raised or exited.
    private bool ExtendedState(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        if ((_features & CpuFeatures.Xsave) == 0 || (_cr4 & PagingState.Cr4OSXSAVE) == 0)
            return Raise(ExceptionVector.UD);
        switch (m)
        {
            case Mnemonic.Xgetbv:
                {
                    if ((uint)_gpr[1] != 0)
                        return Raise(ExceptionVector.GP); // only XCR0 (XGETBV with ECX 1 is not offered)
                    ulong xcr0 = _area.Xcr0;
                    _gpr[0] = (uint)xcr0;
                    _gpr[2] = xcr0 >> 32;
                    break;
                }
            case Mnemonic.Xsetbv:
                if (Cpl != 0)
                    return Raise(ExceptionVector.GP);
                Exit(VmxExitReason.Xsetbv, 0, i.Length);
                return false;
            default:
                if ((_cr0 & PagingState.Cr0TS) != 0)
                    return Raise(ExceptionVector.NM);
                if (!SaveOrRestoreExtended(m is Mnemonic.Xrstor or Mnemonic.Xrstor64, m is Mnemonic.Xsave64 or Mnemonic.Xrstor64 or Mnemonic.Xsaveopt64))
                    return false;
                break;
        }
        _rip = next;
        return true;
    }

    // XSAVE or XRSTOR of the components in RFBM = XCR0 & EDX:EAX, at a 64-byte aligned area.
    private bool SaveOrRestoreExtended(bool restore, bool wide)
    {
        ulong ea = Ea();
        Register seg = _insn.MemorySegment;
        if ((Linear(seg, ea) & 63) != 0)
            return Raise(ExceptionVector.GP);
        ulong rfbm = _area.Xcr0 & ((_gpr[2] << 32) | (uint)_gpr[0]);
        Span<byte> img = stackalloc byte[(_area.Xcr0 & Xcr0.Avx) != 0 ? 832 : 576];
        if (!restore)
            return SaveExtended(seg, ea, img, rfbm, wide);
        if (!ReadImage(seg, ea, img))
            return false;
        Span<byte> header = img[512..];
        ulong xstateBv = BinaryPrimitives.ReadUInt64LittleEndian(header);
        // The standard form: XCOMP_BV and the next eight bytes zero, no component XCR0 lacks, and a
        // valid MXCSR, all checked before anything is loaded.
        ulong xcompBv = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        ulong reserved = BinaryPrimitives.ReadUInt64LittleEndian(header[16..]);
        if (xcompBv != 0 || reserved != 0 || (xstateBv & ~_area.Xcr0) != 0)
            return Raise(ExceptionVector.GP);
        uint mxcsr = BinaryPrimitives.ReadUInt32LittleEndian(img[24..]);
        bool loadMxcsr = (rfbm & (Xcr0.Sse | Xcr0.Avx)) != 0;
        if (loadMxcsr && (mxcsr & ~MxcsrMask) != 0)
            return Raise(ExceptionVector.GP);
        if ((rfbm & Xcr0.X87) != 0)
        {
            if ((xstateBv & Xcr0.X87) != 0)
                LoadX87Image(img, wide);
            else
                InitialiseX87();
        }
        // MXCSR comes from memory whether or not SSE's XSTATE_BV bit is set.
        if (loadMxcsr)
            _mxcsr = mxcsr;
        if ((rfbm & Xcr0.Sse) != 0)
        {
            if ((xstateBv & Xcr0.Sse) != 0)
                LoadXmmImage(img);
            else
                Array.Clear(_area.Xmm, 0, ImageXmms);
        }
        if ((rfbm & Xcr0.Avx) != 0)
        {
            for (int x = 0; x < ImageXmms; x++)
                _area.YmmHigh[x] = (xstateBv & Xcr0.Avx) != 0 ? BinaryPrimitives.ReadUInt128LittleEndian(img[(576 + 16 * x)..]) : 0;
        }
        return true;
    }

    // XSAVE writes the requested components' bytes and XSTATE_BV, nothing else of the area: the
    // header's XSTATE_BV is the one thing read (its other bits are kept), and the whole area is
    // checked writable before the first write, so a fault leaves memory untouched.
    private bool SaveExtended(Register seg, ulong ea, Span<byte> img, ulong rfbm, bool wide)
    {
        ulong mask = Alu.Mask(_insn.AddressSize);
        if (!Read(seg, (ea + 512) & mask, 8, out ulong xstateBv, forWrite: true) || !ProbeImage(seg, ea, img.Length))
            return false;
        int xmmEnd = 160 + 16 * ImageXmms;
        if ((rfbm & Xcr0.X87) != 0)
        {
            StoreX87Image(img, wide);
            if (!WriteImageRange(seg, ea, img, 0, 24) || !WriteImageRange(seg, ea, img, 32, 160))
                return false;
        }
        if ((rfbm & (Xcr0.Sse | Xcr0.Avx)) != 0)
        {
            StoreMxcsrImage(img);
            if (!WriteImageRange(seg, ea, img, 24, 32))
                return false;
        }
        if ((rfbm & Xcr0.Sse) != 0)
        {
            StoreXmmImage(img);
            if (!WriteImageRange(seg, ea, img, 160, xmmEnd))
                return false;
        }
        if ((rfbm & Xcr0.Avx) != 0)
        {
            for (int x = 0; x < ImageXmms; x++)
                BinaryPrimitives.WriteUInt128LittleEndian(img[(576 + 16 * x)..], _area.YmmHigh[x]);
            if (!WriteImageRange(seg, ea, img, 576, 576 + 16 * ImageXmms))
                return false;
        }
        // Only XSTATE_BV changes in the header: the requested components are all in use.
        return Write(seg, (ea + 512) & mask, 8, (xstateBv & ~rfbm) | rfbm);
    }

    // The x87 component's initial state: FNINIT's, with the registers zero.
    private void InitialiseX87()
    {
        _fcw = 0x037F;
        _fsw = 0;
        _ftw = 0xFFFF;
        _fop = 0;
        _fip = _fdp = 0;
        _fcs = _fds = 0;
        Array.Clear(_area.Mm);
        Array.Clear(_fprHigh);
    }
}
