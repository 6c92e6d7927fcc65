// The x86 instruction decoder: prefixes, the generated opcode trees, ModRM/SIB and operands.
using System;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Hyve.X86.Decoding;

/// <summary>Code size the decoder assumes (CS.D / CS.L / real mode).</summary>
public enum Bitness : byte
{
    /// <summary>Real mode, virtual-8086 mode and 16-bit protected mode.</summary>
    Bits16 = 16,
    /// <summary>32-bit protected mode and compatibility mode with CS.D=1.</summary>
    Bits32 = 32,
    /// <summary>64-bit mode.</summary>
    Bits64 = 64,
}

/// <summary>
/// Decodes one legacy-encoded x86 instruction at a time. Stateless and allocation-free; invalid
/// input is reported through <see cref="Instruction.Status"/>, never an exception.
/// </summary>
public static partial class Decoder
{
    // Node kinds of the generated trees.
    private const ulong KLeaf = OpcodeTables.KLeaf, KReg = OpcodeTables.KReg, KMod = OpcodeTables.KMod, KRm = OpcodeTables.KRm,
        KPfx = OpcodeTables.KPfx, KW = OpcodeTables.KW, KB = OpcodeTables.KB, KMode = OpcodeTables.KMode, KOs = OpcodeTables.KOs,
        KOsD64 = OpcodeTables.KOsD64, KAs = OpcodeTables.KAs, KOsF64 = OpcodeTables.KOsF64, KL = OpcodeTables.KL;

    // Leaf flag bits (leaf bits 39:32).
    private const int FLock = 1, FD64 = 2, FF64 = 4, FNoMod = 8, FNoW = 16, FNoVvvv = 32;

    // Byte classes: 1 ES/CS/SS/DS, 2 FS/GS, 3 66, 4 67, 5 F0, 6 F2, 7 F3, 8 REX (64-bit mode only),
    // 9 the 0F escape, 10 C4/C5/62/8F (VEX/EVEX/XOP candidates); 0 every other opcode.
    private static ReadOnlySpan<byte> PrefixClasses =>
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 10, 0, 2, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 10, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        5, 0, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// <summary>The architectural instruction length limit.</summary>
    public const int MaxLength = 15;

    /// <summary>Decodes the instruction at the start of <paramref name="code"/>.</summary>
    /// <param name="code">Instruction bytes (at most 15 are looked at).</param>
    /// <param name="bitness">Code size.</param>
    /// <param name="insn">The decoded instruction; its <see cref="Instruction.Status"/> says whether it is valid.</param>
    /// <returns>The status, as also stored in <paramref name="insn"/>.</returns>
    public static DecodeStatus Decode(ReadOnlySpan<byte> code, Bitness bitness, out Instruction insn)
    {
        insn = default;
        if (code.Length > MaxLength)
            code = code[..MaxLength];
        DecodeStatus st = bitness switch
        {
            Bitness.Bits64 => DecodeCore<Mode64>(code, ref insn),
            Bitness.Bits32 => DecodeCore<Mode32>(code, ref insn),
            _ => DecodeCore<Mode16>(code, ref insn),
        };
        insn.Status = st;
        if (st is not (DecodeStatus.Ok or DecodeStatus.Unsupported))
        {
            insn.Opcode = Opcode.Invalid;
        }
        return st;
    }

    // Operand context handed to the generated operand decoders, packed in one register:
    // ModRM.reg with REX.R (3:0), ModRM.rm with REX.B (7:4), operand size (11:8), address size (15:12),
    // 'y' size (19:16), 'f' size (23:20), REX present (24), register form (25), opcode register with
    // REX.B (29:26), 64-bit mode (30). Sizes are in bytes.
    private const int CtxRex = 1 << 24;
    private const int CtxRegForm = 1 << 25;
    private const int CtxIs64 = 1 << 30;
    private const int CtxOpcodeRexB = 1 << 29; // REX.B's bit in the opcode-register field

    // Context bits contributed by REX.WRXB: R into reg (bit 3), B into rm (bit 7) and the opcode
    // register (bit 29), W into the 'y' size (8 instead of 4).
    private static ReadOnlySpan<int> RexContext =>
    [
        4 << 16, (4 << 16) | 0x20000080, 4 << 16, (4 << 16) | 0x20000080,
        (4 << 16) | 8, (4 << 16) | 8 | 0x20000080, (4 << 16) | 8, (4 << 16) | 8 | 0x20000080,
        8 << 16, (8 << 16) | 0x20000080, 8 << 16, (8 << 16) | 0x20000080,
        (8 << 16) | 8, (8 << 16) | 8 | 0x20000080, (8 << 16) | 8, (8 << 16) | 8 | 0x20000080,
    ];

    // Reading past the input advances pos anyway; callers compare pos with the input length once.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Byte(ReadOnlySpan<byte> code, ref int pos)
    {
        int p = pos;
        pos = p + 1;
        return (uint)p < (uint)code.Length ? code[p] : 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Word(ReadOnlySpan<byte> code, ref int pos)
    {
        int p = pos;
        pos = p + 2;
        return (uint)(p + 2) <= (uint)code.Length ? BinaryPrimitives.ReadUInt16LittleEndian(code[p..]) : 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Dword(ReadOnlySpan<byte> code, ref int pos)
    {
        int p = pos;
        pos = p + 4;
        return (uint)(p + 4) <= (uint)code.Length ? BinaryPrimitives.ReadUInt32LittleEndian(code[p..]) : 0;
    }

    private static ulong Qword(ReadOnlySpan<byte> code, ref int pos)
    {
        int p = pos;
        pos = p + 8;
        return (uint)(p + 8) <= (uint)code.Length ? BinaryPrimitives.ReadUInt64LittleEndian(code[p..]) : 0;
    }

    // The decoder is compiled once per mode (the JIT specialises generic methods over structs),
    // so the mode tests fold to constants.
    private interface IMode
    {
        static abstract bool Is64 { get; }

        static abstract bool Is16 { get; }
    }

    private readonly struct Mode16 : IMode
    {
        public static bool Is64 => false;

        public static bool Is16 => true;
    }

    private readonly struct Mode32 : IMode
    {
        public static bool Is64 => false;

        public static bool Is16 => false;
    }

    private readonly struct Mode64 : IMode
    {
        public static bool Is64 => true;

        public static bool Is16 => false;
    }

    private static DecodeStatus DecodeCore<TMode>(ReadOnlySpan<byte> code, ref Instruction insn)
        where TMode : struct, IMode
    {
        bool is64 = TMode.Is64;
        bool is16 = TMode.Is16;
        // Everything runs on locals; the operand decoders get one packed context value.
        int pos = 0;
        int rex = 0;
        int pfx = 0;            // Prefixes bits: Lock, Rep, Repne, OperandSize, AddressSize
        int rep = 0;            // the last of F3 (2) / F2 (3)
        Register seg = Register.None;
        int b;
        int c;
        while (true)
        {
            if ((uint)pos >= (uint)code.Length)
                return Overrun(code);
            b = code[pos++];
            c = PrefixClasses[b];
            if ((uint)(c - 1) >= 8)
                break; // not a prefix (0: opcode, 9/10: escapes)
            if (c == 8)
            {
                if (!is64)
                {
                    c = 0; // INC/DEC outside 64-bit mode
                    break;
                }
                rex = b;
                continue;
            }
            rex = 0; // a legacy prefix after REX cancels it
            switch (c)
            {
                case 1:
                    // In 64-bit mode ES/CS/SS/DS are recorded but lose to an earlier FS/GS.
                    if (!is64 || seg < Register.FS)
                        seg = RegisterInfo.Add(Register.ES, (b >> 3) & 3);
                    break;
                case 2: seg = b == 0x64 ? Register.FS : Register.GS; break;
                case 3: pfx |= (int)Prefixes.OperandSize; break;
                case 4: pfx |= (int)Prefixes.AddressSize; break;
                case 5: pfx |= (int)Prefixes.Lock; break;
                // The last of F2/F3 is the one in effect.
                case 6: pfx = (pfx & ~(int)Prefixes.Rep) | (int)Prefixes.Repne; rep = 3; break;
                default: pfx = (pfx & ~(int)Prefixes.Repne) | (int)Prefixes.Rep; rep = 2; break;
            }
        }

        bool ad67 = (pfx & (int)Prefixes.AddressSize) != 0;
        int adSize = is64 ? (ad67 ? 4 : 8) : (ad67 ^ is16 ? 2 : 4);
        insn.SegmentPrefix = seg;
        int map = 0;
        int op = b;
        if (c == 9)
        {
            if ((uint)pos >= (uint)code.Length)
                return Overrun(code);
            op = code[pos++];
            map = 1;
            if (op is 0x38 or 0x3A)
            {
                map = op == 0x38 ? 2 : 3;
                if ((uint)pos >= (uint)code.Length)
                    return Overrun(code);
                op = code[pos++];
            }
            else if (op == 0x0F)
            {
                map = 4;
            }
        }
        // VEX: the REX bits it carries (R, X, B; W only in 64-bit mode, where it can widen Gy), its
        // W for the tree, VEX.vvvv (as read, and as the register it names) and VEX.L.
        bool vex = false;
        int vexW = 0, vvvv = 0, vreg = 0, vexL = 0, pp = 0;
        if (c == 10)
        {
            if (!IsVexLike(code, pos, is64, b))
            {
                // LES/LDS/BOUND/POP Ev: the one-byte map.
            }
            else if (b is 0xC4 or 0xC5)
            {
                int at = pos;
                int b1 = code[pos++];
                int b2 = b1;
                int vmap = 1;
                int vrex = 0x40 | ((~b1 >> 5) & 4); // R
                if (b == 0xC4)
                {
                    if ((uint)pos >= (uint)code.Length)
                        return Overrun(code);
                    b2 = code[pos++];
                    vmap = b1 & 0x1F;
                    vrex |= (~b1 >> 5) & 3; // X, B
                    vexW = b2 >> 7;
                }
                if (vmap is < 1 or > 3)
                    return SkipVex(code, at, b, adSize, is64, ref insn);
                if ((uint)pos >= (uint)code.Length)
                    return Overrun(code);
                op = code[pos++];
                map = 4 + vmap;
                if (OpcodeTables.Roots[map * 256 + op] == 0)
                    return SkipVex(code, at, b, adSize, is64, ref insn);
                // 66, F2, F3, LOCK or REX before VEX is #UD.
                if (rex != 0 || (pfx & (int)(Prefixes.Lock | Prefixes.OperandSize | Prefixes.Rep | Prefixes.Repne)) != 0)
                    return DecodeStatus.Invalid;
                vvvv = (~b2 >> 3) & 15;
                vexL = (b2 >> 2) & 1;
                pp = b2 & 3;
                // Outside 64-bit mode only R̄ and X̄ (both 1, or this were LES/LDS) exist; B̄ and vvvv's top bit
                // do not reach a register.
                rex = is64 ? vrex | (vexW << 3) : 0;
                vreg = is64 ? vvvv : vvvv & 7;
                vex = true;
            }
            else
            {
                return SkipVex(code, pos, b, adSize, is64, ref insn);
            }
        }

        ulong node = OpcodeTables.Roots[(map == 4 ? 1 : map) * 256 + op];
        int modrm = 0;
        bool hasModRm = (node & (1UL << 59)) != 0 || map == 4;
        if (hasModRm)
        {
            if ((uint)pos >= (uint)code.Length)
                return Overrun(code);
            modrm = code[pos++];
            insn.HasModRM = true;
            insn.ModRM = (byte)modrm;
        }
        if (map == 4)
        {
            // 3DNow!: ModRM, memory operand, then the opcode suffix.
            if (modrm < 0xC0)
                pos = DecodeMemory(code, pos, modrm, adSize, rex, is64, ref insn);
            node = OpcodeTables.Roots[4 * 256 + Byte(code, ref pos)];
            if (pos > code.Length)
                return Overrun(code);
        }

        if (node >> 60 != KLeaf)
        {
            int mp = vex ? pp : rep != 0 ? rep : (pfx & (int)Prefixes.OperandSize) != 0 ? 1 : 0;
            node = Walk(node, modrm, mp, rex | (vexW << 3), vexL, pfx, adSize, is64, is16);
            if (node >> 60 != KLeaf)
                return DecodeStatus.Invalid;
        }

        // Leaf.
        int entryIndex = (ushort)node;
        int flags = (int)(node >> 32) & 0xFF;
        // A mandatory prefix is not an operand-size or REP prefix.
        pfx &= ~(int)ConsumedMask[(int)(node >> 40) & 7];
        int opSize = OperandSize(is64, is16, pfx, rex, flags);
        if (vex && (flags & FNoVvvv) != 0 && vvvv != 0)
            return DecodeStatus.Invalid;
        insn.Opcode = (Opcode)entryIndex;
        insn.OpcodeByte = (byte)op;
        insn.OperandSize = (byte)opSize;
        insn.AddressSize = (byte)adSize;
        insn.Prefixes = (Prefixes)(pfx | (vex ? (int)Prefixes.Vex : rex != 0 ? (int)Prefixes.Rex : 0));
        insn.Rex = vex ? (byte)0 : (byte)rex;
        insn.VexL = (byte)vexL;
        insn.VexPp = (byte)pp;
        insn.OpcodeMap = (byte)(vex ? map - 4 : map);

        bool memForm = hasModRm && modrm < 0xC0 && (flags & FNoMod) == 0;
        if (memForm && map != 4)
            pos = DecodeMemory(code, pos, modrm, adSize, rex, is64, ref insn);

        // REX only exists in 64-bit mode, so its bits need no mode check.
        // VEX forms have no opcode register: its field carries VEX.vvvv, and the sign bit VEX.L.
        int ctx = ((modrm >> 3) & 7) | ((modrm & 7) << 4) | (vex ? (vreg << 26) | (vexL << 31) : (op & 7) << 26)
            | (opSize << 8) | (adSize << 12)
            | (RexContext[rex & 15] & (vex ? ~CtxOpcodeRexB : ~0)) | (rex != 0 && !vex ? CtxRex : 0)
            | (modrm >= 0xC0 ? CtxRegForm : 0)
            | (is64 ? CtxIs64 | (8 << 20) : 4 << 20);
        pos = DecodeForm((ushort)(node >> 16), code, pos, ctx, ref insn);
        if (pos < 0)
            return DecodeStatus.Invalid;
        if (pos > code.Length)
            return Overrun(code);
        if ((pfx & (int)Prefixes.Lock) != 0 && ((flags & FLock) == 0 || !memForm))
            return DecodeStatus.Invalid;
        // A gather's destination, index and mask must be three different registers.
        if (vex && insn.MemoryIndex >= Register.XMM0 && !VsibRegistersDistinct(in insn))
            return DecodeStatus.Invalid;
        insn.Length = (byte)pos;
        return DecodeStatus.Ok;
    }

    // Follows the decision tree below an opcode to its leaf (or to an invalid node).
    private static ulong Walk(ulong node, int modrm, int mp, int rex, int vexL, int pfx, int adSize, bool is64, bool is16)
    {
        while (node >> 60 != KLeaf)
        {
            int idx = (int)(node & 0x0FFFFFFF);
            switch (node >> 60)
            {
                case KReg: node = OpcodeTables.Nodes[idx + ((modrm >> 3) & 7)]; continue;
                case KMod: node = OpcodeTables.Nodes[idx + (modrm >= 0xC0 ? 1 : 0)]; continue;
                case KRm: node = OpcodeTables.Nodes[idx + (modrm & 7)]; continue;
                case KPfx: node = OpcodeTables.Nodes[idx + mp]; continue;
                case KW: node = OpcodeTables.Nodes[idx + ((rex >> 3) & 1)]; continue;
                case KB: node = OpcodeTables.Nodes[idx + (rex & 1)]; continue;
                case KL: node = OpcodeTables.Nodes[idx + vexL]; continue;
                case KMode: node = OpcodeTables.Nodes[idx + (is64 ? 1 : 0)]; continue;
                case KOs: node = OpcodeTables.Nodes[idx + SizeIndex(OperandSize(is64, is16, pfx, rex, 0))]; continue;
                case KOsD64: node = OpcodeTables.Nodes[idx + SizeIndex(OperandSize(is64, is16, pfx, rex, FD64))]; continue;
                case KOsF64: node = OpcodeTables.Nodes[idx + SizeIndex(OperandSize(is64, is16, pfx, rex, FF64))]; continue;
                case KAs: node = OpcodeTables.Nodes[idx + SizeIndex(adSize)]; continue;
                default: return node; // an invalid node: the caller sees it is not a leaf
            }
        }
        return node;
    }

    // Prefix bits cleared by the consumed mandatory prefix (leaf bits 42:40: 0 none, 1 66, 2 F3, 3 F2).
    private static ReadOnlySpan<byte> ConsumedMask => [0, (byte)Prefixes.OperandSize, (byte)Prefixes.Rep, (byte)Prefixes.Repne, 0, 0, 0, 0];

    // Code is cut at 15 bytes: running past a full 15 means too long, otherwise the input ended.
    private static DecodeStatus Overrun(ReadOnlySpan<byte> code) =>
        code.Length >= MaxLength ? DecodeStatus.TooLong : DecodeStatus.NoMoreBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SizeIndex(int bytes) => bytes >> 2; // 2 -> 0, 4 -> 1, 8 -> 2

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int OperandSize(bool is64, bool is16, int pfx, int rex, int flags)
    {
        bool op66 = (pfx & (int)Prefixes.OperandSize) != 0;
        if (is64)
        {
            if ((flags & FF64) != 0)
                return 8;
            if ((rex & 8) != 0)
                return (flags & FNoW) != 0 ? 4 : 8; // REX.W still overrides 66 where it cannot reach 64
            if ((flags & FD64) != 0)
                return op66 ? 2 : 8;
            return op66 ? 2 : 4;
        }
        return op66 ^ is16 ? 2 : 4;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int DecodeMemory(ReadOnlySpan<byte> code, int pos, int modrm, int adSize, int rex, bool is64, ref Instruction insn)
    {
        int mod = modrm >> 6;
        int rm = modrm & 7;
        Register seg = Register.DS;
        if (adSize == 2)
        {
            switch (rm)
            {
                case 0: insn.MemoryBase = Register.BX; insn.MemoryIndex = Register.SI; break;
                case 1: insn.MemoryBase = Register.BX; insn.MemoryIndex = Register.DI; break;
                case 2: insn.MemoryBase = Register.BP; insn.MemoryIndex = Register.SI; seg = Register.SS; break;
                case 3: insn.MemoryBase = Register.BP; insn.MemoryIndex = Register.DI; seg = Register.SS; break;
                case 4: insn.MemoryBase = Register.SI; break;
                case 5: insn.MemoryBase = Register.DI; break;
                case 6:
                    if (mod != 0)
                    {
                        insn.MemoryBase = Register.BP;
                        seg = Register.SS;
                    }
                    break;
                default: insn.MemoryBase = Register.BX; break;
            }
            insn.MemoryScale = 1;
            if (mod == 1)
            {
                insn.Displacement = (sbyte)Byte(code, ref pos);
                insn.DisplacementSize = 1;
            }
            else if (mod == 2 || (mod == 0 && rm == 6))
            {
                insn.Displacement = (short)Word(code, ref pos);
                insn.DisplacementSize = 2;
            }
        }
        else
        {
            Register gprBase = adSize == 8 ? Register.RAX : Register.EAX;
            int rexB = (rex & 1) << 3;
            insn.MemoryScale = 1;
            bool disp32 = mod == 2;
            if (rm == 4)
            {
                int sib = Byte(code, ref pos);
                insn.Sib = (byte)sib;
                insn.HasSib = true;
                int bas = sib & 7;
                int index = ((sib >> 3) & 7) | ((rex & 2) << 2);
                if (index != 4)
                    insn.MemoryIndex = RegisterInfo.Add(gprBase, index);
                insn.MemoryScale = (byte)(1 << (sib >> 6));
                if (bas == 5 && mod == 0)
                {
                    disp32 = true;
                }
                else
                {
                    insn.MemoryBase = RegisterInfo.Add(gprBase, (bas | rexB));
                    if ((bas | rexB) is 4 or 5)
                        seg = Register.SS;
                }
            }
            else if (rm == 5 && mod == 0)
            {
                disp32 = true;
                if (is64)
                    insn.MemoryBase = adSize == 8 ? Register.RIP : Register.EIP;
            }
            else
            {
                insn.MemoryBase = RegisterInfo.Add(gprBase, (rm | rexB));
                if ((rm | rexB) == 5)
                    seg = Register.SS;
            }
            if (mod == 1)
            {
                insn.Displacement = (sbyte)Byte(code, ref pos);
                insn.DisplacementSize = 1;
            }
            else if (disp32)
            {
                insn.Displacement = (int)Dword(code, ref pos);
                insn.DisplacementSize = 4;
            }
        }
        insn.MemorySegment = Effective(insn.SegmentPrefix, seg, is64);
        return pos;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool DecodeOperand(ReadOnlySpan<byte> code, ref int pos, int ctx, ref Instruction insn, OperandSpec spec, int i, int memSizeOverride)
    {
        int reg = ctx & 15;
        int rm = (ctx >> 4) & 15;
        int opSize = (ctx >> 8) & 15;
        int adSize = (ctx >> 12) & 15;
        int y = (ctx >> 16) & 15;
        int f = (ctx >> 20) & 15;
        bool rex = (ctx & CtxRex) != 0;
        bool regForm = (ctx & CtxRegForm) != 0;
        bool is64 = (ctx & CtxIs64) != 0;
        int zreg = (ctx >> 26) & 15; // the VEX.vvvv register in VEX forms
        int vexL = (int)((uint)ctx >> 31);
        switch (spec)
        {
            case OperandSpec.Gb: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, 1, rex));
            case OperandSpec.Gw: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, 2, rex));
            case OperandSpec.Gd: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, 4, rex));
            case OperandSpec.Gq: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, 8, rex));
            case OperandSpec.Gv: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, opSize, rex));
            case OperandSpec.Gy: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, y, rex));
            case OperandSpec.Gf: return SetReg(ref insn, i, RegisterInfo.Gpr(reg, f, rex));
            case OperandSpec.Eb: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, 1, rex), 1, memSizeOverride);
            case OperandSpec.Ew: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, 2, rex), 2, memSizeOverride);
            case OperandSpec.Ed: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, 4, rex), 4, memSizeOverride);
            case OperandSpec.Eq: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, 8, rex), 8, memSizeOverride);
            case OperandSpec.Ev: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, opSize, rex), opSize, memSizeOverride);
            case OperandSpec.Ey: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, y, rex), y, memSizeOverride);
            case OperandSpec.Ef: return RegOrMem(regForm, ref insn, i, RegisterInfo.Gpr(rm, f, rex), f, memSizeOverride);
            case OperandSpec.Rw: return SetReg(ref insn, i, RegisterInfo.Gpr(rm, 2, rex));
            case OperandSpec.Rd: return SetReg(ref insn, i, RegisterInfo.Gpr(rm, 4, rex));
            case OperandSpec.Rq: return SetReg(ref insn, i, RegisterInfo.Gpr(rm, 8, rex));
            case OperandSpec.Rv: return SetReg(ref insn, i, RegisterInfo.Gpr(rm, opSize, rex));
            case OperandSpec.Ry: return SetReg(ref insn, i, RegisterInfo.Gpr(rm, y, rex));
            case OperandSpec.Rf: return SetReg(ref insn, i, RegisterInfo.Gpr(rm, f, rex));
            case OperandSpec.M: return SetMem(ref insn, i, 0, memSizeOverride);
            case OperandSpec.Mb: return SetMem(ref insn, i, 1, memSizeOverride);
            case OperandSpec.Mw: return SetMem(ref insn, i, 2, memSizeOverride);
            case OperandSpec.Md: return SetMem(ref insn, i, 4, memSizeOverride);
            case OperandSpec.Mq: return SetMem(ref insn, i, 8, memSizeOverride);
            case OperandSpec.Mo: return SetMem(ref insn, i, 16, memSizeOverride);
            case OperandSpec.Mv: return SetMem(ref insn, i, opSize, memSizeOverride);
            case OperandSpec.My: return SetMem(ref insn, i, y, memSizeOverride);
            case OperandSpec.Mp: return SetMem(ref insn, i, opSize + 2, 0);
            case OperandSpec.Ms: return SetMem(ref insn, i, is64 ? 10 : 6, 0);
            case OperandSpec.Mt: return SetMem(ref insn, i, 10, 0);
            case OperandSpec.Me: return SetMem(ref insn, i, opSize == 2 ? 14 : 28, 0);
            case OperandSpec.Mf: return SetMem(ref insn, i, opSize == 2 ? 94 : 108, 0);
            case OperandSpec.Mx: return SetMem(ref insn, i, 512, 0);
            case OperandSpec.Ma: return SetMem(ref insn, i, opSize * 2, 0);
            case OperandSpec.Ib:
                insn.Kinds[i] = OperandKind.Immediate8;
                insn.Immediate = (byte)Byte(code, ref pos);
                return true;
            case OperandSpec.Ib2:
                insn.Kinds[i] = OperandKind.Immediate8_2nd;
                insn.Immediate2 = (byte)Byte(code, ref pos);
                return true;
            case OperandSpec.Iw:
                insn.Kinds[i] = OperandKind.Immediate16;
                insn.Immediate = (ushort)Word(code, ref pos);
                return true;
            case OperandSpec.Id:
                insn.Kinds[i] = OperandKind.Immediate32;
                insn.Immediate = Dword(code, ref pos);
                return true;
            case OperandSpec.Iz:
                if (opSize == 2)
                {
                    insn.Kinds[i] = OperandKind.Immediate16;
                    insn.Immediate = (ushort)Word(code, ref pos);
                }
                else if (opSize == 4)
                {
                    insn.Kinds[i] = OperandKind.Immediate32;
                    insn.Immediate = Dword(code, ref pos);
                }
                else
                {
                    insn.Kinds[i] = OperandKind.Immediate32to64;
                    insn.Immediate = (ulong)(long)(int)Dword(code, ref pos);
                }
                return true;
            case OperandSpec.Iv:
                if (opSize == 8)
                {
                    insn.Kinds[i] = OperandKind.Immediate64;
                    insn.Immediate = Qword(code, ref pos);
                    return true;
                }
                goto case OperandSpec.Iz;
            case OperandSpec.Ibs:
                insn.Kinds[i] = opSize == 2 ? OperandKind.Immediate8to16 : opSize == 4 ? OperandKind.Immediate8to32 : OperandKind.Immediate8to64;
                insn.Immediate = (ulong)(long)(sbyte)Byte(code, ref pos);
                return true;
            case OperandSpec.One:
                insn.Kinds[i] = OperandKind.Immediate8;
                insn.Immediate = 1;
                return true;
            case OperandSpec.Jb:
                insn.Kinds[i] = BranchKind(opSize);
                insn.Immediate = (ulong)(long)(sbyte)Byte(code, ref pos);
                return true;
            case OperandSpec.Jz:
                insn.Kinds[i] = BranchKind(opSize);
                insn.Immediate = opSize == 2 ? (ulong)(long)(short)Word(code, ref pos) : (ulong)(long)(int)Dword(code, ref pos);
                return true;
            case OperandSpec.Jx:
                // XBEGIN: rel16/rel32 by operand size, but the target is EIP/RIP-wide.
                insn.Kinds[i] = is64 ? OperandKind.NearBranch64 : OperandKind.NearBranch32;
                insn.Immediate = opSize == 2 ? (ulong)(long)(short)Word(code, ref pos) : (ulong)(long)(int)Dword(code, ref pos);
                return true;
            case OperandSpec.Ap:
                if (opSize == 2)
                {
                    insn.Kinds[i] = OperandKind.FarBranch16;
                    insn.Immediate = (ushort)Word(code, ref pos);
                }
                else
                {
                    insn.Kinds[i] = OperandKind.FarBranch32;
                    insn.Immediate = Dword(code, ref pos);
                }
                insn.Immediate2 = (ushort)Word(code, ref pos);
                return true;
            case OperandSpec.AL: return SetReg(ref insn, i, Register.AL);
            case OperandSpec.AX: return SetReg(ref insn, i, Register.AX);
            case OperandSpec.eAX: return SetReg(ref insn, i, opSize == 2 ? Register.AX : Register.EAX);
            case OperandSpec.rAX: return SetReg(ref insn, i, RegisterInfo.Gpr(0, opSize, false));
            case OperandSpec.CL: return SetReg(ref insn, i, Register.CL);
            case OperandSpec.DX: return SetReg(ref insn, i, Register.DX);
            case OperandSpec.ES: return SetReg(ref insn, i, Register.ES);
            case OperandSpec.CS: return SetReg(ref insn, i, Register.CS);
            case OperandSpec.SS: return SetReg(ref insn, i, Register.SS);
            case OperandSpec.DS: return SetReg(ref insn, i, Register.DS);
            case OperandSpec.FS: return SetReg(ref insn, i, Register.FS);
            case OperandSpec.GS: return SetReg(ref insn, i, Register.GS);
            case OperandSpec.Zb: return SetReg(ref insn, i, RegisterInfo.Gpr(zreg, 1, rex));
            case OperandSpec.Zv: return SetReg(ref insn, i, RegisterInfo.Gpr(zreg, opSize, rex));
            case OperandSpec.Zy: return SetReg(ref insn, i, RegisterInfo.Gpr(zreg, y, rex));
            case OperandSpec.Xb: return SetString(adSize, is64, ref insn, i, OperandKind.MemorySegSI, 1);
            case OperandSpec.Xv: return SetString(adSize, is64, ref insn, i, OperandKind.MemorySegSI, opSize);
            case OperandSpec.Xz: return SetString(adSize, is64, ref insn, i, OperandKind.MemorySegSI, Math.Min(opSize, 4));
            case OperandSpec.Yb: return SetString(adSize, is64, ref insn, i, OperandKind.MemoryESDI, 1);
            case OperandSpec.Yv: return SetString(adSize, is64, ref insn, i, OperandKind.MemoryESDI, opSize);
            case OperandSpec.Yz: return SetString(adSize, is64, ref insn, i, OperandKind.MemoryESDI, Math.Min(opSize, 4));
            case OperandSpec.XD: return SetString(adSize, is64, ref insn, i, OperandKind.MemorySegDI, memSizeOverride != 0 ? MemSizeOf(memSizeOverride) : 8);
            case OperandSpec.Ob:
            case OperandSpec.Ov:
                insn.Kinds[i] = OperandKind.Memory;
                insn.MemorySize = (ushort)(spec == OperandSpec.Ob ? 1 : opSize);
                insn.DisplacementSize = (byte)adSize;
                insn.Displacement = adSize == 2 ? (ushort)Word(code, ref pos) : adSize == 4 ? Dword(code, ref pos) : (long)Qword(code, ref pos);
                insn.MemoryScale = 1;
                insn.MemorySegment = Effective(insn.SegmentPrefix, Register.DS, is64);
                return true;
            case OperandSpec.Xlat:
                insn.Kinds[i] = OperandKind.Memory;
                insn.MemorySize = 1;
                insn.MemoryBase = adSize == 2 ? Register.BX : adSize == 4 ? Register.EBX : Register.RBX;
                insn.MemoryIndex = Register.AL;
                insn.MemoryScale = 1;
                insn.MemorySegment = Effective(insn.SegmentPrefix, Register.DS, is64);
                return true;
            case OperandSpec.Sw:
                if ((reg & 7) >= 6 || (i == 0 && (reg & 7) == 1))
                    return false;
                return SetReg(ref insn, i, RegisterInfo.Add(Register.ES, (reg & 7)));
            case OperandSpec.C:
                // CR0, CR2, CR3, CR4 and CR8 exist; the rest are #UD.
                if (reg is 1 or 5 or 6 or 7 || reg > 8)
                    return false;
                return SetReg(ref insn, i, RegisterInfo.Add(Register.CR0, reg));
            case OperandSpec.D:
                if (reg > 7)
                    return false;
                return SetReg(ref insn, i, RegisterInfo.Add(Register.DR0, reg));
            case OperandSpec.P: return SetReg(ref insn, i, RegisterInfo.Add(Register.MM0, (reg & 7)));
            case OperandSpec.N: return SetReg(ref insn, i, RegisterInfo.Add(Register.MM0, (rm & 7)));
            case OperandSpec.Qq: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.MM0, (rm & 7)), 8, memSizeOverride);
            case OperandSpec.Qd: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.MM0, (rm & 7)), 4, memSizeOverride);
            case OperandSpec.V: return SetReg(ref insn, i, RegisterInfo.Add(Register.XMM0, reg));
            case OperandSpec.U: return SetReg(ref insn, i, RegisterInfo.Add(Register.XMM0, rm));
            case OperandSpec.Wo: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 16, memSizeOverride);
            case OperandSpec.Wq: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 8, memSizeOverride);
            case OperandSpec.Wd: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 4, memSizeOverride);
            case OperandSpec.Ww: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 2, memSizeOverride);
            case OperandSpec.Wb: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 1, memSizeOverride);
            case OperandSpec.By: return SetReg(ref insn, i, RegisterInfo.Gpr(zreg, y, false));
            case OperandSpec.H: return SetReg(ref insn, i, RegisterInfo.Add(Register.XMM0, zreg));
            case OperandSpec.Hx: return SetReg(ref insn, i, RegisterInfo.Add(vexL != 0 ? Register.YMM0 : Register.XMM0, zreg));
            case OperandSpec.Vx: return SetReg(ref insn, i, RegisterInfo.Add(vexL != 0 ? Register.YMM0 : Register.XMM0, reg));
            case OperandSpec.Ux: return SetReg(ref insn, i, RegisterInfo.Add(vexL != 0 ? Register.YMM0 : Register.XMM0, rm));
            case OperandSpec.Wx: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(vexL != 0 ? Register.YMM0 : Register.XMM0, rm), 16 << vexL, memSizeOverride);
            // Half, quarter and eighth of the vector length: an XMM register, or memory of that size.
            case OperandSpec.Wh: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 8 << vexL, memSizeOverride);
            case OperandSpec.Wr: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 4 << vexL, memSizeOverride);
            case OperandSpec.We: return RegOrMem(regForm, ref insn, i, RegisterInfo.Add(Register.XMM0, rm), 2 << vexL, memSizeOverride);
            case OperandSpec.MVx:
            case OperandSpec.MVo:
                {
                    // VSIB: memory through a SIB byte whose index names a vector register (XMM, or
                    // YMM with VEX.L for MVx); there is no "no index" encoding.
                    if (regForm || !insn.HasSib)
                        return false;
                    Register gprIndex = insn.MemoryIndex;
                    int n = gprIndex == Register.None ? 4 : gprIndex >= Register.RAX ? gprIndex - Register.RAX : gprIndex - Register.EAX;
                    insn.MemoryIndex = RegisterInfo.Add(spec == OperandSpec.MVx && vexL != 0 ? Register.YMM0 : Register.XMM0, n);
                    return SetMem(ref insn, i, 0, memSizeOverride);
                }
            case OperandSpec.Lx:
                {
                    // The register in bits 7:4 of an immediate byte (bit 7 ignored outside 64-bit mode).
                    int n = Byte(code, ref pos) >> 4;
                    return SetReg(ref insn, i, RegisterInfo.Add(vexL != 0 ? Register.YMM0 : Register.XMM0, is64 ? n : n & 7));
                }
            case OperandSpec.ST0: return SetReg(ref insn, i, Register.ST0);
            case OperandSpec.STi: return SetReg(ref insn, i, RegisterInfo.Add(Register.ST0, (rm & 7)));
            default: return false;
        }
    }

    private static OperandKind KindAdd(OperandKind k, int n) => (OperandKind)((int)k + n);

    private static OperandKind BranchKind(int opSize) =>
        opSize == 2 ? OperandKind.NearBranch16 : opSize == 4 ? OperandKind.NearBranch32 : OperandKind.NearBranch64;

    private static int MemSizeOf(int code) => code switch { 1 => 1, 2 => 2, 3 => 4, 4 => 8, 5 => 16, 6 => 10, 7 => 48, 8 => 64, _ => 0 };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SetReg(ref Instruction insn, int i, Register r)
    {
        insn.Kinds[i] = OperandKind.Register;
        insn.Regs[i] = r;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SetMem(ref Instruction insn, int i, int size, int overrideCode)
    {
        insn.Kinds[i] = OperandKind.Memory;
        insn.MemorySize = (ushort)(overrideCode != 0 ? MemSizeOf(overrideCode) : size);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool RegOrMem(bool regForm, ref Instruction insn, int i, Register r, int size, int overrideCode)
    {
        if (regForm)
            return SetReg(ref insn, i, r);
        return SetMem(ref insn, i, size, overrideCode);
    }

    // The segment an override selects: in 64-bit mode ES/CS/SS/DS prefixes are ignored.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Register Effective(Register prefix, Register fallback, bool is64) =>
        prefix != Register.None && (!is64 || prefix >= Register.FS) ? prefix : fallback;

    private static bool SetString(int adSize, bool is64, ref Instruction insn, int i, OperandKind siKind, int size)
    {
        int a = adSize == 2 ? 0 : adSize == 4 ? 1 : 2;
        insn.Kinds[i] = KindAdd(siKind, a);
        insn.MemorySize = (ushort)size;
        if (siKind != OperandKind.MemoryESDI)
            insn.MemorySegment = Effective(insn.SegmentPrefix, Register.DS, is64);
        else if (insn.MemorySegment == Register.None)
            insn.MemorySegment = Register.ES;
        return true;
    }

    private static bool VsibRegistersDistinct(in Instruction insn)
    {
        static int Number(Register r) => r >= Register.YMM0 ? r - Register.YMM0 : r - Register.XMM0;
        int d = Number(insn.GetRegister(0)), x = Number(insn.MemoryIndex), m = Number(insn.GetRegister(2));
        return d != x && d != m && x != m;
    }

    // VEX (C4/C5), EVEX (62) and XOP (8F): outside 64-bit mode C4/C5/62 are LES/LDS/BOUND unless
    // the next byte has ModRM.mod == 3; 8F is POP Ev unless the next byte's low five bits are >= 8.
    private static bool IsVexLike(ReadOnlySpan<byte> code, int pos, bool is64, int b)
    {
        if (pos >= code.Length)
            return false;
        int next = code[pos];
        if (b == 0x8F)
            return (next & 0x1F) >= 8;
        return is64 || next >= 0xC0;
    }

    private static DecodeStatus SkipVex(ReadOnlySpan<byte> code, int pos, int b, int adSize, bool is64, ref Instruction insn)
    {
        int map;
        switch (b)
        {
            case 0xC5:
                pos++;
                map = 1;
                break;
            case 0xC4:
            case 0x8F:
                map = Byte(code, ref pos) & 0x1F;
                pos++;
                break;
            default:
                map = Byte(code, ref pos) & 7;
                pos += 2;
                break;
        }
        int opcode = Byte(code, ref pos);
        if (pos > code.Length)
            return Overrun(code);
        bool modrm = !(b is 0xC4 or 0xC5 && map == 1 && opcode == 0x77);
        if (modrm)
        {
            int m = Byte(code, ref pos);
            if (m < 0xC0 && pos <= code.Length)
                pos = DecodeMemory(code, pos, m, adSize, 0, is64, ref insn);
        }
        if (b == 0x8F)
            pos += map == 8 ? 1 : map == 0xA ? 4 : 0;
        else if (map == 3)
            pos++;
        else if (map == 1 && opcode is >= 0x70 and <= 0x73 or 0xC2 or 0xC4 or 0xC5 or 0xC6)
            pos++;
        if (pos > code.Length)
            return Overrun(code);
        insn = default;
        insn.Length = (byte)pos;
        return DecodeStatus.Unsupported;
    }
}
