// The software CPU's instruction step: fetch, decode with the shared decoder, execute with the
// shared flag arithmetic. Instructions that leave VMX non-root operation (IN/OUT, HLT, CPUID,
// RDMSR/WRMSR) exit with RIP on them, as VMX reports them.
using System;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    // One instruction. False when it raised or the processor exits (the exit information is stored).
    private bool Step()
    {
        int slot = LookupInstruction(Linear(Register.CS, _rip));
        if (slot >= 0)
        {
            ref FastForm f = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_icacheFast), slot);
            if (!FetchAllowed(f.Length))
                return false;
            if (f.Kind != Fast.None)
                return RunFast(ref f);
            _insn = _icacheInsn[slot];
            return Execute((_rip + _insn.Length) & IpMask);
        }
        Span<byte> bytes = stackalloc byte[15];
        int n = Fetch(bytes);
        DecodeStatus ds = Decoder.Decode(bytes[..n], _bitness, out _insn);
        if (ds == DecodeStatus.NoMoreBytes)
        {
            // The rest of the instruction is not fetchable: a page fault, or code in device memory.
            ulong la = Linear(Register.CS, _rip + (ulong)n);
            if (!Translate(la, AccessType.Fetch, out ulong pa))
                return false;
            return DeviceAccess(pa, la, AccessType.Fetch);
        }
        if (ds != DecodeStatus.Ok)
            return Raise(ds == DecodeStatus.TooLong ? ExceptionVector.GP : ExceptionVector.UD);
        if (!FetchAllowed(_insn.Length))
            return false;
        ulong next = (_rip + _insn.Length) & IpMask;
        return Execute(next);
    }

    // Outside 64-bit mode the whole instruction must lie within CS's limit: #GP(0) otherwise.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool FetchAllowed(int length) =>
        _bitness == Bitness.Bits64 || _rip + (ulong)length - 1 <= _seg[1].Limit || Raise(ExceptionVector.GP);

    private ulong IpMask => _ipMask;

    private bool Execute(ulong next)
    {
        // LOCK (and XCHG with memory, locked without it) must be atomic against other vCPUs'
        // locked instructions, which run on other host threads.
        if ((_insn.Prefixes & Prefixes.Lock) != 0 || (_insn.Mnemonic == Mnemonic.Xchg && _insn.MemorySize != 0))
        {
            lock (_memory.Atomic)
                return ExecuteOne(next);
        }
        return ExecuteOne(next);
    }

    private bool ExecuteOne(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        Mnemonic m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Nop or Mnemonic.Pause or Mnemonic.Lfence or Mnemonic.Mfence or Mnemonic.Sfence or Mnemonic.Endbr64 or Mnemonic.Endbr32:
                break;
            case Mnemonic.Hlt:
                if (Cpl != 0)
                    return Raise(ExceptionVector.GP);
                Exit(VmxExitReason.Hlt, 0, i.Length);
                return false;
            case Mnemonic.Cpuid:
                Exit(VmxExitReason.Cpuid, 0, i.Length);
                return false;
            case Mnemonic.Rdmsr:
                if (Cpl != 0)
                    return Raise(ExceptionVector.GP);
                Exit(VmxExitReason.Rdmsr, 0, i.Length);
                return false;
            case Mnemonic.Wrmsr:
                if (Cpl != 0)
                    return Raise(ExceptionVector.GP);
                Exit(VmxExitReason.Wrmsr, 0, i.Length);
                return false;
            case Mnemonic.In or Mnemonic.Out or Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd
                or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd:
                return PortExit();
            case Mnemonic.Cli or Mnemonic.Sti when (_cr0 & PagingState.Cr0PE) != 0 && Cpl > Iopl:
                if (!VirtualInterruptFlag(m == Mnemonic.Sti))
                    return false;
                break;
            case Mnemonic.Cli: Flags &= ~Rflags.IF; break;
            case Mnemonic.Sti:
                if ((Flags & Rflags.IF) == 0)
                    _interruptibility |= Interruptibility.Sti; // interrupts wait one instruction
                Flags |= Rflags.IF;
                break;
            case Mnemonic.Cld: Flags &= ~Rflags.DF; break;
            case Mnemonic.Std: Flags |= Rflags.DF; break;
            case Mnemonic.Clc: Flags &= ~Rflags.CF; break;
            case Mnemonic.Stc: Flags |= Rflags.CF; break;
            case Mnemonic.Cmc: Flags ^= Rflags.CF; break;
            case Mnemonic.Jmp when i.GetOperandKind(0) is OperandKind.FarBranch16 or OperandKind.FarBranch32
                || (i.GetOperandKind(0) == OperandKind.Memory && i.MemorySize == i.OperandSize + 2):
                return FarJump();
            case Mnemonic.Jmp:
                return Jump(i.GetOperandKind(0));
            case Mnemonic.Iret or Mnemonic.Iretd or Mnemonic.Iretq:
                return InterruptReturn();
            case Mnemonic.Lgdt or Mnemonic.Lidt:
                return LoadTable(m == Mnemonic.Lgdt, next);
            case Mnemonic.Mov when i.OperandCount == 2 && i.GetOperandKind(0) == OperandKind.Register && i.GetOperandKind(1) == OperandKind.Register
                && (IsControl(i.GetRegister(0)) || IsControl(i.GetRegister(1))):
                return MovControl(next);
            case Mnemonic.Mov when i.GetOperandKind(0) == OperandKind.Register && IsSegment(i.GetRegister(0)):
                return MovSegment(next);
            case Mnemonic.Mov when i.GetOperandKind(1) == OperandKind.Register && IsSegment(i.GetRegister(1)):
                {
                    ulong selector = _seg[i.GetRegister(1) - Register.ES].Selector;
                    bool toRegister = i.GetOperandKind(0) == OperandKind.Register;
                    if (!Destination(toRegister ? RegisterInfo.GprNumber(i.GetRegister(0)).Size : 2, selector))
                        return false;
                    break;
                }
            case Mnemonic.Call:
                return Call(next);
            case Mnemonic.Retf:
                return FarReturn();
            case Mnemonic.Syscall:
                return SystemCall(next);
            case Mnemonic.Sysret or Mnemonic.Sysretq:
                return SystemReturn();
            case Mnemonic.Sysenter:
                return SysEnter();
            case Mnemonic.Sysexit or Mnemonic.Sysexitq:
                return SysExit();
            case Mnemonic.Pop when i.GetOperandKind(0) == OperandKind.Register && IsSegment(i.GetRegister(0)):
                return PopSegment(next);
            case Mnemonic.Push when i.GetOperandKind(0) == OperandKind.Register && IsSegment(i.GetRegister(0)):
                if (!Push(_seg[i.GetRegister(0) - Register.ES].Selector, i.OperandSize))
                    return false;
                break;
            case Mnemonic.Pushf or Mnemonic.Pushfd or Mnemonic.Pushfq or Mnemonic.Popf or Mnemonic.Popfd or Mnemonic.Popfq
                or Mnemonic.Lahf or Mnemonic.Sahf or Mnemonic.Xlatb or Mnemonic.Enter or Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b
                or Mnemonic.Int or Mnemonic.Int3 or Mnemonic.Into or Mnemonic.Int1 or Mnemonic.Ud0 or Mnemonic.Ud1 or Mnemonic.Ud2
                or Mnemonic.Rdtsc or Mnemonic.Rdtscp or Mnemonic.Rdrand or Mnemonic.Rdseed or Mnemonic.Wbinvd or Mnemonic.Invd or Mnemonic.Invlpg or Mnemonic.Clts
                or Mnemonic.Swapgs or Mnemonic.Smsw or Mnemonic.Lmsw or Mnemonic.Sgdt or Mnemonic.Sidt or Mnemonic.Str
                or Mnemonic.Sldt or Mnemonic.Ltr or Mnemonic.Lldt or Mnemonic.Wait or Mnemonic.Clac or Mnemonic.Stac
                or Mnemonic.Verr or Mnemonic.Verw or Mnemonic.Lar or Mnemonic.Lsl or Mnemonic.Rdpmc:
                return Special(next);
            case Mnemonic.Mov when i.OperandCount == 2 && i.GetOperandKind(0) == OperandKind.Register && i.GetOperandKind(1) == OperandKind.Register
                && (IsDebug(i.GetRegister(0)) || IsDebug(i.GetRegister(1))):
                return Special(next);
            case var x87 when IsX87(x87):
                return X87(next);
            case var legacy when IsLegacy(legacy):
                return Legacy(next);
            case Mnemonic.Emms or Mnemonic.Ldmxcsr or Mnemonic.Stmxcsr or Mnemonic.Fxsave or Mnemonic.Fxsave64 or Mnemonic.Fxrstor or Mnemonic.Fxrstor64:
                return FloatingPointState(next);
            case Mnemonic.Xgetbv or Mnemonic.Xsetbv or Mnemonic.Xsave or Mnemonic.Xsave64 or Mnemonic.Xrstor or Mnemonic.Xrstor64
                or Mnemonic.Xsaveopt or Mnemonic.Xsaveopt64:
                return ExtendedState(next);
            case Mnemonic.Prefetch or Mnemonic.Prefetchnta or Mnemonic.Prefetcht0 or Mnemonic.Prefetcht1 or Mnemonic.Prefetcht2
                or Mnemonic.Prefetchw or Mnemonic.Clflush or Mnemonic.Clflushopt or Mnemonic.Clwb or Mnemonic.Reservednop:
                break; // hints (the reserved-NOP space 0F 18-1F included), and no caches to flush
            case Mnemonic.Ret when i.OpcodeByte is 0xC2 or 0xC3:
                {
                    int size = i.OperandSize;
                    if (!Read(Register.SS, _gpr[4] & Alu.Mask(StackWidth), size, out ulong target) || !BranchTargetValid(target))
                        return false;
                    ulong sp = _gpr[4] + (ulong)size + (i.OpcodeByte == 0xC2 ? i.Immediate & 0xFFFF : 0);
                    SetStackPointer(sp & Alu.Mask(StackWidth), StackWidth);
                    _rip = target;
                    return true;
                }
            case Mnemonic.Push when i.GetOperandKind(0) != OperandKind.Register || IsGpr(i.GetRegister(0)):
                {
                    int size = i.OperandSize;
                    ulong v;
                    if (i.GetOperandKind(0) == OperandKind.Memory)
                    {
                        if (!Read(i.MemorySegment, Ea(), size, out v))
                            return false;
                    }
                    else
                    {
                        v = i.GetOperandKind(0) == OperandKind.Register ? Get(i.GetRegister(0)) : i.Immediate & Alu.Mask(size);
                    }
                    if (!Push(v, size))
                        return false;
                    break;
                }
            case Mnemonic.Pop when i.GetOperandKind(0) == OperandKind.Register && IsGpr(i.GetRegister(0)):
                {
                    int size = i.OperandSize;
                    int sw = StackWidth;
                    if (!Read(Register.SS, _gpr[4] & Alu.Mask(sw), size, out ulong v))
                        return false;
                    SetStackPointer((_gpr[4] + (ulong)size) & Alu.Mask(sw), sw);
                    Set(i.GetRegister(0), v);
                    break;
                }
            case Mnemonic.Pop when i.GetOperandKind(0) == OperandKind.Memory:
                {
                    // The destination's address uses the incremented stack pointer; RSP moves
                    // only once the write is done, so a device access re-executes cleanly.
                    int size = i.OperandSize;
                    int sw = StackWidth;
                    ulong old = _gpr[4];
                    if (!Read(Register.SS, old & Alu.Mask(sw), size, out ulong v))
                        return false;
                    SetStackPointer((old + (ulong)size) & Alu.Mask(sw), sw);
                    ulong ea = Ea();
                    ulong popped = _gpr[4];
                    _gpr[4] = old;
                    if (!Write(i.MemorySegment, ea, size, v))
                        return false;
                    _gpr[4] = popped;
                    break;
                }
            case Mnemonic.Movsb or Mnemonic.Movsw or Mnemonic.Movsd or Mnemonic.Movsq
                or Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd or Mnemonic.Stosq
                or Mnemonic.Lodsb or Mnemonic.Lodsw or Mnemonic.Lodsd or Mnemonic.Lodsq
                or Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd or Mnemonic.Cmpsq
                or Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd or Mnemonic.Scasq
                when i.OperandCount == 2 && (i.GetOperandKind(0) >= OperandKind.MemorySegSI || i.GetOperandKind(1) >= OperandKind.MemorySegSI):
                return StringInstruction(next);
            case Mnemonic.Leave:
                {
                    // RSP = RBP, then POP RBP, at the stack width.
                    int sw = StackWidth;
                    int size = i.OperandSize;
                    ulong sp = _gpr[5] & Alu.Mask(sw);
                    if (!Read(Register.SS, sp, size, out ulong rbp))
                        return false;
                    SetStackPointer((sp + (ulong)size) & Alu.Mask(sw), sw);
                    Set(RegisterInfo.Gpr(5, size, false), rbp);
                    break;
                }
            case Mnemonic.Bswap:
                {
                    Register r = i.GetRegister(0);
                    int size = RegisterInfo.GprNumber(r).Size;
                    ulong v = Get(r);
                    Set(r, size == 8 ? System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v)
                        : size == 4 ? System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)v) : 0); // BSWAP of a 16-bit register is undefined: zero
                    break;
                }
            case Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jcxz or Mnemonic.Jecxz or Mnemonic.Jrcxz:
                {
                    // The counter is CX, ECX or RCX by address size.
                    int ad = i.AddressSize;
                    bool jump;
                    ulong count = _gpr[1];
                    if (m is Mnemonic.Jcxz or Mnemonic.Jecxz or Mnemonic.Jrcxz)
                    {
                        jump = (_gpr[1] & Alu.Mask(ad)) == 0;
                    }
                    else
                    {
                        StepIndex(1, ulong.MaxValue, ad);
                        bool zf = (Flags & Rflags.ZF) != 0;
                        jump = (_gpr[1] & Alu.Mask(ad)) != 0 && (m == Mnemonic.Loop || (m == Mnemonic.Loope ? zf : !zf));
                    }
                    if (jump)
                    {
                        next = i.NearBranchTarget(_rip);
                        if (!BranchTargetValid(next))
                        {
                            _gpr[1] = count; // the fault is precise: the count as before
                            return false;
                        }
                    }
                    break;
                }
            case Mnemonic.Lea:
                Set(i.GetRegister(0), Ea());
                break;
            case Mnemonic.Cbw or Mnemonic.Cwde or Mnemonic.Cdqe:
                {
                    int size = i.OperandSize;
                    Set(RegisterInfo.Gpr(0, size, false), (ulong)Alu.SignExtend(_gpr[0], size / 2));
                    break;
                }
            case Mnemonic.Cwd or Mnemonic.Cdq or Mnemonic.Cqo:
                {
                    int size = i.OperandSize;
                    bool negative = (_gpr[0] & Alu.SignBit(size)) != 0;
                    Set(RegisterInfo.Gpr(2, size, false), negative ? ulong.MaxValue : 0);
                    break;
                }
            case Mnemonic.Andn or Mnemonic.Bextr or Mnemonic.Blsi or Mnemonic.Blsmsk or Mnemonic.Blsr or Mnemonic.Bzhi or Mnemonic.Mulx
                or Mnemonic.Pdep or Mnemonic.Pext or Mnemonic.Rorx or Mnemonic.Sarx or Mnemonic.Shlx or Mnemonic.Shrx:
                if (!Bmi(m))
                    return false;
                break;
            default:
                if ((i.Prefixes & Prefixes.Vex) != 0)
                    return Avx(next);
                bool done = Sse(next, out bool sse);
                if (sse)
                    return done;
                if (IsJcc(in i))
                {
                    if (Conditions.Holds(i.OpcodeByte & 0xF, Flags) && !BranchTargetValid(next = i.NearBranchTarget(_rip)))
                        return false;
                    break;
                }
                if (!Integer(m))
                    return false;
                break;
        }
        _rip = next;
        return true;
    }

    // MOVS/STOS/LODS/CMPS/SCAS, with REP/REPE/REPNE running element after element here. A device
    // access or a fault stops at its element with the registers of the elements before it, so
    // the vmm (or the handler) carries on from there; a request from the vmm stops between
    // elements with RIP still on the instruction.
    private bool StringInstruction(ulong next)
    {
        ref readonly Instruction i = ref _insn;
        int size = i.MemorySize;
        int ad = i.AddressSize;
        ulong mask = Alu.Mask(ad);
        bool repe = (i.Prefixes & Prefixes.Rep) != 0;
        bool repne = (i.Prefixes & Prefixes.Repne) != 0;
        bool rep = repe || repne;
        int kind = i.OpcodeByte & 0xFE;
        bool compare = kind is 0xA6 or 0xAE;
        Register src = i.MemorySegment;
        for (int done = 0; ; done++)
        {
            if (rep && (_gpr[1] & mask) == 0)
                break;
            if (rep && done > 0 && (done & 0xFFF) == 0 && _exitRequested)
                return true; // RIP stays: the instruction resumes after the exit
            ulong si = _gpr[6] & mask, di = _gpr[7] & mask, v = 0;
            ulong flags = Flags;
            switch (kind)
            {
                case 0xA4:
                    if (!Read(src, si, size, out v) || !Write(Register.ES, di, size, v))
                        return false;
                    break;
                case 0xAA:
                    if (!Write(Register.ES, di, size, _gpr[0] & Alu.Mask(size)))
                        return false;
                    break;
                case 0xAC:
                    if (!Read(src, si, size, out v))
                        return false;
                    Set(RegisterInfo.Gpr(0, size, false), v);
                    break;
                case 0xA6:
                    if (!Read(src, si, size, out v) || !Read(Register.ES, di, size, out ulong w))
                        return false;
                    Alu.Binary(Alu.Op.Cmp, v, w, size, ref flags);
                    break;
                default:
                    if (!Read(Register.ES, di, size, out ulong x))
                        return false;
                    Alu.Binary(Alu.Op.Cmp, _gpr[0] & Alu.Mask(size), x, size, ref flags);
                    break;
            }
            Flags = flags;
            ulong step = (Flags & Rflags.DF) != 0 ? (ulong)-size : (ulong)size;
            if (kind is 0xA4 or 0xAC or 0xA6)
                StepIndex(6, step, ad);
            if (kind != 0xAC)
                StepIndex(7, step, ad);
            if (!rep)
                break;
            StepIndex(1, ulong.MaxValue, ad);
            if (compare && (((Flags & Rflags.ZF) == 0 && repe) || ((Flags & Rflags.ZF) != 0 && repne)))
                break;
        }
        _rip = next;
        return true;
    }

    private void StepIndex(int n, ulong delta, int ad) => _gpr[n] = CodeSize.AddAtWidth(_gpr[n], delta, ad);

    private static bool IsJcc(in Instruction i) =>
        i.OperandCount == 1 && i.GetOperandKind(0) is >= OperandKind.NearBranch16 and <= OperandKind.NearBranch64
        && (i.OpcodeByte & 0xF0) is 0x70 or 0x80 && i.Mnemonic is not (Mnemonic.Jmp or Mnemonic.Call);

    private static bool IsGpr(Register r) => r is >= Register.AL and <= Register.R15;

    private static bool IsDebug(Register r) => r is >= Register.DR0 and <= Register.DR15;

    private static bool IsControl(Register r) => r is >= Register.CR0 and <= Register.CR15;

    private static bool IsSegment(Register r) => r is >= Register.ES and <= Register.GS;

    private bool Jump(OperandKind kind)
    {
        ulong target;
        if (kind is >= OperandKind.NearBranch16 and <= OperandKind.NearBranch64)
            target = _insn.NearBranchTarget(_rip);
        else if (kind == OperandKind.Register)
            target = Get(_insn.GetRegister(0));
        else if (kind == OperandKind.Memory && _insn.MemorySize == _insn.OperandSize)
        {
            if (!Read(_insn.MemorySegment, Ea(), _insn.OperandSize, out target))
                return false;
        }
        else
            return RaiseUnimplemented(); // an indirect far transfer through this form
        target &= IpMask;
        if (!BranchTargetValid(target))
            return false;
        _rip = target;
        return true;
    }

    // A near branch's target lies within CS's limit, or in 64-bit mode is canonical: #GP(0) on the
    // branch itself otherwise, before it has changed anything.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool BranchTargetValid(ulong target) =>
        (_bitness == Bitness.Bits64 ? _paging.IsCanonical(target) : target <= _seg[1].Limit) || Raise(ExceptionVector.GP);

    private bool Call(ulong next)
    {
        OperandKind kind = _insn.GetOperandKind(0);
        int size = _insn.OperandSize;
        ulong target;
        if (kind is >= OperandKind.NearBranch16 and <= OperandKind.NearBranch64)
            target = _insn.NearBranchTarget(_rip);
        else if (kind == OperandKind.Register)
            target = Get(_insn.GetRegister(0));
        else if (kind == OperandKind.Memory && _insn.MemorySize == size)
        {
            if (!Read(_insn.MemorySegment, Ea(), size, out target))
                return false;
        }
        else
            return FarCall(next);
        target &= IpMask;
        if (!BranchTargetValid(target) || !Push(next, size))
            return false;
        _rip = target;
        return true;
    }

    private bool PortExit()
    {
        IoExit exit = IoExit.FromInstruction(in _insn, (ushort)_gpr[2])!.Value;
        if (!IoPermitted(exit.Port, exit.Size))
            return false;
        _vmcs.Store(VmcsField.ExitInstructionInfo, exit.String ? VmxIoExit.InstructionInformation(in exit) : 0);
        Exit(VmxExitReason.IoInstruction, VmxIoExit.Qualification(in exit), _insn.Length);
        return false;
    }

    // The integer instructions with register or memory operands. False: exited or raised.
    private bool Integer(Mnemonic m)
    {
        ref readonly Instruction i = ref _insn;
        // Only general registers here: a vector, x87 or system register operand is a form this
        // processor does not implement (it exits rather than misread the operand).
        for (int k = 0; k < i.OperandCount; k++)
        {
            if (i.GetOperandKind(k) == OperandKind.Register && !IsGpr(i.GetRegister(k)))
                return RaiseUnimplemented();
        }
        int size = i.OperandCount > 0 && i.GetOperandKind(0) == OperandKind.Register ? RegisterInfo.GprNumber(i.GetRegister(0)).Size
            : i.MemorySize > 0 ? i.MemorySize : i.OperandSize;
        ulong flags = Flags;
        switch (m)
        {
            case Mnemonic.Mov or Mnemonic.Movnti:
                {
                    if (i.GetOperandKind(1) == OperandKind.Register && !IsGpr(i.GetRegister(1)))
                        return RaiseUnimplemented(); // segment and control registers are System's
                    if (!Source(1, size, out ulong v))
                        return false;
                    return Destination(size, v);
                }
            case Mnemonic.Movzx or Mnemonic.Movsx or Mnemonic.Movsxd:
                {
                    int srcSize = i.GetOperandKind(1) == OperandKind.Memory ? i.MemorySize : RegisterInfo.GprNumber(i.GetRegister(1)).Size;
                    if (!Source(1, srcSize, out ulong v))
                        return false;
                    Set(i.GetRegister(0), m == Mnemonic.Movzx ? v : (ulong)Alu.SignExtend(v, srcSize));
                    return true;
                }
            case Mnemonic.Add or Mnemonic.Or or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp:
                {
                    Alu.Op op = Alu.OpOf(m);
                    if (!Source(0, size, out ulong a, forWrite: op != Alu.Op.Cmp) || !Source(1, size, out ulong b))
                        return false;
                    ulong r = Alu.Binary(op, a, b, size, ref flags);
                    if (op != Alu.Op.Cmp && !Destination(size, r))
                        return false;
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Test:
                {
                    if (!Source(0, size, out ulong a) || !Source(1, size, out ulong b))
                        return false;
                    Alu.Binary(Alu.Op.And, a, b, size, ref flags);
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Inc or Mnemonic.Dec or Mnemonic.Not or Mnemonic.Neg:
                {
                    if (!Source(0, size, out ulong a, forWrite: true))
                        return false;
                    ulong r = m switch
                    {
                        Mnemonic.Inc => Alu.Inc(a, size, ref flags),
                        Mnemonic.Dec => Alu.Dec(a, size, ref flags),
                        Mnemonic.Neg => Alu.Neg(a, size, ref flags),
                        _ => ~a & Alu.Mask(size),
                    };
                    if (!Destination(size, r))
                        return false;
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar:
                {
                    if (!Source(0, size, out ulong a, forWrite: true))
                        return false;
                    ulong count = i.OperandCount > 1 ? (i.GetOperandKind(1) == OperandKind.Register ? _gpr[1] & 0xFF : i.Immediate) : 1;
                    if (Alu.MaskCount(count, size) == 0)
                    {
                        // No flags change, but a 32-bit register is still written (its upper half cleared).
                        if (i.GetOperandKind(0) == OperandKind.Register)
                            Set(i.GetRegister(0), a);
                        return true;
                    }
                    ulong r = Alu.ShiftRotate((Alu.Shift)((i.ModRM >> 3) & 7), a, count, size, ref flags);
                    if (!Destination(size, r))
                        return false;
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Xchg:
                {
                    if (i.GetOperandKind(0) == OperandKind.Memory || i.GetOperandKind(1) == OperandKind.Memory)
                    {
                        int mem = i.GetOperandKind(0) == OperandKind.Memory ? 0 : 1;
                        Register reg = i.GetRegister(1 - mem);
                        if (!Read(i.MemorySegment, Ea(), size, out ulong old, forWrite: true) || !Write(i.MemorySegment, Ea(), size, Get(reg)))
                            return false;
                        Set(reg, old);
                        return true;
                    }
                    ulong x = Get(i.GetRegister(0)), y = Get(i.GetRegister(1));
                    Set(i.GetRegister(0), y);
                    Set(i.GetRegister(1), x);
                    return true;
                }
            case >= Mnemonic.Seta and <= Mnemonic.Sets when i.OperandCount == 1:
                return Destination(1, Conditions.Holds(i.OpcodeByte & 0xF, Flags) ? 1UL : 0);
            case >= Mnemonic.Cmova and <= Mnemonic.Cmovs:
                {
                    if (!Source(1, size, out ulong v))
                        return false;
                    Register dst = i.GetRegister(0);
                    Set(dst, Conditions.Holds(i.OpcodeByte & 0xF, Flags) ? v : Get(dst));
                    return true;
                }
            case Mnemonic.Mul or Mnemonic.Imul or Mnemonic.Div or Mnemonic.Idiv:
                return MulDiv(m, size);
            case Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc:
                return BitTest(m, size);
            case Mnemonic.Bsf or Mnemonic.Bsr or Mnemonic.Tzcnt or Mnemonic.Lzcnt or Mnemonic.Popcnt:
                {
                    if (m == Mnemonic.Popcnt && (_features & CpuFeatures.Popcnt) == 0)
                        return Raise(ExceptionVector.UD);
                    // Without LZCNT or BMI1 their encodings are BSR and BSF with an ignored prefix.
                    if (m == Mnemonic.Tzcnt && (_features & CpuFeatures.Bmi1) == 0)
                        m = Mnemonic.Bsf;
                    else if (m == Mnemonic.Lzcnt && (_features & CpuFeatures.Lzcnt) == 0)
                        m = Mnemonic.Bsr;
                    if (!Source(1, size, out ulong v))
                        return false;
                    Register dst = i.GetRegister(0);
                    ulong r = m switch
                    {
                        Mnemonic.Bsf => Alu.Bsf(v, Get(dst), size, ref flags),
                        Mnemonic.Bsr => Alu.Bsr(v, Get(dst), size, ref flags),
                        Mnemonic.Tzcnt => Alu.Tzcnt(v, size, ref flags),
                        Mnemonic.Lzcnt => Alu.Lzcnt(v, size, ref flags),
                        _ => Alu.Popcnt(v, size, ref flags),
                    };
                    Set(dst, r);
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Crc32:
                {
                    if ((_features & CpuFeatures.Sse42) == 0)
                        return Raise(ExceptionVector.UD);
                    int from = i.GetOperandKind(1) == OperandKind.Memory ? i.MemorySize : RegisterInfo.GprNumber(i.GetRegister(1)).Size;
                    if (!Source(1, from, out ulong v))
                        return false;
                    uint crc = (uint)Get(i.GetRegister(0));
                    crc = from switch
                    {
                        1 => BitOperations.Crc32C(crc, (byte)v),
                        2 => BitOperations.Crc32C(crc, (ushort)v),
                        4 => BitOperations.Crc32C(crc, (uint)v),
                        _ => BitOperations.Crc32C(crc, v),
                    };
                    Set(i.GetRegister(0), crc); // a 64-bit destination gets the CRC zero-extended
                    return true;
                }
            case Mnemonic.Movbe:
                {
                    if ((_features & CpuFeatures.Movbe) == 0)
                        return Raise(ExceptionVector.UD);
                    if (!Source(1, size, out ulong v))
                        return false;
                    ulong swapped = size switch
                    {
                        2 => BinaryPrimitives.ReverseEndianness((ushort)v),
                        4 => BinaryPrimitives.ReverseEndianness((uint)v),
                        _ => BinaryPrimitives.ReverseEndianness(v),
                    };
                    return Destination(size, swapped);
                }
            case Mnemonic.Xadd:
                {
                    if (!Source(0, size, out ulong a, forWrite: true))
                        return false;
                    Register src = i.GetRegister(1);
                    ulong sum = Alu.Binary(Alu.Op.Add, a, Get(src), size, ref flags);
                    if (!Destination(size, sum))
                        return false;
                    if (i.GetOperandKind(0) == OperandKind.Memory || RegisterInfo.GprNumber(src) != RegisterInfo.GprNumber(i.GetRegister(0)))
                        Set(src, a);
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Cmpxchg:
                {
                    if (!Source(0, size, out ulong a, forWrite: true))
                        return false;
                    Register acc = RegisterInfo.Gpr(0, size, false);
                    Alu.Binary(Alu.Op.Cmp, Get(acc), a, size, ref flags);
                    bool equal = (flags & Rflags.ZF) != 0;
                    // A memory destination is always written (the old value back on failure); a
                    // register destination only on success (a 32-bit one keeps its upper half then).
                    if ((equal || i.GetOperandKind(0) == OperandKind.Memory) && !Destination(size, equal ? Get(i.GetRegister(1)) : a))
                        return false;
                    if (!equal)
                        Set(acc, a);
                    Flags = flags;
                    return true;
                }
            case Mnemonic.Shld or Mnemonic.Shrd:
                {
                    if (!Source(0, size, out ulong a, forWrite: true))
                        return false;
                    ulong count = i.GetOperandKind(2) == OperandKind.Register ? _gpr[1] & 0xFF : i.Immediate;
                    if (Alu.MaskCount(count, size) == 0)
                    {
                        if (i.GetOperandKind(0) == OperandKind.Register)
                            Set(i.GetRegister(0), a);
                        return true;
                    }
                    ulong b = Get(i.GetRegister(1));
                    ulong r = m == Mnemonic.Shld ? Alu.Shld(a, b, count, size, ref flags) : Alu.Shrd(a, b, count, size, ref flags);
                    if (!Destination(size, r))
                        return false;
                    Flags = flags;
                    return true;
                }
            default:
                return RaiseUnimplemented();
        }
    }

    // BT/BTS/BTR/BTC: a register offset reaches memory beyond the operand, as on hardware.
    private bool BitTest(Mnemonic m, int size)
    {
        ref readonly Instruction i = ref _insn;
        var op = m switch { Mnemonic.Bts => Alu.BitOp.Bts, Mnemonic.Btr => Alu.BitOp.Btr, Mnemonic.Btc => Alu.BitOp.Btc, _ => Alu.BitOp.Bt };
        ulong bit = i.GetOperandKind(1) == OperandKind.Register ? Get(i.GetRegister(1)) : i.Immediate;
        ulong flags = Flags;
        bool writes = op != Alu.BitOp.Bt;
        if (i.GetOperandKind(0) == OperandKind.Register)
        {
            ulong r = Alu.BitTest(op, Get(i.GetRegister(0)), bit, size, ref flags);
            if (writes)
                Set(i.GetRegister(0), r);
            Flags = flags;
            return true;
        }
        ulong ea = Ea();
        if (i.GetOperandKind(1) == OperandKind.Register)
        {
            long offset = Alu.SignExtend(bit, size);
            ea = (ea + (ulong)((offset >> System.Numerics.BitOperations.Log2((uint)size * 8)) * size)) & Alu.Mask(i.AddressSize);
            bit = (ulong)offset & (ulong)(size * 8 - 1);
        }
        if (!Read(i.MemorySegment, ea, size, out ulong v, writes))
            return false;
        ulong result = Alu.BitTest(op, v, bit, size, ref flags);
        if (writes && !Write(i.MemorySegment, ea, size, result))
            return false;
        Flags = flags;
        return true;
    }

    private bool MulDiv(Mnemonic m, int size)
    {
        ref readonly Instruction i = ref _insn;
        ulong flags = Flags;
        if (i.OperandCount > 1)
        {
            // IMUL r, r/m (, imm)
            if (!Source(1, size, out ulong b))
                return false;
            Register dst = i.GetRegister(0);
            ulong a = i.OperandCount == 3 ? b : Get(dst);
            ulong c = i.OperandCount == 3 ? i.Immediate : b;
            Set(dst, Alu.Imul(a, c, size, out _, ref flags));
            Flags = flags;
            return true;
        }
        int width = i.GetOperandKind(0) == OperandKind.Memory ? i.MemorySize : RegisterInfo.GprNumber(i.GetRegister(0)).Size;
        if (!Source(0, width, out ulong src))
            return false;
        ulong lowIn = width == 1 ? _gpr[0] & 0xFF : _gpr[0];
        ulong highIn = width == 1 ? (_gpr[0] >> 8) & 0xFF : _gpr[2];
        ulong lo, hi;
        switch (m)
        {
            case Mnemonic.Mul: lo = Alu.Mul(lowIn, src, width, out hi, ref flags); break;
            case Mnemonic.Imul: lo = Alu.Imul(lowIn, src, width, out hi, ref flags); break;
            default:
                bool ok = m == Mnemonic.Div ? Alu.Div(highIn, lowIn, src, width, out lo, out hi) : Alu.Idiv(highIn, lowIn, src, width, out lo, out hi);
                if (!ok)
                    return Raise(ExceptionVector.DE);
                break;
        }
        if (width == 1)
            Set(Register.AX, (lo & 0xFF) | ((hi & 0xFF) << 8));
        else
        {
            Set(RegisterInfo.Gpr(0, width, false), lo);
            Set(RegisterInfo.Gpr(2, width, false), hi);
        }
        Flags = flags;
        return true;
    }

    // Operand k as a value: register, immediate or memory.
    private bool Source(int k, int size, out ulong value, bool forWrite = false)
    {
        switch (_insn.GetOperandKind(k))
        {
            case OperandKind.Register:
                value = Get(_insn.GetRegister(k));
                return true;
            case OperandKind.Memory:
                return Read(_insn.MemorySegment, Ea(), size, out value, forWrite);
            default:
                value = _insn.Immediate & Alu.Mask(size);
                return true;
        }
    }

    // Operand 0 written.
    private bool Destination(int size, ulong value)
    {
        if (_insn.GetOperandKind(0) == OperandKind.Memory)
            return Write(_insn.MemorySegment, Ea(), size, value);
        Set(_insn.GetRegister(0), value);
        return true;
    }

    private ulong Ea()
    {
        ref readonly Instruction i = ref _insn;
        if (i.IsIpRelative)
            return i.IpRelativeTarget(_rip);
        ulong ea = (ulong)i.Displacement;
        if (i.MemoryBase != Register.None)
            ea += Get(i.MemoryBase);
        if (i.MemoryIndex != Register.None)
            ea += Get(i.MemoryIndex) * i.MemoryScale;
        return ea & Alu.Mask(i.AddressSize);
    }

    private ulong Get(Register r)
    {
        (int n, int size, bool high) = RegisterInfo.GprNumber(r);
        return RegisterInfo.Extract(_gpr[n], size, high);
    }

    private void Set(Register r, ulong value)
    {
        (int n, int size, bool high) = RegisterInfo.GprNumber(r);
        _gpr[n] = RegisterInfo.Merge(_gpr[n], size, high, value);
    }
}
