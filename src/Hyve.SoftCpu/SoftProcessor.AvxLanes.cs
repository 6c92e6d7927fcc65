// The lane engine of AVX: a VEX instruction with an SSE form runs as that form, encoded with register
// operands only, once per 128-bit lane. The first source (or the destination of a two-operand form)
// is put in XMM2, which takes the result; the second source in XMM1 (read from memory here, without
// SSE's alignment rule); VBLENDV's mask in XMM0. A general register operand stays itself (or, for
// memory, RAX carries the value). The XMM registers (and RAX) are put back before the destination
// is written, and a fault in any lane leaves every register and memory as before.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private const int SlotFirst = 2, SlotSecond = 1, SlotMask = 0;

    private bool AvxLanes(Mnemonic m, ulong next)
    {
        Instruction vex = _insn;
        ulong rip0 = _rip;
        int map = vex.OpcodeMap, opcode = vex.OpcodeByte, pp = vex.VexPp;
        // VBLENDVPS/PD and VPBLENDVB are VEX-only opcodes of the SSE4.1 blends with XMM0 as the mask.
        if (map == 3 && opcode is 0x4A or 0x4B or 0x4C)
        {
            map = 2;
            opcode = opcode == 0x4A ? 0x14 : opcode == 0x4B ? 0x15 : 0x10;
        }
        if (m == Mnemonic.Vmaskmovdqu)
            return AvxDirect(map, opcode, pp, rip0, next);

        OperandKind k0 = vex.GetOperandKind(0);
        Register r0 = k0 == OperandKind.Register ? vex.GetRegister(0) : Register.None;
        bool shiftByImmediate = map == 1 && opcode is 0x71 or 0x72 or 0x73;
        bool widen = WideningVex[(int)m];
        bool narrow = m is Mnemonic.Vcvtpd2ps or Mnemonic.Vcvttpd2dq or Mnemonic.Vcvtpd2dq;
        bool countShift = !shiftByImmediate && m is Mnemonic.Vpsllw or Mnemonic.Vpslld or Mnemonic.Vpsllq or Mnemonic.Vpsrlw
            or Mnemonic.Vpsrld or Mnemonic.Vpsrlq or Mnemonic.Vpsraw or Mnemonic.Vpsrad;

        // Operand roles: the destination, the first source (a register), the second (register,
        // memory or general register) and an immediate.
        int immIndex = -1, secondIndex = -1, firstIndex = -1, maskIndex = -1;
        Register gprDest = Register.None;   // a general register the SSE form writes (its ModRM.reg)
        bool extract = false;               // VPEXTR*/VEXTRACTPS: the general register or memory is ModRM.rm
        for (int k = 0; k < vex.OperandCount; k++)
        {
            if (vex.GetOperandKind(k) is OperandKind.Immediate8)
                immIndex = k;
        }
        if (shiftByImmediate)
        {
            firstIndex = 1;
        }
        else if (m is Mnemonic.Vpextrb or Mnemonic.Vpextrd or Mnemonic.Vpextrq or Mnemonic.Vextractps || (m == Mnemonic.Vpextrw && map == 3))
        {
            extract = true;                 // Ey,V,Ib: the vector is ModRM.reg, the register or memory ModRM.rm
            firstIndex = 1;
        }
        else if (r0 != Register.None && !IsVector(r0))
        {
            gprDest = r0;                   // VCVT(T)SS2SI/SD2SI, VPEXTRW's 0F C5 form
            secondIndex = 1;
        }
        else
        {
            bool hasFirst = vex.OperandCount >= 3 && vex.GetOperandKind(1) == OperandKind.Register && IsVector(vex.GetRegister(1))
                && immIndex != 2;
            firstIndex = hasFirst ? 1 : 0;
            secondIndex = hasFirst ? 2 : 1;
            if (vex.OperandCount == 4 && vex.GetOperandKind(3) == OperandKind.Register)
                maskIndex = 3;
        }

        Register secondReg = secondIndex >= 0 && vex.GetOperandKind(secondIndex) == OperandKind.Register ? vex.GetRegister(secondIndex) : Register.None;
        bool secondGpr = secondReg != Register.None && !IsVector(secondReg);
        bool secondMemory = secondIndex >= 0 && vex.GetOperandKind(secondIndex) == OperandKind.Memory;
        bool gprSource = secondGpr || (secondMemory && m is Mnemonic.Vpinsrb or Mnemonic.Vpinsrw or Mnemonic.Vpinsrd or Mnemonic.Vpinsrq
            or Mnemonic.Vcvtsi2ss or Mnemonic.Vcvtsi2sd);
        bool wide = vex.VexL != 0 && !narrow && r0 != Register.None && r0 >= Register.YMM0 || (narrow && vex.VexL != 0);
        int lanes = wide ? 2 : 1;

        // The second source's bytes per lane, read up front (memory faults before anything changes).
        UInt128 second0 = 0, second1 = 0;
        ulong gprValue = 0;
        int gprSize = 0;
        if (secondMemory)
        {
            int total = vex.MemorySize;
            if (gprSource)
            {
                gprSize = total;
                if (!ReadBytes(Ea(), total, out UInt128 v, out _))
                    return false;
                gprValue = (ulong)v;
            }
            else if (!ReadBytes(Ea(), total, out second0, out second1))
            {
                return false;
            }
            if (widen && lanes == 2)
            {
                second1 = second0 >> (8 * total / 2);
                second0 &= ((UInt128)1 << (8 * total / 2)) - 1;
            }
            else if (countShift || lanes == 1)
            {
                second1 = second0;
            }
        }
        else if (secondReg != Register.None && !secondGpr)
        {
            second0 = VectorLane(secondReg, 0);
            second1 = countShift ? second0 : VectorLane(secondReg, 1);
            if (widen && lanes == 2)
            {
                int chunk = WidenSourceBytes(m, 1) / 2;
                second1 = second0 >> (8 * chunk);
            }
        }

        // The SSE form: its prefix, REX for general registers, escape bytes, opcode, ModRM, immediate.
        Span<byte> code = stackalloc byte[16];
        int n = 0;
        if (pp != 0)
            code[n++] = pp == 1 ? (byte)0x66 : pp == 2 ? (byte)0xF3 : (byte)0xF2;
        int rex = 0, reg = SlotFirst, rm = SlotSecond;
        if (shiftByImmediate)
        {
            reg = (vex.ModRM >> 3) & 7;
            rm = SlotFirst;
        }
        else if (gprDest != Register.None)
        {
            (int g, int size, _) = RegisterInfo.GprNumber(gprDest);
            reg = g & 7;
            rex |= (g >> 3) << 2 | (size == 8 ? 8 : 0);
        }
        else if (extract || gprSource)
        {
            int g = 0, size = gprSize;
            Register gr = extract ? (k0 == OperandKind.Register ? r0 : Register.None) : secondReg;
            if (gr != Register.None)
                (g, size, _) = RegisterInfo.GprNumber(gr);
            rm = g & 7;
            rex |= (g >> 3) | (size == 8 || m is Mnemonic.Vpextrq or Mnemonic.Vpinsrq ? 8 : 0);
        }
        n = EncodeLegacy(code, n, rex, map, opcode, (reg << 3) | rm);
        int immAt = n;
        if (immIndex >= 0)
            code[n++] = (byte)vex.Immediate;

        Span<UInt128> saved = stackalloc UInt128[16];
        _area.Xmm.AsSpan().CopyTo(saved);
        ulong savedRax = _gpr[0];
        bool usesRax = (extract && k0 == OperandKind.Memory) || (gprSource && secondMemory);
        UInt128 out0 = 0, out1 = 0, xmm0Out = 0;
        bool ok = true;
        Instruction legacy = default;
        int decodedImm = -1;
        for (int lane = 0; lane < lanes && ok; lane++)
        {
            // Register operands come from the registers as they were (the slots overlap XMM0-2).
            UInt128 firstValue = firstIndex >= 0 ? SavedLane(saved, vex.GetRegister(firstIndex), narrow ? 0 : lane) : 0;
            UInt128 maskValue = maskIndex >= 0 ? SavedLane(saved, vex.GetRegister(maskIndex), lane) : 0;
            if (firstIndex >= 0)
                _area.Xmm[SlotFirst] = firstValue;
            if (secondIndex >= 0 && !gprSource)
                _area.Xmm[SlotSecond] = lane == 0 ? second0 : second1;
            if (maskIndex >= 0)
                _area.Xmm[SlotMask] = maskValue;
            if (usesRax && gprSource)
                _gpr[0] = gprValue;
            int imm = 0;
            if (immIndex >= 0)
            {
                imm = LaneImmediate(m, (int)vex.Immediate, lane);
                if (m == Mnemonic.Vinsertps && secondMemory)
                    imm &= 0x3F; // from memory the dword is the source, whatever bits 7:6 say
                code[immAt] = (byte)imm;
            }
            // Decoded once, and again only for an upper lane whose immediate differs.
            if (imm != decodedImm && Decoder.Decode(code[..n], _bitness, out legacy) != DecodeStatus.Ok)
            {
                _insn = vex;
                ok = RaiseUnimplemented();
                break;
            }
            decodedImm = imm;
            _rip = rip0;
            ok = RunLegacy(in legacy, next);
            if (lane == 0)
                out0 = _area.Xmm[SlotFirst];
            else
                out1 = _area.Xmm[SlotFirst];
            xmm0Out = _area.Xmm[SlotMask];
        }
        ulong raxOut = _gpr[0];
        saved.CopyTo(_area.Xmm);
        _insn = vex;
        if (usesRax)
            _gpr[0] = savedRax;
        if (!ok)
        {
            _rip = rip0;
            return false;
        }
        _rip = rip0;
        // The results.
        if (extract)
        {
            if (k0 == OperandKind.Memory && !Write(vex.MemorySegment, Ea(), vex.MemorySize, raxOut & Alu.Mask(vex.MemorySize)))
                return false;
        }
        else if (gprDest != Register.None || m is Mnemonic.Vcomiss or Mnemonic.Vcomisd or Mnemonic.Vucomiss or Mnemonic.Vucomisd
            or Mnemonic.Vpcmpestri or Mnemonic.Vpcmpestri64 or Mnemonic.Vpcmpistri)
        {
            // A general register or the flags only.
        }
        else if (m is Mnemonic.Vpcmpestrm or Mnemonic.Vpcmpestrm64 or Mnemonic.Vpcmpistrm)
        {
            SetVector(Register.XMM0, xmm0Out, 0);
        }
        else if (narrow)
        {
            SetVector(r0, lanes == 2 ? Low64(out0) | (out1 << 64) : out0, 0);
        }
        else
        {
            Register dst = shiftByImmediate ? vex.GetRegister(0) : r0;
            SetVector(dst, out0, lanes == 2 ? out1 : 0);
        }
        _rip = next;
        return true;
    }

    private UInt128 SavedLane(ReadOnlySpan<UInt128> saved, Register r, int lane) =>
        lane == 0 ? saved[VectorNumber(r)] : _area.YmmHigh[VectorNumber(r)];

    // The bytes of a widening form's source for the vector length (VEX.L + 1 lanes): half, a quarter
    // or an eighth of the destination's.
    private static int WidenSourceBytes(Mnemonic m, int vexL) => m switch
    {
        Mnemonic.Vpmovsxbd or Mnemonic.Vpmovzxbd or Mnemonic.Vpmovsxwq or Mnemonic.Vpmovzxwq => 4 << vexL,
        Mnemonic.Vpmovsxbq or Mnemonic.Vpmovzxbq => 2 << vexL,
        _ => 8 << vexL,
    };

    // The immediate an SSE form gets for a lane: the 256-bit forms whose immediate has a field per
    // element take the upper lane's field from the higher bits.
    private static int LaneImmediate(Mnemonic m, int imm, int lane)
    {
        if (lane == 0)
            return imm;
        return m switch
        {
            Mnemonic.Vshufpd or Mnemonic.Vblendpd => imm >> 2,
            Mnemonic.Vblendps => imm >> 4,
            Mnemonic.Vmpsadbw => imm >> 3,
            _ => imm,
        };
    }

    // VMASKMOVDQU: the SSE form with the same registers, address size and segment.
    private bool AvxDirect(int map, int opcode, int pp, ulong rip0, ulong next)
    {
        Instruction vex = _insn;
        Span<byte> code = stackalloc byte[16];
        int n = 0;
        if (vex.SegmentPrefix != Register.None)
            code[n++] = vex.SegmentPrefix switch
            {
                Register.ES => 0x26,
                Register.CS => 0x2E,
                Register.SS => 0x36,
                Register.DS => 0x3E,
                Register.FS => 0x64,
                _ => 0x65,
            };
        if ((vex.Prefixes & Prefixes.AddressSize) != 0)
            code[n++] = 0x67;
        if (pp != 0)
            code[n++] = pp == 1 ? (byte)0x66 : pp == 2 ? (byte)0xF3 : (byte)0xF2;
        int reg = VectorNumber(vex.GetRegister(vex.OperandCount - 2)), rm = VectorNumber(vex.GetRegister(vex.OperandCount - 1));
        n = EncodeLegacy(code, n, (reg >> 3) << 2 | (rm >> 3), map, opcode, ((reg & 7) << 3) | (rm & 7));
        if (Decoder.Decode(code[..n], _bitness, out Instruction legacy) != DecodeStatus.Ok)
            return RaiseUnimplemented();
        bool ok = RunLegacy(in legacy, next);
        _insn = vex;
        if (!ok)
            _rip = rip0;
        return ok;
    }

    // After the prefixes already in code[..n]: REX (when rex is nonzero), the escape bytes of the
    // map, the opcode and a register-form ModRM with reg and rm (modrm's low six bits). Returns
    // the new length.
    private static int EncodeLegacy(Span<byte> code, int n, int rex, int map, int opcode, int modrm)
    {
        if (rex != 0)
            code[n++] = (byte)(0x40 | rex);
        code[n++] = 0x0F;
        if (map == 2)
            code[n++] = 0x38;
        else if (map == 3)
            code[n++] = 0x3A;
        code[n++] = (byte)opcode;
        code[n++] = (byte)(0xC0 | modrm);
        return n;
    }

    // Runs an SSE form in place of the current VEX instruction (the caller puts _insn back).
    private bool RunLegacy(in Instruction legacy, ulong next)
    {
        _insn = legacy;
        _vexLane = true;
        try
        {
            return ExecuteOne(next);
        }
        finally
        {
            _vexLane = false;
        }
    }
}
