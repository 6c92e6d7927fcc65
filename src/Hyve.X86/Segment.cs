// A segment register's hidden part (base, limit, access rights in the VMX layout) and the
// checks a data access makes against it.
namespace Hyve.X86;

/// <summary>
/// A loaded segment register. <see cref="Access"/> uses the VMX access-rights layout: type in
/// bits 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16. <see cref="Limit"/> is
/// the byte-granular limit (already scaled by G).
/// </summary>
/// <param name="Selector">Visible selector.</param>
/// <param name="Base">Base address.</param>
/// <param name="Limit">Byte-granular limit.</param>
/// <param name="Access">Access rights (VMX layout).</param>
public readonly record struct Segment(ushort Selector, ulong Base, uint Limit, uint Access)
{
    /// <summary>A present, writable, accessed 32-bit data segment based at 0 with a 4 GiB limit.</summary>
    public static Segment FlatData => new(0, 0, 0xFFFF_FFFF, 0xC093);

    /// <summary>A present 64-bit code segment (L set).</summary>
    public static Segment Code64 => new(0, 0, 0xFFFF_FFFF, 0xA09B);

    /// <summary>A present 32-bit code segment.</summary>
    public static Segment Code32 => new(0, 0, 0xFFFF_FFFF, 0xC09B);

    /// <summary>A real-mode segment for <paramref name="selector"/> (base selector × 16, 64 KiB limit).</summary>
    public static Segment Real(ushort selector) => new(selector, (ulong)selector << 4, 0xFFFF, 0x93);

    /// <summary>The segment is unusable (a null selector was loaded, or it was never set up).</summary>
    public bool Unusable => (Access & 0x1_0000) != 0;

    /// <summary>Segment type (bits 3:0).</summary>
    public int Type => (int)(Access & 0xF);

    /// <summary>A code segment (S set and type bit 3).</summary>
    public bool IsCode => (Access & 0x18) == 0x18;

    /// <summary>The D/B bit: 32-bit code or a 32-bit stack or expand-down bound.</summary>
    public bool Big => (Access & 0x4000) != 0;

    /// <summary>The L bit: 64-bit code.</summary>
    public bool Long => (Access & 0x2000) != 0;

    /// <summary>Descriptor privilege level.</summary>
    public int Dpl => (int)((Access >> 5) & 3);

    /// <summary>
    /// Checks a data access of <paramref name="size"/> bytes at <paramref name="offset"/> outside
    /// 64-bit mode: usable, readable or writable as asked, and inside the limit (expand-down
    /// segments hold the offsets above it). False means #GP(0), or #SS(0) for the stack segment.
    /// </summary>
    public bool AllowsData(ulong offset, int size, bool write)
    {
        if (Unusable || (Access & 0x80) == 0)
            return false;
        if ((Access & 0x10) != 0)
        {
            if (IsCode ? write || (Type & 2) == 0 : write && (Type & 2) == 0)
                return false;
        }
        ulong last = offset + (ulong)size - 1;
        if (!IsCode && (Type & 4) != 0)
        {
            ulong upper = Big ? 0xFFFF_FFFFUL : 0xFFFFUL;
            return offset > Limit && last <= upper && last >= offset;
        }
        return last <= Limit && last >= offset;
    }
}
