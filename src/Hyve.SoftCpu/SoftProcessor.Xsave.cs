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
    private const ulong Cr4OsXsave = 1UL << 18;
    private const ulong ComponentX87 = 1, ComponentSse = 2, ComponentAvx = 4;

    // True when the instruction completed (RIP set); false when it raised or exited.
    private bool ExtendedState(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        if ((_features & CpuFeatures.Xsave) == 0 || (_cr4 & Cr4OsXsave) == 0)
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
        Span<byte> img = stackalloc byte[(_area.Xcr0 & ComponentAvx) != 0 ? 832 : 576];
        if (!ReadImage(seg, ea, img))
            return false;
        Span<byte> header = img[512..];
        ulong xstateBv = BinaryPrimitives.ReadUInt64LittleEndian(header);
        if (!restore)
        {
            if ((rfbm & ComponentX87) != 0)
                StoreX87Image(img, wide);
            if ((rfbm & (ComponentSse | ComponentAvx)) != 0)
                StoreMxcsrImage(img);
            if ((rfbm & ComponentSse) != 0)
                StoreXmmImage(img);
            if ((rfbm & ComponentAvx) != 0)
            {
                for (int x = 0; x < ImageXmms; x++)
                    BinaryPrimitives.WriteUInt128LittleEndian(img[(576 + 16 * x)..], _area.YmmHigh[x]);
            }
            // Only XSTATE_BV changes in the header: the requested components are all in use.
            BinaryPrimitives.WriteUInt64LittleEndian(header, (xstateBv & ~rfbm) | rfbm);
            return WriteImage(seg, ea, img);
        }
        // The standard form: XCOMP_BV and the next eight bytes zero, no component XCR0 lacks, and a
        // valid MXCSR, all checked before anything is loaded.
        ulong xcompBv = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        ulong reserved = BinaryPrimitives.ReadUInt64LittleEndian(header[16..]);
        if (xcompBv != 0 || reserved != 0 || (xstateBv & ~_area.Xcr0) != 0)
            return Raise(ExceptionVector.GP);
        uint mxcsr = BinaryPrimitives.ReadUInt32LittleEndian(img[24..]);
        bool loadMxcsr = (rfbm & (ComponentSse | ComponentAvx)) != 0;
        if (loadMxcsr && (mxcsr & ~MxcsrMask) != 0)
            return Raise(ExceptionVector.GP);
        if ((rfbm & ComponentX87) != 0)
        {
            if ((xstateBv & ComponentX87) != 0)
                LoadX87Image(img, wide);
            else
                InitialiseX87();
        }
        // MXCSR comes from memory whether or not SSE's XSTATE_BV bit is set.
        if (loadMxcsr)
            _mxcsr = mxcsr;
        if ((rfbm & ComponentSse) != 0)
        {
            if ((xstateBv & ComponentSse) != 0)
                LoadXmmImage(img);
            else
                Array.Clear(_area.Xmm, 0, ImageXmms);
        }
        if ((rfbm & ComponentAvx) != 0)
        {
            for (int x = 0; x < ImageXmms; x++)
                _area.YmmHigh[x] = (xstateBv & ComponentAvx) != 0 ? BinaryPrimitives.ReadUInt128LittleEndian(img[(576 + 16 * x)..]) : 0;
        }
        return true;
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
