// The per-vCPU instruction emulation context behind MMIO exits: decode once, replay the
// instruction on every pass, send each device access across the boundary exactly once.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Vmm.Emulation;

/// <summary>Outcome of one emulation pass.</summary>
public enum VieStatus : byte
{
    /// <summary>The instruction completed: registers, flags and RIP are updated.</summary>
    Done,
    /// <summary>An access needs the device half: see <see cref="Vie.Pending"/>; fulfil it and run again.</summary>
    NeedsDevice,
    /// <summary>Hyve cannot emulate this instruction; the caller hands the raw bytes to the device half.</summary>
    Fallback,
    /// <summary>One element of a REP string instruction completed and more remain: RSI/RDI/RCX are
    /// updated, RIP is not, so the guest re-executes the instruction for the next element (and can
    /// take interrupts in between, as on hardware).</summary>
    Repeat,
    /// <summary>The instruction raises an exception (<see cref="Vie.FaultVector"/>); RIP is not advanced.</summary>
    Fault,
}

/// <summary>Outcome of a fulfilment.</summary>
public enum FulfillResult : byte
{
    /// <summary>Accepted.</summary>
    Ok,
    /// <summary>No request is pending.</summary>
    NotPending,
    /// <summary>The answer's address, size or direction differs from the request.</summary>
    Mismatch,
}

/// <summary>
/// Emulates the instruction behind one MMIO exit. The whole instruction runs again from the
/// start on every pass; an access whose slot is done replays its cached result, an access the
/// vmm's own devices claim completes at once, anything else becomes the pending request and
/// the pass stops before any register is written. So side effects happen once, however many
/// passes an instruction takes (a read-modify-write takes three).
/// </summary>
public sealed class Vie
{
    private enum SlotState : byte
    {
        None,
        Pending,
        Done,
    }

    private struct Slot
    {
        public ulong Gpa;
        public byte Bytes;
        public SlotState State;
        public ulong Data;
    }

    private Instruction _insn;
    private Bitness _bitness;
    private ulong _gpa;
    private ulong _gla;
    private bool _glaValid;
    private bool _active;
    private Slot _read;
    private Slot _write;
    private StringOp _string;

    // The string instructions this context emulates (one-byte opcodes A4..AF).
    private enum StringOp : byte
    {
        None,
        Movs,
        Cmps,
        Stos,
        Lods,
        Scas,
    }

    /// <summary>Whether an instruction is being emulated.</summary>
    public bool Active => _active;

    /// <summary>The decoded instruction.</summary>
    public ref readonly Instruction Instruction => ref _insn;

    /// <summary>The request waiting for the device half (valid after <see cref="VieStatus.NeedsDevice"/>).</summary>
    public MmioAccess Pending =>
        _read.State == SlotState.Pending ? new MmioAccess(_read.Gpa, _read.Bytes, false, 0)
        : _write.State == SlotState.Pending ? new MmioAccess(_write.Gpa, _write.Bytes, true, _write.Data)
        : default;

    /// <summary>The exception vector after <see cref="VieStatus.Fault"/> (0 = #DE).</summary>
    public byte FaultVector { get; private set; }

    /// <summary>Number of device-half requests this context has issued (each exactly once).</summary>
    public long Requests { get; private set; }

    /// <summary>
    /// Starts emulating the instruction in <paramref name="bytes"/> that faulted on
    /// <paramref name="gpa"/>. <paramref name="glaValid"/> says whether the exit reported the
    /// guest-linear address <paramref name="gla"/>, which the decoded operand must then match.
    /// Returns false (fall back) when the bytes do not decode to a supported instruction.
    /// </summary>
    public bool Begin(ulong gpa, ulong gla, bool glaValid, Bitness bitness, ReadOnlySpan<byte> bytes)
    {
        Reset();
        if (Decoder.Decode(bytes, bitness, out _insn) != DecodeStatus.Ok)
            return false;
        _string = StringKind(in _insn);
        _bitness = bitness;
        _gpa = gpa;
        _gla = gla;
        _glaValid = glaValid;
        _active = true;
        return true;
    }

    /// <summary>Drops the instruction (RIP is not advanced).</summary>
    public void Reset()
    {
        _active = false;
        _read = default;
        _write = default;
    }

    /// <summary>Answers the pending request; a read's result is in <paramref name="answer"/>.Data.</summary>
    public FulfillResult Fulfill(in MmioAccess answer)
    {
        if (_read.State == SlotState.Pending)
            return Complete(ref _read, write: false, in answer);
        if (_write.State == SlotState.Pending)
            return Complete(ref _write, write: true, in answer);
        return FulfillResult.NotPending;
    }

    private static FulfillResult Complete(ref Slot slot, bool write, in MmioAccess answer)
    {
        if (answer.Gpa != slot.Gpa || answer.Bytes != slot.Bytes || answer.Write != write)
            return FulfillResult.Mismatch;
        if (!write)
            slot.Data = answer.Data & Alu.Mask(slot.Bytes);
        slot.State = SlotState.Done;
        return FulfillResult.Ok;
    }

    /// <summary>Runs one pass of the instruction. <paramref name="memory"/> reaches guest RAM for the
    /// RAM side of string instructions; without it they fall back.</summary>
    public VieStatus Emulate(IVieCpu cpu, IVmmDevices devices, IGuestMemory? memory = null)
    {
        if (!_active)
            return VieStatus.Fallback;
        if (_string != StringOp.None)
        {
            VieStatus ss = memory == null ? VieStatus.Fallback : StringElement(cpu, devices, memory);
            if (ss is VieStatus.Done or VieStatus.Repeat)
            {
                if (ss == VieStatus.Done)
                    cpu.Rip += _insn.Length;
                Reset();
            }
            return ss;
        }
        if (_insn.Mnemonic is Mnemonic.Push or Mnemonic.Pop)
            return Finish(cpu, _bitness == Bitness.Bits64 && OnlyGeneralRegisters() ? StackOp(cpu, devices, memory) : VieStatus.Fallback);
        int mem = MemoryOperand();
        if (mem < 0 || !OnlyGeneralRegisters() || !LinearAddressMatches(cpu))
            return VieStatus.Fallback;
        int size = _insn.MemorySize;
        if (size is not (1 or 2 or 4 or 8) || ((_gpa & 0xFFF) + (ulong)size) > 0x1000)
            return VieStatus.Fallback; // page-crossing accesses are split in a later step
        VieStatus st = _insn.Mnemonic switch
        {
            Mnemonic.Mov => Mov(cpu, devices, mem, size),
            Mnemonic.Movzx or Mnemonic.Movsx or Mnemonic.Movsxd => Extend(cpu, devices, size),
            Mnemonic.Add or Mnemonic.Or or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp
                => Arith(cpu, devices, mem, size),
            Mnemonic.Test => Test(cpu, devices, mem, size),
            Mnemonic.Inc or Mnemonic.Dec or Mnemonic.Not or Mnemonic.Neg => Unary(cpu, devices, size),
            Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar
                => Shift(cpu, devices, size),
            Mnemonic.Xchg or Mnemonic.Xadd => Exchange(cpu, devices, mem, size),
            Mnemonic.Cmpxchg => CompareExchange(cpu, devices, size),
            >= Mnemonic.Seta and <= Mnemonic.Sets when _insn.OperandCount == 1 => SetCc(cpu, devices, size),
            >= Mnemonic.Cmova and <= Mnemonic.Cmovs => CmovCc(cpu, devices, size),
            Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc when _insn.GetOperandKind(1) == OperandKind.Immediate8
                => BitTest(cpu, devices, size),
            Mnemonic.Mul or Mnemonic.Imul or Mnemonic.Div or Mnemonic.Idiv => MulDiv(cpu, devices, size),
            Mnemonic.Bsf or Mnemonic.Bsr or Mnemonic.Tzcnt or Mnemonic.Lzcnt or Mnemonic.Popcnt => BitScan(cpu, devices, size),
            Mnemonic.Movbe => MoveSwapped(cpu, devices, mem, size),
            Mnemonic.Movnti => Mov(cpu, devices, mem, size),
            Mnemonic.Xlatb => Xlat(cpu, devices),
            Mnemonic.Shld or Mnemonic.Shrd => DoubleShift(cpu, devices, size),
            // CLFLUSH/CLFLUSHOPT only check the access (done above); device memory has nothing to flush.
            Mnemonic.Clflush or Mnemonic.Clflushopt => VieStatus.Done,
            _ => VieStatus.Fallback,
        };
        return Finish(cpu, st);
    }

    private VieStatus Finish(IVieCpu cpu, VieStatus st)
    {
        if (st == VieStatus.Done)
        {
            cpu.Rip += _insn.Length;
            Reset();
        }
        else if (st == VieStatus.Fault)
        {
            Reset();
        }
        return st;
    }

    // PUSH and POP in 64-bit mode (SS base 0, a 64-bit RSP): either the operand is in device
    // memory and the stack is reached through guest memory, or the operand is a register or
    // immediate and the stack itself is device memory (the exit's address is the stack slot).
    private VieStatus StackOp(IVieCpu cpu, IVmmDevices devices, IGuestMemory? memory)
    {
        int size = _insn.OperandSize;
        bool push = _insn.Mnemonic == Mnemonic.Push;
        ulong rsp = cpu.GetGpr(4);
        ulong slot = push ? rsp - (ulong)size : rsp;
        bool operandInMemory = _insn.GetOperandKind(0) == OperandKind.Memory;
        if (operandInMemory)
        {
            if (memory == null || !LinearAddressMatches(cpu) || _insn.MemorySize != size || ((_gpa & 0xFFF) + (ulong)size) > 0x1000)
                return VieStatus.Fallback;
            if (!TranslateSide(memory, slot, write: push, size, out ulong stackGpa))
                return VieStatus.Fallback;
            Span<byte> buf = stackalloc byte[8];
            // The stack side must be RAM (probed with a read, which has no side effects) before the
            // device operand is touched; a stack in device memory as well falls back here.
            if (stackGpa == _gpa || !memory.ReadRam(stackGpa, buf[..size]))
                return VieStatus.Fallback;
            if (push)
            {
                if (!Read(devices, size, out ulong v))
                    return VieStatus.NeedsDevice;
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(buf, v);
                memory.WriteRam(stackGpa, buf[..size]);
            }
            else
            {
                ulong v = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(buf) & Alu.Mask(size);
                if (!Write(devices, size, v))
                    return VieStatus.NeedsDevice;
            }
        }
        else
        {
            if ((_glaValid && _gla != slot) || ((_gpa & 0xFFF) + (ulong)size) > 0x1000)
                return VieStatus.Fallback;
            if (push)
            {
                ulong v = _insn.GetOperandKind(0) == OperandKind.Register ? ReadRegister(cpu, _insn.GetRegister(0)) : _insn.Immediate;
                if (!Write(devices, size, v & Alu.Mask(size)))
                    return VieStatus.NeedsDevice;
            }
            else
            {
                if (!Read(devices, size, out ulong v))
                    return VieStatus.NeedsDevice;
                // POP RSP loads the popped value, not the incremented pointer.
                Register dst = _insn.GetRegister(0);
                cpu.SetGpr(4, rsp + (ulong)size);
                WriteRegister(cpu, dst, v);
                return VieStatus.Done;
            }
        }
        cpu.SetGpr(4, push ? slot : rsp + (ulong)size);
        return VieStatus.Done;
    }

    // Classified by operand kinds and opcode byte, not mnemonic: SSE MOVSD/CMPSD share the
    // mnemonics of the string forms, and INS/OUTS belong to the port-I/O path.
    private static StringOp StringKind(in Instruction insn)
    {
        if (insn.OperandCount == 0 || insn.GetOperandKind(insn.OperandCount - 1) < OperandKind.MemorySegSI
            && insn.GetOperandKind(0) < OperandKind.MemorySegSI)
            return StringOp.None;
        return (insn.OpcodeByte & 0xFE) switch
        {
            0xA4 => StringOp.Movs,
            0xA6 => StringOp.Cmps,
            0xAA => StringOp.Stos,
            0xAC => StringOp.Lods,
            0xAE => StringOp.Scas,
            _ => StringOp.None,
        };
    }

    // The forms emulated here name general registers only (MOV to or from a segment, control or
    // vector register falls back).
    private bool OnlyGeneralRegisters()
    {
        for (int i = 0; i < _insn.OperandCount; i++)
        {
            if (_insn.GetOperandKind(i) == OperandKind.Register && _insn.GetRegister(i) is < Register.AL or > Register.R15)
                return false;
        }
        return true;
    }

    // Index of the memory operand, or -1 when there is none (or more than one).
    private int MemoryOperand()
    {
        int found = -1;
        for (int i = 0; i < _insn.OperandCount; i++)
        {
            OperandKind k = _insn.GetOperandKind(i);
            if (k == OperandKind.Memory)
            {
                if (found >= 0)
                    return -1;
                found = i;
            }
            else if (k >= OperandKind.MemorySegSI)
            {
                return -1; // string instructions are emulated elsewhere
            }
        }
        return found;
    }

    // The exit's guest-linear address, when known, must be the operand's: otherwise the bytes are
    // not the instruction that faulted (the guest changed them, or the decode is wrong).
    private bool LinearAddressMatches(IVieCpu cpu)
    {
        if (!_glaValid)
            return true;
        ulong ea = (ulong)_insn.Displacement;
        if (_insn.IsIpRelative)
            ea = _insn.IpRelativeTarget(cpu.Rip);
        else
        {
            if (_insn.MemoryBase != Register.None)
                ea += ReadRegister(cpu, _insn.MemoryBase);
            if (_insn.MemoryIndex != Register.None)
                ea += ReadRegister(cpu, _insn.MemoryIndex) * _insn.MemoryScale;
        }
        ea &= Alu.Mask(_insn.AddressSize);
        Register seg = _insn.MemorySegment;
        if (_bitness != Bitness.Bits64 || seg is Register.FS or Register.GS)
            ea += cpu.SegmentBase(seg);
        if (_bitness != Bitness.Bits64)
            ea = (uint)ea;
        return ea == _gla;
    }

    private VieStatus Mov(IVieCpu cpu, IVmmDevices devices, int mem, int size)
    {
        if (mem == 0)
        {
            ulong value = Source(cpu, 1) & Alu.Mask(size);
            return Write(devices, size, value) ? VieStatus.Done : VieStatus.NeedsDevice;
        }
        if (!Read(devices, size, out ulong v))
            return VieStatus.NeedsDevice;
        WriteRegister(cpu, _insn.GetRegister(0), v);
        return VieStatus.Done;
    }

    private VieStatus Extend(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong v))
            return VieStatus.NeedsDevice;
        if (_insn.Mnemonic != Mnemonic.Movzx)
            v = (ulong)Alu.SignExtend(v, size);
        WriteRegister(cpu, _insn.GetRegister(0), v);
        return VieStatus.Done;
    }

    private VieStatus Arith(IVieCpu cpu, IVmmDevices devices, int mem, int size)
    {
        var op = _insn.Mnemonic switch
        {
            Mnemonic.Add => Alu.Op.Add,
            Mnemonic.Or => Alu.Op.Or,
            Mnemonic.Adc => Alu.Op.Adc,
            Mnemonic.Sbb => Alu.Op.Sbb,
            Mnemonic.And => Alu.Op.And,
            Mnemonic.Sub => Alu.Op.Sub,
            Mnemonic.Xor => Alu.Op.Xor,
            _ => Alu.Op.Cmp,
        };
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        ulong flags = cpu.Rflags;
        if (mem == 0)
        {
            ulong r = Alu.Binary(op, m, Source(cpu, 1), size, ref flags);
            if (op != Alu.Op.Cmp && !Write(devices, size, r))
                return VieStatus.NeedsDevice;
        }
        else
        {
            Register dst = _insn.GetRegister(0);
            ulong r = Alu.Binary(op, ReadRegister(cpu, dst), m, size, ref flags);
            if (op != Alu.Op.Cmp)
                WriteRegister(cpu, dst, r);
        }
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus Test(IVieCpu cpu, IVmmDevices devices, int mem, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        ulong flags = cpu.Rflags;
        Alu.Binary(Alu.Op.And, m, Source(cpu, mem == 0 ? 1 : 0), size, ref flags);
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus Unary(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        ulong flags = cpu.Rflags;
        ulong r = _insn.Mnemonic switch
        {
            Mnemonic.Inc => Alu.Inc(m, size, ref flags),
            Mnemonic.Dec => Alu.Dec(m, size, ref flags),
            Mnemonic.Neg => Alu.Neg(m, size, ref flags),
            _ => ~m & Alu.Mask(size),
        };
        if (!Write(devices, size, r))
            return VieStatus.NeedsDevice;
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus Shift(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        ulong count = _insn.GetOperandKind(1) == OperandKind.Register ? ReadRegister(cpu, _insn.GetRegister(1)) : _insn.Immediate;
        if (Alu.MaskCount(count, size) == 0)
            return VieStatus.Done; // a zero count neither writes nor changes flags (the read was still made)
        ulong flags = cpu.Rflags;
        var op = (Alu.Shift)((_insn.ModRM >> 3) & 7);
        ulong r = Alu.ShiftRotate(op, m, count, size, ref flags);
        if (!Write(devices, size, r))
            return VieStatus.NeedsDevice;
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // XCHG and XADD with a memory operand (operand 0 is memory for both when encoded with ModRM).
    private VieStatus Exchange(IVieCpu cpu, IVmmDevices devices, int mem, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        Register reg = _insn.GetRegister(1 - mem);
        ulong v = ReadRegister(cpu, reg);
        ulong flags = cpu.Rflags;
        ulong stored = _insn.Mnemonic == Mnemonic.Xadd ? Alu.Binary(Alu.Op.Add, m, v, size, ref flags) : v;
        if (!Write(devices, size, stored))
            return VieStatus.NeedsDevice;
        WriteRegister(cpu, reg, m);
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // CMPXCHG: compare the accumulator with memory; equal stores the source, otherwise the
    // accumulator is loaded. The processor always writes the destination (the old value back on
    // failure), so the device sees a write either way.
    private VieStatus CompareExchange(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        Register acc = RegisterInfo.Gpr(0, size, false);
        ulong flags = cpu.Rflags;
        Alu.Binary(Alu.Op.Cmp, ReadRegister(cpu, acc), m, size, ref flags);
        bool equal = (flags & Rflags.ZF) != 0;
        if (!Write(devices, size, equal ? ReadRegister(cpu, _insn.GetRegister(1)) : m))
            return VieStatus.NeedsDevice;
        if (!equal)
            WriteRegister(cpu, acc, m);
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus SetCc(IVieCpu cpu, IVmmDevices devices, int size)
    {
        bool holds = Conditions.Holds(_insn.OpcodeByte & 0xF, cpu.Rflags);
        return Write(devices, size, holds ? 1UL : 0) ? VieStatus.Done : VieStatus.NeedsDevice;
    }

    private VieStatus CmovCc(IVieCpu cpu, IVmmDevices devices, int size)
    {
        // The source is read whatever the condition; a 32-bit destination is zero-extended even when
        // the move does not happen.
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        Register dst = _insn.GetRegister(0);
        ulong v = Conditions.Holds(_insn.OpcodeByte & 0xF, cpu.Rflags) ? m : ReadRegister(cpu, dst);
        WriteRegister(cpu, dst, v);
        return VieStatus.Done;
    }

    private VieStatus BitTest(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        var op = _insn.Mnemonic switch
        {
            Mnemonic.Bts => Alu.BitOp.Bts,
            Mnemonic.Btr => Alu.BitOp.Btr,
            Mnemonic.Btc => Alu.BitOp.Btc,
            _ => Alu.BitOp.Bt,
        };
        ulong flags = cpu.Rflags;
        ulong r = Alu.BitTest(op, m, _insn.Immediate, size, ref flags);
        if (op != Alu.BitOp.Bt && !Write(devices, size, r))
            return VieStatus.NeedsDevice;
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // MUL/IMUL/DIV/IDIV with a memory operand: the one-operand forms use rDX:rAX (AX for bytes);
    // IMUL's two- and three-operand forms write a register.
    private VieStatus MulDiv(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        ulong flags = cpu.Rflags;
        if (_insn.OperandCount > 1)
        {
            Register dst = _insn.GetRegister(0);
            ulong a = _insn.OperandCount == 3 ? m : ReadRegister(cpu, dst);
            ulong b = _insn.OperandCount == 3 ? _insn.Immediate : m;
            WriteRegister(cpu, dst, Alu.Imul(a, b, size, out _, ref flags));
            cpu.Rflags = flags;
            return VieStatus.Done;
        }
        ulong rax = cpu.GetGpr(0);
        ulong lowIn = size == 1 ? rax & 0xFF : rax;
        ulong highIn = size == 1 ? (rax >> 8) & 0xFF : cpu.GetGpr(2);
        ulong lo, hi;
        switch (_insn.Mnemonic)
        {
            case Mnemonic.Mul: lo = Alu.Mul(lowIn, m, size, out hi, ref flags); break;
            case Mnemonic.Imul: lo = Alu.Imul(lowIn, m, size, out hi, ref flags); break;
            default:
                bool ok = _insn.Mnemonic == Mnemonic.Div
                    ? Alu.Div(highIn, lowIn, m, size, out lo, out hi)
                    : Alu.Idiv(highIn, lowIn, m, size, out lo, out hi);
                if (!ok)
                {
                    FaultVector = 0; // #DE
                    return VieStatus.Fault;
                }
                break;
        }
        if (size == 1)
        {
            WriteRegister(cpu, Register.AX, (lo & 0xFF) | ((hi & 0xFF) << 8));
        }
        else
        {
            WriteRegister(cpu, RegisterInfo.Gpr(0, size, false), lo);
            WriteRegister(cpu, RegisterInfo.Gpr(2, size, false), hi);
        }
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // One element of MOVS/STOS/LODS/CMPS/SCAS: the source is DS:rSI (segment overridable) or the
    // accumulator, the destination ES:rDI or the accumulator. Each side is RAM or device memory;
    // the device side goes through the slots like any other access. (CMPS with both sides in
    // device memory needs two reads in one element and falls back for now.)
    private VieStatus StringElement(IVieCpu cpu, IVmmDevices devices, IGuestMemory memory)
    {
        if (_string is StringOp.Cmps or StringOp.Scas)
            return CompareElement(cpu, devices, memory);
        int size = _insn.MemorySize;
        int adSize = _insn.AddressSize;
        ulong adMask = Alu.Mask(adSize);
        bool rep = (_insn.Prefixes & (Prefixes.Rep | Prefixes.Repne)) != 0;
        ulong count = cpu.GetGpr(1) & adMask;
        if (rep && count == 0)
            return VieStatus.Done;
        bool loads = _string == StringOp.Lods;
        bool stores = _string == StringOp.Stos;
        // Both sides are translated and checked before any access, so a fault or a fallback never
        // follows a device access that was already made.
        ulong srcGpa = 0, dstGpa = 0;
        if (!stores && !TranslateSide(memory, Linear(cpu, _insn.MemorySegment, cpu.GetGpr(6) & adMask), write: false, size, out srcGpa))
            return VieStatus.Fallback;
        if (!loads && !TranslateSide(memory, Linear(cpu, Register.ES, cpu.GetGpr(7) & adMask), write: true, size, out dstGpa))
            return VieStatus.Fallback;
        Span<byte> buf = stackalloc byte[8];
        ulong value;
        if (stores)
        {
            value = cpu.GetGpr(0) & Alu.Mask(size);
        }
        else
        {
            if (memory.ReadRam(srcGpa, buf[..size]))
                value = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(buf);
            else if (!Read(devices, srcGpa, size, out value))
                return VieStatus.NeedsDevice;
            value &= Alu.Mask(size);
        }
        if (!loads)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(buf, value);
            if (_write.State != SlotState.Done && !memory.WriteRam(dstGpa, buf[..size]) && !Write(devices, dstGpa, size, value))
                return VieStatus.NeedsDevice;
        }
        // The element is complete: now the registers.
        if (loads)
            WriteRegister(cpu, RegisterInfo.Gpr(0, size, false), value);
        ulong step = (cpu.Rflags & Rflags.DF) != 0 ? (ulong)-size : (ulong)size;
        if (!stores)
            StepIndex(cpu, 6, step, adSize);
        if (!loads)
            StepIndex(cpu, 7, step, adSize);
        if (!rep)
            return VieStatus.Done;
        StepIndex(cpu, 1, ulong.MaxValue, adSize);
        return (cpu.GetGpr(1) & adMask) == 0 ? VieStatus.Done : VieStatus.Repeat;
    }

    private VieStatus CompareElement(IVieCpu cpu, IVmmDevices devices, IGuestMemory memory)
    {
        int size = _insn.MemorySize;
        int adSize = _insn.AddressSize;
        ulong adMask = Alu.Mask(adSize);
        bool repe = (_insn.Prefixes & Prefixes.Rep) != 0;
        bool repne = (_insn.Prefixes & Prefixes.Repne) != 0;
        if ((repe || repne) && (cpu.GetGpr(1) & adMask) == 0)
            return VieStatus.Done;
        bool cmps = _string == StringOp.Cmps;
        ulong srcGpa = 0;
        if (cmps && !TranslateSide(memory, Linear(cpu, _insn.MemorySegment, cpu.GetGpr(6) & adMask), write: false, size, out srcGpa))
            return VieStatus.Fallback;
        if (!TranslateSide(memory, Linear(cpu, Register.ES, cpu.GetGpr(7) & adMask), write: false, size, out ulong dstGpa))
            return VieStatus.Fallback;
        // Reading RAM has no side effects, so it also tells which side is device memory; two device
        // sides would need two reads in one element and fall back before either is made.
        Span<byte> buf = stackalloc byte[8];
        bool srcRam = !cmps || memory.ReadRam(srcGpa, buf[..size]);
        ulong left = cmps && srcRam ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(buf) & Alu.Mask(size) : cpu.GetGpr(0) & Alu.Mask(size);
        buf.Clear();
        bool dstRam = memory.ReadRam(dstGpa, buf[..size]);
        ulong right = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(buf) & Alu.Mask(size);
        if (!srcRam && !dstRam)
            return VieStatus.Fallback;
        if (!srcRam && !Read(devices, srcGpa, size, out left))
            return VieStatus.NeedsDevice;
        if (!dstRam && !Read(devices, dstGpa, size, out right))
            return VieStatus.NeedsDevice;
        ulong flags = cpu.Rflags;
        Alu.Binary(Alu.Op.Cmp, left, right, size, ref flags);
        cpu.Rflags = flags;
        ulong step = (flags & Rflags.DF) != 0 ? (ulong)-size : (ulong)size;
        if (cmps)
            StepIndex(cpu, 6, step, adSize);
        StepIndex(cpu, 7, step, adSize);
        if (!repe && !repne)
            return VieStatus.Done;
        StepIndex(cpu, 1, ulong.MaxValue, adSize);
        bool zf = (flags & Rflags.ZF) != 0;
        bool stop = (cpu.GetGpr(1) & adMask) == 0 || (repe && !zf) || (repne && zf);
        return stop ? VieStatus.Done : VieStatus.Repeat;
    }

    // Translates one side of a string element; false (fall back) on a fault or a page crossing.
    private static bool TranslateSide(IGuestMemory memory, ulong gla, bool write, int size, out ulong gpa) =>
        memory.Translate(gla, write, out gpa) && ((gpa & 0xFFF) + (ulong)size) <= 0x1000;

    private ulong Linear(IVieCpu cpu, Register seg, ulong offset) =>
        _bitness != Bitness.Bits64 ? (uint)(cpu.SegmentBase(seg) + offset)
        : seg is Register.FS or Register.GS ? cpu.SegmentBase(seg) + offset : offset;

    // Adds to RSI/RDI/RCX at the address size: 16 bits keep the rest, 32 bits zero-extend.
    private static void StepIndex(IVieCpu cpu, int n, ulong delta, int adSize)
    {
        ulong v = cpu.GetGpr(n);
        ulong r = v + delta;
        cpu.SetGpr(n, adSize switch
        {
            2 => (v & ~0xFFFFUL) | (r & 0xFFFF),
            4 => (uint)r,
            _ => r,
        });
    }

    private VieStatus BitScan(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        Register dst = _insn.GetRegister(0);
        ulong flags = cpu.Rflags;
        ulong r = _insn.Mnemonic switch
        {
            Mnemonic.Bsf => Alu.Bsf(m, ReadRegister(cpu, dst), size, ref flags),
            Mnemonic.Bsr => Alu.Bsr(m, ReadRegister(cpu, dst), size, ref flags),
            Mnemonic.Tzcnt => Alu.Tzcnt(m, size, ref flags),
            Mnemonic.Lzcnt => Alu.Lzcnt(m, size, ref flags),
            _ => Alu.Popcnt(m, size, ref flags),
        };
        // BSF/BSR of zero leave the destination as it was (a 32-bit one is still written back).
        WriteRegister(cpu, dst, r);
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // MOVBE: a load or store with the bytes reversed.
    private VieStatus MoveSwapped(IVieCpu cpu, IVmmDevices devices, int mem, int size)
    {
        if (mem == 0)
        {
            ulong v = Swap(ReadRegister(cpu, _insn.GetRegister(1)), size);
            return Write(devices, size, v) ? VieStatus.Done : VieStatus.NeedsDevice;
        }
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        WriteRegister(cpu, _insn.GetRegister(0), Swap(m, size));
        return VieStatus.Done;
    }

    private static ulong Swap(ulong v, int size) => size switch
    {
        2 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((ushort)v),
        4 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)v),
        _ => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v),
    };

    // XLAT: AL = [rBX + AL].
    private VieStatus Xlat(IVieCpu cpu, IVmmDevices devices)
    {
        if (!Read(devices, 1, out ulong m))
            return VieStatus.NeedsDevice;
        WriteRegister(cpu, Register.AL, m);
        return VieStatus.Done;
    }

    private VieStatus DoubleShift(IVieCpu cpu, IVmmDevices devices, int size)
    {
        if (!Read(devices, size, out ulong m))
            return VieStatus.NeedsDevice;
        ulong count = _insn.GetOperandKind(2) == OperandKind.Register ? ReadRegister(cpu, _insn.GetRegister(2)) : _insn.Immediate;
        int c = Alu.MaskCount(count, size);
        if (c == 0)
            return VieStatus.Done;
        ulong flags = cpu.Rflags;
        ulong b = ReadRegister(cpu, _insn.GetRegister(1));
        ulong r = _insn.Mnemonic == Mnemonic.Shld ? Alu.Shld(m, b, count, size, ref flags) : Alu.Shrd(m, b, count, size, ref flags);
        if (!Write(devices, size, r))
            return VieStatus.NeedsDevice;
        cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // The value of a register or immediate operand.
    private ulong Source(IVieCpu cpu, int i) =>
        _insn.GetOperandKind(i) == OperandKind.Register ? ReadRegister(cpu, _insn.GetRegister(i)) : _insn.Immediate;

    // One read of the memory operand: cached, claimed by a vmm device, or made pending.
    private bool Read(IVmmDevices devices, int size, out ulong value) => Read(devices, _gpa, size, out value);

    private bool Write(IVmmDevices devices, int size, ulong value) => Write(devices, _gpa, size, value);

    private bool Read(IVmmDevices devices, ulong gpa, int size, out ulong value)
    {
        if (_read.State == SlotState.Done)
        {
            value = _read.Data;
            return true;
        }
        _read.Gpa = gpa;
        _read.Bytes = (byte)size;
        if (devices.TryRead(gpa, size, out value))
        {
            value &= Alu.Mask(size);
            _read.Data = value;
            _read.State = SlotState.Done;
            return true;
        }
        if (_read.State != SlotState.Pending)
            Requests++;
        _read.State = SlotState.Pending;
        return false;
    }

    // One write of the memory operand: done, claimed by a vmm device, or made pending.
    private bool Write(IVmmDevices devices, ulong gpa, int size, ulong value)
    {
        if (_write.State == SlotState.Done)
            return true;
        _write.Gpa = gpa;
        _write.Bytes = (byte)size;
        _write.Data = value & Alu.Mask(size);
        if (devices.TryWrite(gpa, size, _write.Data))
        {
            _write.State = SlotState.Done;
            return true;
        }
        if (_write.State != SlotState.Pending)
            Requests++;
        _write.State = SlotState.Pending;
        return false;
    }

    /// <summary>Reads a general register as the instruction sees it (AH..BH are bits 15:8).</summary>
    public static ulong ReadRegister(IVieCpu cpu, Register r)
    {
        (int n, int size, bool high) = RegisterInfo.GprNumber(r);
        ulong v = cpu.GetGpr(n);
        return high ? (v >> 8) & 0xFF : v & Alu.Mask(size);
    }

    /// <summary>Writes a general register as the instruction would: 32-bit writes zero the upper
    /// half, 8- and 16-bit writes keep the rest.</summary>
    public static void WriteRegister(IVieCpu cpu, Register r, ulong value)
    {
        (int n, int size, bool high) = RegisterInfo.GprNumber(r);
        ulong old = cpu.GetGpr(n);
        ulong v = size switch
        {
            8 => value,
            4 => (uint)value,
            _ when high => (old & ~0xFF00UL) | ((value & 0xFF) << 8),
            _ => (old & ~Alu.Mask(size)) | (value & Alu.Mask(size)),
        };
        cpu.SetGpr(n, v);
    }
}
