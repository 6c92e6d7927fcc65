// RFLAGS bit positions and masks.
namespace Hyve.X86;

/// <summary>RFLAGS bits.</summary>
public static class Rflags
{
    /// <summary>Carry.</summary>
    public const ulong CF = 1UL << 0;

    /// <summary>Reserved bit 1, always set.</summary>
    public const ulong Fixed1 = 1UL << 1;

    /// <summary>Parity (of the low byte of the result).</summary>
    public const ulong PF = 1UL << 2;

    /// <summary>Auxiliary carry (out of bit 3).</summary>
    public const ulong AF = 1UL << 4;

    /// <summary>Zero.</summary>
    public const ulong ZF = 1UL << 6;

    /// <summary>Sign.</summary>
    public const ulong SF = 1UL << 7;

    /// <summary>Trap (single step).</summary>
    public const ulong TF = 1UL << 8;

    /// <summary>Interrupt enable.</summary>
    public const ulong IF = 1UL << 9;

    /// <summary>Direction (string instructions step down when set).</summary>
    public const ulong DF = 1UL << 10;

    /// <summary>Overflow.</summary>
    public const ulong OF = 1UL << 11;

    /// <summary>Alignment check.</summary>
    public const ulong AC = 1UL << 18;

    /// <summary>The six status flags arithmetic instructions write.</summary>
    public const ulong Status = CF | PF | AF | ZF | SF | OF;
}
