// The software CPU's instructions with rules of their own: the flags image (PUSHF/POPF,
// LAHF/SAHF), XLAT, ENTER, CMPXCHG8B/16B, software interrupts (INT n, INT3, INTO, INT1), UD0-2,
// the time-stamp counter, RDRAND/RDSEED (a seeded generator), RDPMC (no counters), cache and TLB maintenance (no caches or TLB to maintain here),
// SWAPGS, CLTS, LMSW/SMSW, SGDT/SIDT, STR/SLDT, LTR/LLDT and the debug registers.
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const ulong FlagRf = 1UL << 16, FlagVm = 1UL << 17, FlagNt = 1UL << 14, FlagId = 1UL << 21, FlagIopl = 3UL << 12;
    private readonly ulong[] _dr = [0, 0, 0, 0, 0, 0, 0xFFFF_0FF0, 0x400];

    private int Iopl => (int)((Flags >> 12) & 3);

    // True when the instruction completed (RIP is set here); false when it raised or exited.
    private bool Special(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Pushf or Mnemonic.Pushfd or Mnemonic.Pushfq or Mnemonic.Popf or Mnemonic.Popfd when _v86 && Iopl < 3:
                return V86Flags(m is Mnemonic.Pushf or Mnemonic.Pushfd or Mnemonic.Pushfq, i.OperandSize, next);
            case Mnemonic.Pushf or Mnemonic.Pushfd or Mnemonic.Pushfq:
                if (!Push(Flags & ~(FlagRf | FlagVm) & Alu.Mask(i.OperandSize), i.OperandSize))
                    return false;
                break;
            case Mnemonic.Popf or Mnemonic.Popfd or Mnemonic.Popfq:
                {
                    int size = i.OperandSize;
                    int sw = StackWidth;
                    if (!Read(Register.SS, _gpr[4] & Alu.Mask(sw), size, out ulong v))
                        return false;
                    SetStackPointer((_gpr[4] + (ulong)size) & Alu.Mask(sw), sw);
                    // IOPL changes only at CPL 0, IF only when CPL <= IOPL; VM, VIF and VIP never here.
                    ulong writable = Rflags.Status | Rflags.TF | Rflags.DF | FlagNt | Rflags.AC | FlagId;
                    if (Cpl == 0)
                        writable |= FlagIopl;
                    if (Cpl <= Iopl || (_cr0 & PagingState.Cr0PE) == 0)
                        writable |= Rflags.IF;
                    writable &= Alu.Mask(size);
                    Flags = ((Flags & ~writable) | (v & writable) | Rflags.Fixed1) & ~FlagRf;
                    break;
                }
            case Mnemonic.Lahf:
                _gpr[0] = (_gpr[0] & ~0xFF00UL) | (((Flags & 0xD5) | 2) << 8);
                break;
            case Mnemonic.Sahf:
                Flags = (Flags & ~0xD5UL) | ((_gpr[0] >> 8) & 0xD5);
                break;
            case Mnemonic.Xlatb:
                {
                    ulong ea = ((i.MemoryBase == Register.None ? 0 : Get(i.MemoryBase)) + (_gpr[0] & 0xFF)) & Alu.Mask(i.AddressSize);
                    if (!Read(i.MemorySegment, ea, 1, out ulong v))
                        return false;
                    _gpr[0] = (_gpr[0] & ~0xFFUL) | v;
                    break;
                }
            case Mnemonic.Enter:
                if (!EnterFrame((int)(i.Immediate & 0xFFFF), (int)(i.Immediate2 & 0x1F)))
                    return false;
                break;
            case Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b:
                if (!CompareExchangeDouble(m == Mnemonic.Cmpxchg16b ? 8 : 4))
                    return false;
                break;
            case Mnemonic.Int:
                return _v86 ? V86SoftwareInterrupt((byte)i.Immediate, next) : SoftwareEvent((byte)i.Immediate, EventSource.Software, next);
            case Mnemonic.Int3:
                return SoftwareEvent(ExceptionVector.BP, EventSource.SoftwareException, next);
            case Mnemonic.Into:
                if ((Flags & Rflags.OF) != 0)
                    return SoftwareEvent(4, EventSource.SoftwareException, next);
                break;
            case Mnemonic.Int1:
                return SoftwareEvent(ExceptionVector.DB, EventSource.PrivilegedSoftware, next);
            case Mnemonic.Clac or Mnemonic.Stac:
                // SMAP's AC flag: CPL 0 only (#UD elsewhere, as the SDM says).
                if (Cpl != 0)
                    return Raise(ExceptionVector.UD);
                Flags = m == Mnemonic.Stac ? Flags | Rflags.AC : Flags & ~Rflags.AC;
                break;
            case Mnemonic.Wait:
                // CR0.MP with TS raises #NM; then a pending unmasked x87 exception raises #MF.
                if ((_cr0 & (PagingState.Cr0TS | 2)) == (PagingState.Cr0TS | 2))
                    return Raise(ExceptionVector.NM);
                if (!PendingErrorAllowsExecution())
                    return false;
                break;
            case Mnemonic.Ud0 or Mnemonic.Ud1 or Mnemonic.Ud2:
                return Raise(ExceptionVector.UD);
            case Mnemonic.Rdpmc:
                // Every processor has RDPMC; this one has no performance counters (CPUID leaf 0xA
                // reports none), so every index in ECX is invalid: #GP(0), as it is at CPL > 0
                // without CR4.PCE.
                return Raise(ExceptionVector.GP);
            case Mnemonic.Rdtsc or Mnemonic.Rdtscp:
                {
                    if (m == Mnemonic.Rdtscp && (_features & CpuFeatures.Rdtscp) == 0)
                        return Raise(ExceptionVector.UD);
                    if ((_cr4 & (1UL << 2)) != 0 && Cpl != 0)
                        return Raise(ExceptionVector.GP); // CR4.TSD
                    ulong tsc = (ulong)_clock.Now + _vmcs.Load(VmcsField.TscOffset);
                    _gpr[0] = (uint)tsc;
                    _gpr[2] = tsc >> 32;
                    if (m == Mnemonic.Rdtscp)
                        _gpr[1] = (uint)_area.TscAux;
                    break;
                }
            case Mnemonic.Rdrand or Mnemonic.Rdseed:
                {
                    if ((_features & (m == Mnemonic.Rdrand ? CpuFeatures.Rdrand : CpuFeatures.Rdseed)) == 0)
                        return Raise(ExceptionVector.UD);
                    // Always a value (CF = 1), the other status flags clear.
                    Set(i.GetRegister(0), NextRandom()); // the register's width of it
                    Flags = (Flags & ~Rflags.Status) | Rflags.CF;
                    break;
                }
            case Mnemonic.Wbinvd or Mnemonic.Invd or Mnemonic.Invlpg or Mnemonic.Clts:
                if (Cpl != 0)
                    return Raise(ExceptionVector.GP);
                if (m == Mnemonic.Clts)
                {
                    _cr0 &= ~PagingState.Cr0TS;
                    Modes();
                }
                if (m == Mnemonic.Invlpg)
                    FlushTlb();
                break; // no caches to write back
            case Mnemonic.Swapgs:
                {
                    if (_bitness != Bitness.Bits64)
                        return Raise(ExceptionVector.UD);
                    if (Cpl != 0)
                        return Raise(ExceptionVector.GP);
                    ulong gs = _seg[5].Base;
                    _seg[5] = _seg[5] with { Base = _area.KernelGsBase };
                    _area.KernelGsBase = gs;
                    break;
                }
            case Mnemonic.Smsw:
                if (!Destination(i.GetOperandKind(0) == OperandKind.Memory ? 2 : RegisterInfo.GprNumber(i.GetRegister(0)).Size, _cr0))
                    return false;
                break;
            case Mnemonic.Lmsw:
                {
                    if (Cpl != 0)
                        return Raise(ExceptionVector.GP);
                    if (!Source(0, 2, out ulong v))
                        return false;
                    // The low four bits; PE can be set but not cleared this way.
                    _cr0 = (_cr0 & ~0xEUL) | (v & 0xE) | ((_cr0 | v) & 1);
                    Modes();
                    break;
                }
            case Mnemonic.Sgdt or Mnemonic.Sidt:
                {
                    bool gdt = m == Mnemonic.Sgdt;
                    ulong ea = Ea();
                    ulong b = gdt ? _gdtrBase : _idtrBase;
                    if (!Write(i.MemorySegment, ea, 2, gdt ? _gdtrLimit : _idtrLimit)
                        || !Write(i.MemorySegment, (ea + 2) & Alu.Mask(i.AddressSize), _bitness == Bitness.Bits64 ? 8 : 4, b))
                        return false;
                    break;
                }
            case Mnemonic.Str or Mnemonic.Sldt:
                {
                    if (RealAddressing)
                        return Raise(ExceptionVector.UD);
                    ushort sel = m == Mnemonic.Str ? _tr.Selector : _ldtr.Selector;
                    int size = i.GetOperandKind(0) == OperandKind.Memory ? 2 : RegisterInfo.GprNumber(i.GetRegister(0)).Size;
                    if (!Destination(size, sel))
                        return false;
                    break;
                }
            case Mnemonic.Ltr or Mnemonic.Lldt:
                if (!LoadSystemSegment(m == Mnemonic.Ltr))
                    return false;
                break;
            case Mnemonic.Verr or Mnemonic.Verw or Mnemonic.Lar or Mnemonic.Lsl:
                if (!SegmentQuery(m))
                    return false;
                break;
            case Mnemonic.Mov:
                if (!MovDebug())
                    return false;
                break;
            default:
                return RaiseUnimplemented();
        }
        _rip = next;
        return true;
    }

    // VERR, VERW, LAR and LSL: what a selector's descriptor allows, answered in ZF (and for LAR
    // and LSL its access rights or limit), never with a fault for the selector itself.
    private bool SegmentQuery(Mnemonic m)
    {
        if (RealAddressing)
            return Raise(ExceptionVector.UD);
        bool verify = m is Mnemonic.Verr or Mnemonic.Verw;
        if (!Source(verify ? 0 : 1, 2, out ulong raw))
            return false;
        ushort selector = (ushort)raw;
        bool ldt = (selector & 4) != 0;
        ulong limit = ldt ? (_ldtr.Unusable ? 0 : _ldtr.Limit) : _gdtrLimit;
        bool valid = false;
        ulong d = 0;
        if ((selector & ~3) != 0 && !(ldt && _ldtr.Unusable) && (ulong)(selector | 7) <= limit)
        {
            if (!SystemRead((ldt ? _ldtr.Base : _gdtrBase) + (ulong)(selector & ~7), 8, out d))
                return false;
            int type = (int)(d >> 40) & 0xF;
            bool codeOrData = ((d >> 44) & 1) != 0;
            int dpl = (int)(d >> 45) & 3;
            bool conformingCode = codeOrData && (type & 0xC) == 0xC;
            // A conforming code segment answers at every level (VERW never allows code anyway).
            bool privileged = conformingCode || (Cpl <= dpl && (selector & 3) <= dpl);
            bool long64 = (_efer & PagingState.EferLMA) != 0; // IA-32e mode: 64-bit and compatibility mode
            valid = privileged && m switch
            {
                Mnemonic.Verr => codeOrData && ((type & 8) == 0 || (type & 2) != 0),
                Mnemonic.Verw => codeOrData && (type & 8) == 0 && (type & 2) != 0,
                Mnemonic.Lar => codeOrData || (long64 ? type is 2 or 9 or 0xB or 0xC : type is 1 or 2 or 3 or 4 or 5 or 9 or 0xB or 0xC),
                _ => codeOrData || (long64 ? type is 2 or 9 or 0xB : type is 1 or 2 or 3 or 9 or 0xB),
            };
        }
        ref ulong flags = ref Flags;
        flags = valid ? flags | Rflags.ZF : flags & ~Rflags.ZF;
        if (!valid || verify)
            return true;
        ulong value;
        if (m == Mnemonic.Lar)
            value = (d >> 32) & 0x00F0_FF00;
        else
        {
            value = (d & 0xFFFF) | ((d >> 32) & 0xF_0000);
            if (((d >> 55) & 1) != 0)
                value = (value << 12) | 0xFFF; // 4 KiB granularity
        }
        Set(_insn.GetRegister(0), value);
        return true;
    }

    // ENTER size, level: push RBP, copy level-1 frame pointers, set RBP, reserve size bytes.
    private bool EnterFrame(int size, int level)
    {
        ulong rsp = _gpr[4];
        if (EnterSteps(size, level))
            return true;
        _gpr[4] = rsp; // faults are precise: RSP as before the instruction
        return false;
    }

    private bool EnterSteps(int size, int level)
    {
        int sw = StackWidth;
        int os = _insn.OperandSize;
        ulong mask = Alu.Mask(sw);
        ulong rbp = _gpr[5];
        if (!Push(rbp, os))
            return false;
        ulong frame = _gpr[4] & mask;
        for (int k = 1; k < level; k++)
        {
            rbp = (rbp - (ulong)os) & mask;
            if (!Read(Register.SS, rbp, os, out ulong v) || !Push(v, os))
                return false;
        }
        if (level > 0 && !Push(frame, os))
            return false;
        ulong sp = (_gpr[4] - (ulong)size) & mask;
        // The final stack must be writable: touch it before committing.
        if (size > 0 && !Read(Register.SS, sp, 1, out _, forWrite: true))
            return false;
        _gpr[5] = CodeSize.AddAtWidth(_gpr[5], frame - _gpr[5], os);
        SetStackPointer(sp, sw);
        return true;
    }

    // CMPXCHG8B/16B: EDX:EAX (RDX:RAX) against memory; equal stores ECX:EBX (RCX:RBX).
    private bool CompareExchangeDouble(int half)
    {
        ulong ea = Ea();
        Register seg = _insn.MemorySegment;
        if (half == 8 && (Linear(seg, ea) & 15) != 0)
            return Raise(ExceptionVector.GP);
        ulong next = (ea + (ulong)half) & Alu.Mask(_insn.AddressSize);
        if (!Read(seg, ea, half, out ulong lo, forWrite: true) || !Read(seg, next, half, out ulong hi, forWrite: true))
            return false;
        ulong mask = Alu.Mask(half);
        bool equal = lo == (_gpr[0] & mask) && hi == (_gpr[2] & mask);
        // The destination is written either way (the old value back on failure), as locked hardware does.
        ulong newLo = equal ? _gpr[3] & mask : lo, newHi = equal ? _gpr[1] & mask : hi;
        if (!Write(seg, ea, half, newLo) || !Write(seg, next, half, newHi))
            return false;
        if (equal)
            Flags |= Rflags.ZF;
        else
        {
            Flags &= ~Rflags.ZF;
            _gpr[0] = half == 8 ? lo : lo & 0xFFFF_FFFF;
            _gpr[2] = half == 8 ? hi : hi & 0xFFFF_FFFF;
        }
        return true;
    }

    // LTR marks the TSS busy; LLDT takes an LDT descriptor (or a null selector). Both read
    // 16-byte descriptors in IA-32e mode.
    private bool LoadSystemSegment(bool task)
    {
        if (RealAddressing)
            return Raise(ExceptionVector.UD);
        if (Cpl != 0)
            return Raise(ExceptionVector.GP);
        if (!Source(0, 2, out ulong v))
            return false;
        ushort selector = (ushort)v;
        uint error = (uint)(selector & ~3);
        if ((selector & ~3) == 0)
        {
            if (task)
                return Raise(ExceptionVector.GP);
            _ldtr = new Segment(selector, 0, 0, 0x1_0000);
            return true;
        }
        bool long64 = (_efer & PagingState.EferLMA) != 0;
        if ((selector & 4) != 0 || (ulong)(selector & ~7) + (long64 ? 15UL : 7UL) > _gdtrLimit)
            return Raise(ExceptionVector.GP, error);
        ulong la = _gdtrBase + (ulong)(selector & ~7);
        ulong high = 0;
        if (!SystemRead(la, 8, out ulong low) || (long64 && !SystemRead(la + 8, 8, out high)))
            return RaiseFault();
        Segment s = VmxConversions.SegmentFromDescriptor(low, selector);
        int type = s.Type;
        bool ok = (s.Access & 0x10) == 0 && (task ? (long64 ? type == 0x9 : type is 0x1 or 0x9) : type == 0x2);
        if (!ok)
            return Raise(ExceptionVector.GP, error);
        if ((s.Access & 0x80) == 0)
            return Raise(VectorNp, error);
        if (long64)
            s = s with { Base = (s.Base & 0xFFFF_FFFF) | (high << 32) };
        if (task)
        {
            // Busy in the descriptor and in the register.
            if (!SystemWrite(la, 8, low | (2UL << 40)))
                return RaiseFault();
            s = s with { Access = s.Access | 2 };
            _tr = s;
        }
        else
            _ldtr = s;
        return true;
    }

    // A fault a system access recorded, raised from the current instruction.
    private bool RaiseFault() => _faultShutdown ? Shutdown() : Raise(_faultVector, _faultError, _faultCr2);

    // MOV to or from DR0-DR7 (DR4/DR5 alias DR6/DR7 unless CR4.DE).
    private bool MovDebug()
    {
        bool toDr = SpecialMove(Register.DR0, Register.DR15, out int n, out Register gpr);
        if (Cpl != 0)
            return Raise(ExceptionVector.GP);
        if (n is 4 or 5)
        {
            if ((_cr4 & (1UL << 3)) != 0)
                return Raise(ExceptionVector.UD);
            n += 2;
        }
        if (n > 7)
            return Raise(ExceptionVector.UD);
        if (!toDr)
        {
            Set(gpr, _dr[n]);
            return true;
        }
        ulong v = Get(gpr);
        _dr[n] = n switch
        {
            6 => (v & 0x0000_E00F) | 0xFFFF_0FF0,
            7 => (v & 0xFFFF_2BFF) | 0x400,
            _ => v,
        };
        return true;
    }
}
