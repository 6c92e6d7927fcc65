// Architectural registers as the decoder and the executors name them.
namespace Hyve.X86;

/// <summary>
/// An x86 register. Groups are contiguous and ordered by register number so that
/// <c>RegisterInfo.Add(Register.EAX, n)</c> is general register n of that width.
/// </summary>
public enum Register : byte
{
    /// <summary>No register.</summary>
    None,
    /// <summary>8-bit general register AL.</summary>
    AL,
    /// <summary>8-bit general register CL.</summary>
    CL,
    /// <summary>8-bit general register DL.</summary>
    DL,
    /// <summary>8-bit general register BL.</summary>
    BL,
    /// <summary>8-bit general register AH.</summary>
    AH,
    /// <summary>8-bit general register CH.</summary>
    CH,
    /// <summary>8-bit general register DH.</summary>
    DH,
    /// <summary>8-bit general register BH.</summary>
    BH,
    /// <summary>8-bit general register SPL.</summary>
    SPL,
    /// <summary>8-bit general register BPL.</summary>
    BPL,
    /// <summary>8-bit general register SIL.</summary>
    SIL,
    /// <summary>8-bit general register DIL.</summary>
    DIL,
    /// <summary>8-bit general register R8L.</summary>
    R8L,
    /// <summary>8-bit general register R9L.</summary>
    R9L,
    /// <summary>8-bit general register R10L.</summary>
    R10L,
    /// <summary>8-bit general register R11L.</summary>
    R11L,
    /// <summary>8-bit general register R12L.</summary>
    R12L,
    /// <summary>8-bit general register R13L.</summary>
    R13L,
    /// <summary>8-bit general register R14L.</summary>
    R14L,
    /// <summary>8-bit general register R15L.</summary>
    R15L,
    /// <summary>16-bit general register AX.</summary>
    AX,
    /// <summary>16-bit general register CX.</summary>
    CX,
    /// <summary>16-bit general register DX.</summary>
    DX,
    /// <summary>16-bit general register BX.</summary>
    BX,
    /// <summary>16-bit general register SP.</summary>
    SP,
    /// <summary>16-bit general register BP.</summary>
    BP,
    /// <summary>16-bit general register SI.</summary>
    SI,
    /// <summary>16-bit general register DI.</summary>
    DI,
    /// <summary>16-bit general register R8W.</summary>
    R8W,
    /// <summary>16-bit general register R9W.</summary>
    R9W,
    /// <summary>16-bit general register R10W.</summary>
    R10W,
    /// <summary>16-bit general register R11W.</summary>
    R11W,
    /// <summary>16-bit general register R12W.</summary>
    R12W,
    /// <summary>16-bit general register R13W.</summary>
    R13W,
    /// <summary>16-bit general register R14W.</summary>
    R14W,
    /// <summary>16-bit general register R15W.</summary>
    R15W,
    /// <summary>32-bit general register EAX.</summary>
    EAX,
    /// <summary>32-bit general register ECX.</summary>
    ECX,
    /// <summary>32-bit general register EDX.</summary>
    EDX,
    /// <summary>32-bit general register EBX.</summary>
    EBX,
    /// <summary>32-bit general register ESP.</summary>
    ESP,
    /// <summary>32-bit general register EBP.</summary>
    EBP,
    /// <summary>32-bit general register ESI.</summary>
    ESI,
    /// <summary>32-bit general register EDI.</summary>
    EDI,
    /// <summary>32-bit general register R8D.</summary>
    R8D,
    /// <summary>32-bit general register R9D.</summary>
    R9D,
    /// <summary>32-bit general register R10D.</summary>
    R10D,
    /// <summary>32-bit general register R11D.</summary>
    R11D,
    /// <summary>32-bit general register R12D.</summary>
    R12D,
    /// <summary>32-bit general register R13D.</summary>
    R13D,
    /// <summary>32-bit general register R14D.</summary>
    R14D,
    /// <summary>32-bit general register R15D.</summary>
    R15D,
    /// <summary>64-bit general register RAX.</summary>
    RAX,
    /// <summary>64-bit general register RCX.</summary>
    RCX,
    /// <summary>64-bit general register RDX.</summary>
    RDX,
    /// <summary>64-bit general register RBX.</summary>
    RBX,
    /// <summary>64-bit general register RSP.</summary>
    RSP,
    /// <summary>64-bit general register RBP.</summary>
    RBP,
    /// <summary>64-bit general register RSI.</summary>
    RSI,
    /// <summary>64-bit general register RDI.</summary>
    RDI,
    /// <summary>64-bit general register R8.</summary>
    R8,
    /// <summary>64-bit general register R9.</summary>
    R9,
    /// <summary>64-bit general register R10.</summary>
    R10,
    /// <summary>64-bit general register R11.</summary>
    R11,
    /// <summary>64-bit general register R12.</summary>
    R12,
    /// <summary>64-bit general register R13.</summary>
    R13,
    /// <summary>64-bit general register R14.</summary>
    R14,
    /// <summary>64-bit general register R15.</summary>
    R15,
    /// <summary>Instruction pointer (IP-relative base) EIP.</summary>
    EIP,
    /// <summary>Instruction pointer (IP-relative base) RIP.</summary>
    RIP,
    /// <summary>Segment register ES.</summary>
    ES,
    /// <summary>Segment register CS.</summary>
    CS,
    /// <summary>Segment register SS.</summary>
    SS,
    /// <summary>Segment register DS.</summary>
    DS,
    /// <summary>Segment register FS.</summary>
    FS,
    /// <summary>Segment register GS.</summary>
    GS,
    /// <summary>x87 stack register ST0.</summary>
    ST0,
    /// <summary>x87 stack register ST1.</summary>
    ST1,
    /// <summary>x87 stack register ST2.</summary>
    ST2,
    /// <summary>x87 stack register ST3.</summary>
    ST3,
    /// <summary>x87 stack register ST4.</summary>
    ST4,
    /// <summary>x87 stack register ST5.</summary>
    ST5,
    /// <summary>x87 stack register ST6.</summary>
    ST6,
    /// <summary>x87 stack register ST7.</summary>
    ST7,
    /// <summary>MMX register MM0.</summary>
    MM0,
    /// <summary>MMX register MM1.</summary>
    MM1,
    /// <summary>MMX register MM2.</summary>
    MM2,
    /// <summary>MMX register MM3.</summary>
    MM3,
    /// <summary>MMX register MM4.</summary>
    MM4,
    /// <summary>MMX register MM5.</summary>
    MM5,
    /// <summary>MMX register MM6.</summary>
    MM6,
    /// <summary>MMX register MM7.</summary>
    MM7,
    /// <summary>SSE register XMM0.</summary>
    XMM0,
    /// <summary>SSE register XMM1.</summary>
    XMM1,
    /// <summary>SSE register XMM2.</summary>
    XMM2,
    /// <summary>SSE register XMM3.</summary>
    XMM3,
    /// <summary>SSE register XMM4.</summary>
    XMM4,
    /// <summary>SSE register XMM5.</summary>
    XMM5,
    /// <summary>SSE register XMM6.</summary>
    XMM6,
    /// <summary>SSE register XMM7.</summary>
    XMM7,
    /// <summary>SSE register XMM8.</summary>
    XMM8,
    /// <summary>SSE register XMM9.</summary>
    XMM9,
    /// <summary>SSE register XMM10.</summary>
    XMM10,
    /// <summary>SSE register XMM11.</summary>
    XMM11,
    /// <summary>SSE register XMM12.</summary>
    XMM12,
    /// <summary>SSE register XMM13.</summary>
    XMM13,
    /// <summary>SSE register XMM14.</summary>
    XMM14,
    /// <summary>SSE register XMM15.</summary>
    XMM15,
    /// <summary>Control register CR0.</summary>
    CR0,
    /// <summary>Control register CR1.</summary>
    CR1,
    /// <summary>Control register CR2.</summary>
    CR2,
    /// <summary>Control register CR3.</summary>
    CR3,
    /// <summary>Control register CR4.</summary>
    CR4,
    /// <summary>Control register CR5.</summary>
    CR5,
    /// <summary>Control register CR6.</summary>
    CR6,
    /// <summary>Control register CR7.</summary>
    CR7,
    /// <summary>Control register CR8.</summary>
    CR8,
    /// <summary>Control register CR9.</summary>
    CR9,
    /// <summary>Control register CR10.</summary>
    CR10,
    /// <summary>Control register CR11.</summary>
    CR11,
    /// <summary>Control register CR12.</summary>
    CR12,
    /// <summary>Control register CR13.</summary>
    CR13,
    /// <summary>Control register CR14.</summary>
    CR14,
    /// <summary>Control register CR15.</summary>
    CR15,
    /// <summary>Debug register DR0.</summary>
    DR0,
    /// <summary>Debug register DR1.</summary>
    DR1,
    /// <summary>Debug register DR2.</summary>
    DR2,
    /// <summary>Debug register DR3.</summary>
    DR3,
    /// <summary>Debug register DR4.</summary>
    DR4,
    /// <summary>Debug register DR5.</summary>
    DR5,
    /// <summary>Debug register DR6.</summary>
    DR6,
    /// <summary>Debug register DR7.</summary>
    DR7,
    /// <summary>Debug register DR8.</summary>
    DR8,
    /// <summary>Debug register DR9.</summary>
    DR9,
    /// <summary>Debug register DR10.</summary>
    DR10,
    /// <summary>Debug register DR11.</summary>
    DR11,
    /// <summary>Debug register DR12.</summary>
    DR12,
    /// <summary>Debug register DR13.</summary>
    DR13,
    /// <summary>Debug register DR14.</summary>
    DR14,
    /// <summary>Debug register DR15.</summary>
    DR15,
    /// <summary>AVX register YMM0.</summary>
    YMM0,
    /// <summary>AVX register YMM1.</summary>
    YMM1,
    /// <summary>AVX register YMM2.</summary>
    YMM2,
    /// <summary>AVX register YMM3.</summary>
    YMM3,
    /// <summary>AVX register YMM4.</summary>
    YMM4,
    /// <summary>AVX register YMM5.</summary>
    YMM5,
    /// <summary>AVX register YMM6.</summary>
    YMM6,
    /// <summary>AVX register YMM7.</summary>
    YMM7,
    /// <summary>AVX register YMM8.</summary>
    YMM8,
    /// <summary>AVX register YMM9.</summary>
    YMM9,
    /// <summary>AVX register YMM10.</summary>
    YMM10,
    /// <summary>AVX register YMM11.</summary>
    YMM11,
    /// <summary>AVX register YMM12.</summary>
    YMM12,
    /// <summary>AVX register YMM13.</summary>
    YMM13,
    /// <summary>AVX register YMM14.</summary>
    YMM14,
    /// <summary>AVX register YMM15.</summary>
    YMM15,
}

/// <summary>Helpers over <see cref="Register"/>.</summary>
public static class RegisterInfo
{
    /// <summary>General register <paramref name="n"/> (0-15) of <paramref name="bytes"/> width (1, 2, 4, 8).</summary>
    /// <param name="n">Register number including the REX extension bit.</param>
    /// <param name="bytes">Operand width in bytes.</param>
    /// <param name="rex">Whether a REX prefix is present (selects SPL..DIL over AH..BH).</param>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Register Gpr(int n, int bytes, bool rex)
    {
        // Byte registers: AL..BL, then AH..BH without REX, or SPL..DIL and R8L.. (4 further on) with it.
        if (bytes == 1)
            return (Register)((int)Register.AL + n + (n >= 4 && (rex || n >= 8) ? 4 : 0));
        return (Register)((int)Register.AX + 16 * (bytes >> 2) + n); // AX, EAX (+16), RAX (+32)
    }

    /// <summary>The inverse of <see cref="Gpr"/>: register number (0-15), width in bytes, and whether it
    /// is one of AH..BH (bits 15:8 of register n).</summary>
    /// <exception cref="System.ArgumentOutOfRangeException"><paramref name="r"/> is not a general register.</exception>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static (int N, int Size, bool High) GprNumber(Register r)
    {
        // One table lookup: this sits on the software CPU's path for every register operand.
        byte[] table = GprTable;
        uint i = (uint)r;
        if (i >= (uint)table.Length || table[i] == 0)
            ThrowNotGpr(r);
        int e = table[i];
        return (e & 15, 1 << ((e >> 4) & 3), (e & 0x40) != 0);
    }

    // Per register: bit 7 valid, bit 6 AH..BH, bits 5:4 log2 of the size, bits 3:0 the number.
    private static readonly byte[] GprTable = BuildGprTable();

    private static byte[] BuildGprTable()
    {
        var t = new byte[(int)Register.R15 + 1];
        for (Register r = Register.AL; r <= Register.R15L; r++)
        {
            int i = r - Register.AL;
            bool high = i is >= 4 and < 8;
            int n = high ? i - 4 : i < 4 ? i : i - 4;
            t[(int)r] = (byte)(0x80 | (high ? 0x40 : 0) | n);
        }
        for (Register r = Register.AX; r <= Register.R15W; r++)
            t[(int)r] = (byte)(0x80 | (1 << 4) | (r - Register.AX));
        for (Register r = Register.EAX; r <= Register.R15D; r++)
            t[(int)r] = (byte)(0x80 | (2 << 4) | (r - Register.EAX));
        for (Register r = Register.RAX; r <= Register.R15; r++)
            t[(int)r] = (byte)(0x80 | (3 << 4) | (r - Register.RAX));
        return t;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowNotGpr(Register r) =>
        throw new System.ArgumentOutOfRangeException(nameof(r), r, "not a general register");

    /// <summary>The value of a <paramref name="size"/>-byte register (bits 15:8 when
    /// <paramref name="high"/>, for AH..BH) within the full 64-bit register <paramref name="full"/>;
    /// size and high as <see cref="GprNumber"/> gives them.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ulong Extract(ulong full, int size, bool high) => high ? (full >> 8) & 0xFF : full & Alu.Mask(size);

    /// <summary>The full register after writing <paramref name="value"/> to its
    /// <paramref name="size"/>-byte part: 32-bit writes zero the upper half, 8- and 16-bit writes
    /// keep the rest.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ulong Merge(ulong old, int size, bool high, ulong value) => size switch
    {
        8 => value,
        4 => (uint)value,
        _ when high => (old & ~0xFF00UL) | ((value & 0xFF) << 8),
        _ => (old & ~Alu.Mask(size)) | (value & Alu.Mask(size)),
    };

    /// <summary>The register <paramref name="n"/> places after <paramref name="r"/> in its group.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Register Add(Register r, int n) => (Register)((int)r + n);

    /// <summary>Size in bytes of a general, instruction-pointer, segment, x87 (10), MMX or SSE register;
    /// 0 for control and debug registers.</summary>
    public static int Size(this Register r) => r switch
    {
        >= Register.AL and <= Register.R15L => 1,
        >= Register.AX and <= Register.R15W => 2,
        >= Register.EAX and <= Register.R15D => 4,
        Register.EIP => 4,
        >= Register.RAX and <= Register.R15 => 8,
        Register.RIP => 8,
        >= Register.ES and <= Register.GS => 2,
        >= Register.ST0 and <= Register.ST7 => 10,
        >= Register.MM0 and <= Register.MM7 => 8,
        >= Register.XMM0 and <= Register.XMM15 => 16,
        >= Register.YMM0 and <= Register.YMM15 => 32,
        _ => 0,
    };

    /// <summary>Lower-case assembler name ("eax", "xmm3", "st(2)").</summary>
    public static string Name(this Register r) => r switch
    {
        >= Register.ST0 and <= Register.ST7 => r == Register.ST0 ? "st" : "st(" + (char)('0' + (r - Register.ST0)) + ")",
        _ => Names[(int)r],
    };

    private static readonly string[] Names = BuildNames();

    private static string[] BuildNames()
    {
        var names = new string[(int)Register.YMM15 + 1];
        for (int i = 0; i < names.Length; i++)
            names[i] = ((Register)i).ToString().ToLowerInvariant();
        names[0] = "";
        return names;
    }
}
