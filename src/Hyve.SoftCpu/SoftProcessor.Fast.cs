// The software CPU's fast paths: when an instruction enters the decoded-instruction cache it is
// classified once, and the common integer forms (MOV, the ALU row, TEST, INC/DEC, LEA,
// PUSH/POP, Jcc, JMP, CALL, RET with general registers, immediates and one memory operand)
// run from the cached register numbers, sizes and address parts, without the general
// dispatcher. Everything else, and every form these do not cover (high-byte registers, LOCK,
// segment or control registers, branches in 16-bit code), goes the general way.
using System.Runtime.CompilerServices;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private enum Fast : byte
    {
        None,
        MovRR, MovRI, Load, Store, StoreImm,
        AluRR, AluRI, AluRM, AluMR, AluMI,
        TestRR, TestRI, IncDecR, Lea,
        PushR, PopR, Jcc, JmpRel, CallRel, Ret,
        MovzxRR, MovzxRM, MovsxRR, MovsxRM,
        Nop, ShiftRI, ShiftRCl, ImulRR, ImulRM, ImulRRI, ImulRMI,
    }

    // What a fast path needs, fixed when the instruction is cached.
    private struct FastForm
    {
        public Fast Kind;
        public byte N0, N1;        // register numbers of operands 0 and 1
        public byte Size;          // operand size
        public byte SrcSize;       // MOVZX/MOVSX source size
        public Alu.Op Op;
        public byte Cond;          // Jcc condition, 1 for DEC, the shift or rotate (ModRM.reg)
        public byte Base, Index;   // 0-15, 16 = RIP, 0xFF = none
        public byte Scale;
        public byte AddressSize;
        public Register Segment;
        public byte Length;
        public long Disp;
        public ulong Imm;
    }

    private const byte NoReg = 0xFF, RipReg = 16;

    private static FastForm Classify(in Instruction i, Bitness bitness)
    {
        var f = new FastForm { Length = i.Length, AddressSize = i.AddressSize, Segment = i.MemorySegment, Disp = i.Displacement };
        if ((i.Prefixes & (Prefixes.Lock | Prefixes.Vex)) != 0)
            return f; // VEX instructions (a gather's index is a vector register) take the general path
        Mnemonic m = i.Mnemonic;
        int count = i.OperandCount;
        OperandKind k0 = count > 0 ? i.GetOperandKind(0) : OperandKind.None;
        OperandKind k1 = count > 1 ? i.GetOperandKind(1) : OperandKind.None;
        bool r0 = k0 == OperandKind.Register && Plain(i.GetRegister(0), out f.N0, out int s0);
        bool r1 = k1 == OperandKind.Register && Plain(i.GetRegister(1), out f.N1, out int s1);
        bool mem0 = k0 == OperandKind.Memory, mem1 = k1 == OperandKind.Memory;
        bool imm1 = k1 is >= OperandKind.Immediate8 and <= OperandKind.Immediate32to64;
        if (mem0 || mem1)
        {
            if (!Address(in i, ref f))
                return f;
        }
        f.Imm = i.Immediate;
        if (r0)
            f.Size = (byte)RegisterInfo.GprNumber(i.GetRegister(0)).Size;
        else if (mem0)
            f.Size = (byte)i.MemorySize;
        switch (m)
        {
            case Mnemonic.Mov when count == 2:
                if (r0 && r1)
                    f.Kind = Fast.MovRR;
                else if (r0 && imm1)
                    f.Kind = Fast.MovRI;
                else if (r0 && mem1)
                    f.Kind = Fast.Load;
                else if (mem0 && r1)
                    f.Kind = Fast.Store;
                else if (mem0 && imm1)
                    f.Kind = Fast.StoreImm;
                break;
            case Mnemonic.Add or Mnemonic.Or or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp when count == 2:
                f.Op = Alu.OpOf(m);
                if (r0 && r1)
                    f.Kind = Fast.AluRR;
                else if (r0 && imm1)
                    f.Kind = Fast.AluRI;
                else if (r0 && mem1)
                    f.Kind = Fast.AluRM;
                else if (mem0 && r1)
                    f.Kind = Fast.AluMR;
                else if (mem0 && imm1)
                    f.Kind = Fast.AluMI;
                break;
            case Mnemonic.Test when count == 2:
                if (r0 && r1)
                    f.Kind = Fast.TestRR;
                else if (r0 && imm1)
                    f.Kind = Fast.TestRI;
                break;
            case Mnemonic.Inc or Mnemonic.Dec when r0:
                f.Kind = Fast.IncDecR;
                f.Cond = (byte)(m == Mnemonic.Dec ? 1 : 0);
                break;
            case Mnemonic.Lea when r0 && mem1:
                f.Kind = Fast.Lea;
                break;
            case Mnemonic.Movzx or Mnemonic.Movsx when r0 && (r1 || mem1):
                f.SrcSize = (byte)(mem1 ? i.MemorySize : RegisterInfo.GprNumber(i.GetRegister(1)).Size);
                f.Kind = m == Mnemonic.Movzx ? (mem1 ? Fast.MovzxRM : Fast.MovzxRR) : (mem1 ? Fast.MovsxRM : Fast.MovsxRR);
                break;
            case Mnemonic.Nop or Mnemonic.Pause or Mnemonic.Endbr64 or Mnemonic.Endbr32:
                f.Kind = Fast.Nop;
                break;
            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar when r0:
                f.Cond = (byte)((i.ModRM >> 3) & 7);
                if (count == 1 || imm1)
                {
                    // A count that masks to zero changes no flags: the general way handles it.
                    f.Imm = count == 1 ? 1 : i.Immediate;
                    if (Alu.MaskCount(f.Imm, f.Size) != 0)
                        f.Kind = Fast.ShiftRI;
                }
                else if (k1 == OperandKind.Register && i.GetRegister(1) == Register.CL)
                {
                    f.Kind = Fast.ShiftRCl;
                }
                break;
            case Mnemonic.Imul when r0 && count >= 2:
                if (count == 2)
                    f.Kind = r1 ? Fast.ImulRR : mem1 ? Fast.ImulRM : Fast.None;
                else
                    f.Kind = r1 ? Fast.ImulRRI : mem1 ? Fast.ImulRMI : Fast.None;
                break;
            case Mnemonic.Push when r0 && count == 1:
                f.Kind = Fast.PushR;
                f.Size = (byte)i.OperandSize;
                break;
            case Mnemonic.Pop when r0 && count == 1:
                f.Kind = Fast.PopR;
                f.Size = (byte)i.OperandSize;
                break;
            case Mnemonic.Jmp when k0 is >= OperandKind.NearBranch16 and <= OperandKind.NearBranch64 && i.OperandSize != 2 && bitness != Bitness.Bits16:
                f.Kind = Fast.JmpRel;
                f.Imm = i.NearBranchTarget(0) - i.Length;
                break;
            case Mnemonic.Call when k0 is >= OperandKind.NearBranch16 and <= OperandKind.NearBranch64 && i.OperandSize != 2 && bitness != Bitness.Bits16:
                f.Kind = Fast.CallRel;
                f.Size = (byte)i.OperandSize;
                f.Imm = i.NearBranchTarget(0) - i.Length;
                break;
            case Mnemonic.Ret when i.OpcodeByte == 0xC3 && bitness != Bitness.Bits16:
                f.Kind = Fast.Ret;
                f.Size = (byte)i.OperandSize;
                break;
            default:
                if (IsJcc(in i) && i.OperandSize != 2 && bitness != Bitness.Bits16)
                {
                    f.Kind = Fast.Jcc;
                    f.Cond = (byte)(i.OpcodeByte & 0xF);
                    f.Imm = i.NearBranchTarget(0) - i.Length;
                }
                break;
        }
        return f;
    }

    // A general register that is not AH..BH: its number and size.
    private static bool Plain(Register r, out byte n, out int size)
    {
        n = 0;
        size = 0;
        if (!IsGpr(r))
            return false;
        (int num, int s, bool high) = RegisterInfo.GprNumber(r);
        n = (byte)num;
        size = s;
        return !high;
    }

    private static bool Address(in Instruction i, ref FastForm f)
    {
        f.Base = Reg(i.MemoryBase, out bool okBase);
        f.Index = Reg(i.MemoryIndex, out bool okIndex);
        f.Scale = i.MemoryScale;
        return okBase && okIndex;
    }

    private static byte Reg(Register r, out bool ok)
    {
        ok = true;
        if (r == Register.None)
            return NoReg;
        if (r is Register.RIP or Register.EIP)
            return RipReg;
        (int n, int size, _) = RegisterInfo.GprNumber(r);
        ok = size >= 4; // 16-bit addressing goes the general way
        return (byte)n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong FastEa(ref FastForm f)
    {
        ulong ea = (ulong)f.Disp;
        if (f.Base == RipReg)
            ea += _rip + f.Length;
        else if (f.Base != NoReg)
            ea += _gpr[f.Base];
        if (f.Index != NoReg)
            ea += _gpr[f.Index] * f.Scale;
        return f.AddressSize == 8 ? ea : ea & Alu.Mask(f.AddressSize);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetReg(int n, int size, ulong v) => _gpr[n] = RegisterInfo.Merge(_gpr[n], size, false, v);

    // Runs a cached fast form. False when it raised or exited (as Step).
    private bool RunFast(ref FastForm f)
    {
        ulong next = (_rip + f.Length) & IpMask;
        int size = f.Size;
        ulong mask = Alu.Mask(size);
        switch (f.Kind)
        {
            case Fast.MovRR:
                SetReg(f.N0, size, _gpr[f.N1]);
                break;
            case Fast.MovRI:
                SetReg(f.N0, size, f.Imm);
                break;
            case Fast.Load:
                {
                    if (!Read(f.Segment, FastEa(ref f), size, out ulong v))
                        return false;
                    SetReg(f.N0, size, v);
                    break;
                }
            case Fast.Store:
                if (!Write(f.Segment, FastEa(ref f), size, _gpr[f.N1] & mask))
                    return false;
                break;
            case Fast.StoreImm:
                if (!Write(f.Segment, FastEa(ref f), size, f.Imm & mask))
                    return false;
                break;
            case Fast.AluRR:
                {
                    ulong r = AluDeferred(f.Op, _gpr[f.N0], _gpr[f.N1], size);
                    if (f.Op != Alu.Op.Cmp)
                        SetReg(f.N0, size, r);
                    break;
                }
            case Fast.AluRI:
                {
                    ulong r = AluDeferred(f.Op, _gpr[f.N0], f.Imm, size);
                    if (f.Op != Alu.Op.Cmp)
                        SetReg(f.N0, size, r);
                    break;
                }
            case Fast.AluRM:
                {
                    if (!Read(f.Segment, FastEa(ref f), size, out ulong b))
                        return false;
                    ulong r = AluDeferred(f.Op, _gpr[f.N0], b, size);
                    if (f.Op != Alu.Op.Cmp)
                        SetReg(f.N0, size, r);
                    break;
                }
            case Fast.AluMR or Fast.AluMI:
                {
                    ulong ea = FastEa(ref f);
                    bool cmp = f.Op == Alu.Op.Cmp;
                    if (!Read(f.Segment, ea, size, out ulong a, forWrite: !cmp))
                        return false;
                    ulong b = f.Kind == Fast.AluMR ? _gpr[f.N1] : f.Imm;
                    if (cmp)
                    {
                        AluDeferred(f.Op, a, b, size);
                        break;
                    }
                    // The flags change only once the store has gone through (ADC and SBB read
                    // CF, so they are computed eagerly on the side).
                    if (f.Op is Alu.Op.Adc or Alu.Op.Sbb)
                    {
                        ulong flags = Flags;
                        if (!Write(f.Segment, ea, size, Alu.Binary(f.Op, a, b, size, ref flags)))
                            return false;
                        _flags = flags;
                        break;
                    }
                    ulong r = f.Op switch
                    {
                        Alu.Op.Add => a + b,
                        Alu.Op.Sub => a - b,
                        Alu.Op.And => a & b,
                        Alu.Op.Or => a | b,
                        _ => a ^ b,
                    };
                    if (!Write(f.Segment, ea, size, r & mask))
                        return false;
                    AluDeferred(f.Op, a, b, size);
                    break;
                }
            case Fast.TestRR:
                AluDeferred(Alu.Op.And, _gpr[f.N0], _gpr[f.N1], size);
                break;
            case Fast.TestRI:
                AluDeferred(Alu.Op.And, _gpr[f.N0], f.Imm, size);
                break;
            case Fast.IncDecR:
                SetReg(f.N0, size, IncDecDeferred(_gpr[f.N0], size, f.Cond != 0));
                break;
            case Fast.Lea:
                SetReg(f.N0, size, FastEa(ref f));
                break;
            case Fast.MovzxRR:
                SetReg(f.N0, size, _gpr[f.N1] & Alu.Mask(f.SrcSize));
                break;
            case Fast.MovsxRR:
                SetReg(f.N0, size, (ulong)Alu.SignExtend(_gpr[f.N1], f.SrcSize));
                break;
            case Fast.MovzxRM or Fast.MovsxRM:
                {
                    if (!Read(f.Segment, FastEa(ref f), f.SrcSize, out ulong v))
                        return false;
                    SetReg(f.N0, size, f.Kind == Fast.MovzxRM ? v : (ulong)Alu.SignExtend(v, f.SrcSize));
                    break;
                }
            case Fast.Nop:
                break;
            case Fast.ShiftRI:
                SetReg(f.N0, size, Alu.ShiftRotate((Alu.Shift)f.Cond, _gpr[f.N0], f.Imm, size, ref Flags));
                break;
            case Fast.ShiftRCl:
                // A count that masks to zero leaves the flags but still writes the register
                // (a 32-bit one has its upper half cleared).
                SetReg(f.N0, size, Alu.ShiftRotate((Alu.Shift)f.Cond, _gpr[f.N0], _gpr[1] & 0xFF, size, ref Flags));
                break;
            case Fast.ImulRR:
                SetReg(f.N0, size, Alu.Imul(_gpr[f.N0], _gpr[f.N1], size, out _, ref Flags));
                break;
            case Fast.ImulRRI:
                SetReg(f.N0, size, Alu.Imul(_gpr[f.N1], f.Imm, size, out _, ref Flags));
                break;
            case Fast.ImulRM or Fast.ImulRMI:
                {
                    if (!Read(f.Segment, FastEa(ref f), size, out ulong b))
                        return false;
                    ulong a = f.Kind == Fast.ImulRM ? _gpr[f.N0] : b;
                    SetReg(f.N0, size, Alu.Imul(a, f.Kind == Fast.ImulRM ? b : f.Imm, size, out _, ref Flags));
                    break;
                }
            case Fast.PushR:
                if (!Push(_gpr[f.N0] & mask, size))
                    return false;
                break;
            case Fast.PopR:
                {
                    int sw = StackWidth;
                    if (!Read(Register.SS, _gpr[4] & Alu.Mask(sw), size, out ulong v))
                        return false;
                    SetStackPointer((_gpr[4] + (ulong)size) & Alu.Mask(sw), sw);
                    SetReg(f.N0, size, v);
                    break;
                }
            case Fast.Jcc:
                if (Condition(f.Cond) && !BranchTargetValid(next = (next + f.Imm) & IpMask))
                    return false;
                break;
            case Fast.JmpRel:
                if (!BranchTargetValid(next = (next + f.Imm) & IpMask))
                    return false;
                break;
            case Fast.CallRel:
                {
                    ulong target = (next + f.Imm) & IpMask;
                    if (!BranchTargetValid(target) || !Push(next, size))
                        return false;
                    next = target;
                    break;
                }
            default: // Ret
                {
                    int sw = StackWidth;
                    if (!Read(Register.SS, _gpr[4] & Alu.Mask(sw), size, out ulong target) || !BranchTargetValid(target & IpMask))
                        return false;
                    SetStackPointer((_gpr[4] + (ulong)size) & Alu.Mask(sw), sw);
                    next = target & IpMask;
                    break;
                }
        }
        _rip = next;
        return true;
    }
}
