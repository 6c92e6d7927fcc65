// The decoder's output: one decoded instruction as a small value type.
using System.Runtime.CompilerServices;

namespace Hyve.X86.Decoding;

/// <summary>Result of a decode.</summary>
public enum DecodeStatus : byte
{
    /// <summary>A valid instruction.</summary>
    Ok,
    /// <summary>Invalid or reserved encoding (#UD).</summary>
    Invalid,
    /// <summary>The input ended before the instruction did.</summary>
    NoMoreBytes,
    /// <summary>An EVEX or XOP instruction, or a VEX one outside the decoder's tables: its length is known,
    /// its contents are not decoded.</summary>
    Unsupported,
    /// <summary>Longer than 15 bytes (#GP(0) on hardware).</summary>
    TooLong,
}

/// <summary>What an operand is.</summary>
public enum OperandKind : byte
{
    /// <summary>No operand.</summary>
    None,
    /// <summary>A register (<see cref="Instruction.GetRegister"/>).</summary>
    Register,
    /// <summary>The ModRM/SIB/moffs memory operand.</summary>
    Memory,
    /// <summary>8-bit immediate.</summary>
    Immediate8,
    /// <summary>Second 8-bit immediate (ENTER, EXTRQ, INSERTQ).</summary>
    Immediate8_2nd,
    /// <summary>16-bit immediate.</summary>
    Immediate16,
    /// <summary>32-bit immediate.</summary>
    Immediate32,
    /// <summary>64-bit immediate.</summary>
    Immediate64,
    /// <summary>8-bit immediate sign-extended to 16 bits.</summary>
    Immediate8to16,
    /// <summary>8-bit immediate sign-extended to 32 bits.</summary>
    Immediate8to32,
    /// <summary>8-bit immediate sign-extended to 64 bits.</summary>
    Immediate8to64,
    /// <summary>32-bit immediate sign-extended to 64 bits.</summary>
    Immediate32to64,
    /// <summary>Relative branch with a 16-bit target.</summary>
    NearBranch16,
    /// <summary>Relative branch with a 32-bit target.</summary>
    NearBranch32,
    /// <summary>Relative branch with a 64-bit target.</summary>
    NearBranch64,
    /// <summary>Far pointer ptr16:16.</summary>
    FarBranch16,
    /// <summary>Far pointer ptr16:32.</summary>
    FarBranch32,
    /// <summary>seg:[SI] (string source, segment overridable).</summary>
    MemorySegSI,
    /// <summary>seg:[ESI].</summary>
    MemorySegESI,
    /// <summary>seg:[RSI].</summary>
    MemorySegRSI,
    /// <summary>seg:[DI] (MASKMOVQ/MASKMOVDQU).</summary>
    MemorySegDI,
    /// <summary>seg:[EDI].</summary>
    MemorySegEDI,
    /// <summary>seg:[RDI].</summary>
    MemorySegRDI,
    /// <summary>ES:[DI] (string destination).</summary>
    MemoryESDI,
    /// <summary>ES:[EDI].</summary>
    MemoryESEDI,
    /// <summary>ES:[RDI].</summary>
    MemoryESRDI,
}

/// <summary>Prefix bits seen on an instruction.</summary>
[System.Flags]
public enum Prefixes : ushort
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>F0.</summary>
    Lock = 1,
    /// <summary>F3 acting as REP/REPE (not consumed as a mandatory prefix).</summary>
    Rep = 2,
    /// <summary>F2 acting as REPNE (not consumed as a mandatory prefix).</summary>
    Repne = 4,
    /// <summary>66 acting as operand-size override.</summary>
    OperandSize = 8,
    /// <summary>67.</summary>
    AddressSize = 16,
    /// <summary>A REX prefix is in effect.</summary>
    Rex = 32,
    /// <summary>The instruction is VEX-encoded (C4/C5).</summary>
    Vex = 64,
}

/// <summary>Four operand slots stored inline (no allocation).</summary>
[InlineArray(4)]
internal struct OperandKinds
{
    private OperandKind _e0;
}

/// <summary>Four register slots stored inline.</summary>
[InlineArray(4)]
internal struct OperandRegisters
{
    private Register _e0;
}

/// <summary>
/// One decoded instruction. A plain value: decoding fills it in place and allocates nothing.
/// Operands follow Intel order (destination first).
/// </summary>
public struct Instruction
{
    internal OperandKinds Kinds;
    internal OperandRegisters Regs;

    /// <summary>Outcome of the decode.</summary>
    public DecodeStatus Status { readonly get; internal set; }

    /// <summary>Length in bytes (1-15) when <see cref="Status"/> is Ok or Unsupported.</summary>
    public byte Length { readonly get; internal set; }

    /// <summary>Opcode identity: one value per instruction form; executors switch on it.</summary>
    public Opcode Opcode { readonly get; internal set; }

    /// <summary>Mnemonic (looked up from <see cref="Opcode"/>; Invalid for an invalid instruction).</summary>
    public readonly Mnemonic Mnemonic => (Mnemonic)OpcodeTables.Mnemonics[(int)Opcode];

    /// <summary>Effective operand size in bytes (2, 4 or 8).</summary>
    public byte OperandSize { readonly get; internal set; }

    /// <summary>Effective address size in bytes (2, 4 or 8).</summary>
    public byte AddressSize { readonly get; internal set; }

    /// <summary>Number of explicit operands (0-4).</summary>
    public byte OperandCount { readonly get; internal set; }

    /// <summary>Prefixes in effect.</summary>
    public Prefixes Prefixes { readonly get; internal set; }

    /// <summary>The last segment override prefix, or None (in 64-bit mode an earlier FS/GS is not replaced
    /// by a later ES/CS/SS/DS, which the processor ignores there).</summary>
    public Register SegmentPrefix { readonly get; internal set; }

    /// <summary>Effective segment of the memory operand: the override, or the default (SS for rSP/rBP bases,
    /// else DS). In 64-bit mode only FS and GS overrides take effect.</summary>
    public Register MemorySegment { readonly get; internal set; }

    /// <summary>Base register of the memory operand (RIP/EIP when RIP-relative), or None.</summary>
    public Register MemoryBase { readonly get; internal set; }

    /// <summary>Index register of the memory operand, or None.</summary>
    public Register MemoryIndex { readonly get; internal set; }

    /// <summary>Index scale (1, 2, 4, 8).</summary>
    public byte MemoryScale { readonly get; internal set; }

    /// <summary>Size of the displacement field in bytes (0, 1, 2, 4, 8 for moffs).</summary>
    public byte DisplacementSize { readonly get; internal set; }

    /// <summary>Size of the memory access in bytes (0 when it has none, e.g. LEA).</summary>
    public ushort MemorySize { readonly get; internal set; }

    /// <summary>Displacement, sign-extended (for RIP-relative: relative to the next instruction).</summary>
    public long Displacement { readonly get; internal set; }

    /// <summary>First immediate, sign- or zero-extended as its kind says; the relative offset for near
    /// branches; the offset for far pointers.</summary>
    public ulong Immediate { readonly get; internal set; }

    /// <summary>Second immediate (ENTER, EXTRQ/INSERTQ) or the selector of a far pointer.</summary>
    public ushort Immediate2 { readonly get; internal set; }

    /// <summary>The last opcode byte (after any 0F, 0F 38, 0F 3A escape); for Jcc/SETcc/CMOVcc its low
    /// nibble is the condition code.</summary>
    public byte OpcodeByte { readonly get; internal set; }

    /// <summary>ModRM byte (when the instruction has one).</summary>
    public byte ModRM { readonly get; internal set; }

    /// <summary>SIB byte (when the instruction has one).</summary>
    public byte Sib { readonly get; internal set; }

    /// <summary>REX prefix byte in effect, or 0.</summary>
    public byte Rex { readonly get; internal set; }

    /// <summary>VEX.L of a VEX-encoded instruction (1: 256-bit vectors), else 0.</summary>
    public byte VexL { readonly get; internal set; }

    /// <summary>VEX.pp of a VEX-encoded instruction, the mandatory prefix it stands for (0 none, 1 66,
    /// 2 F3, 3 F2), else 0.</summary>
    public byte VexPp { readonly get; internal set; }

    /// <summary>The opcode map: 0 one-byte, 1 0F, 2 0F 38, 3 0F 3A (a VEX instruction's VEX map),
    /// 4 3DNow!.</summary>
    public byte OpcodeMap { readonly get; internal set; }

    /// <summary>Whether a ModRM byte was decoded.</summary>
    public bool HasModRM { readonly get; internal set; }

    /// <summary>Whether a SIB byte was decoded.</summary>
    public bool HasSib { readonly get; internal set; }

    /// <summary>True for a valid, decoded instruction.</summary>
    public readonly bool IsValid => Status == DecodeStatus.Ok;

    /// <summary>Kind of operand <paramref name="i"/> (0-3).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public readonly OperandKind GetOperandKind(int i) =>
        (uint)i < 4 ? System.Runtime.CompilerServices.Unsafe.Add(ref System.Runtime.CompilerServices.Unsafe.As<OperandKinds, OperandKind>(ref System.Runtime.CompilerServices.Unsafe.AsRef(in Kinds)), i) : OperandKind.None;

    /// <summary>Register of operand <paramref name="i"/> when its kind is Register.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public readonly Register GetRegister(int i) =>
        (uint)i < 4 ? System.Runtime.CompilerServices.Unsafe.Add(ref System.Runtime.CompilerServices.Unsafe.As<OperandRegisters, Register>(ref System.Runtime.CompilerServices.Unsafe.AsRef(in Regs)), i) : Register.None;

    /// <summary>Whether the memory operand is RIP- or EIP-relative.</summary>
    public readonly bool IsIpRelative => MemoryBase is Register.RIP or Register.EIP;

    /// <summary>Target of a near branch at <paramref name="ip"/>, truncated to the branch width.</summary>
    public readonly ulong NearBranchTarget(ulong ip)
    {
        ulong t = ip + Length + Immediate;
        for (int i = 0; i < OperandCount; i++)
        {
            switch (Kinds[i])
            {
                case OperandKind.NearBranch16: return (ushort)t;
                case OperandKind.NearBranch32: return (uint)t;
                case OperandKind.NearBranch64: return t;
            }
        }
        return 0;
    }

    /// <summary>Absolute address of an IP-relative memory operand for an instruction at <paramref name="ip"/>.</summary>
    public readonly ulong IpRelativeTarget(ulong ip)
    {
        ulong t = ip + Length + (ulong)Displacement;
        return MemoryBase == Register.EIP ? (uint)t : t;
    }
}
