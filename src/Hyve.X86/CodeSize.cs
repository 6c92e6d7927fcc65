// What size code a processor runs in a given state: the decoder's bitness from CR0, EFER and
// CS, and the instruction-pointer width that goes with it.
using Hyve.X86.Decoding;

namespace Hyve.X86;

/// <summary>Code size from processor state.</summary>
public static class CodeSize
{
    /// <summary>64-bit in IA-32e mode with CS.L set outside real mode; otherwise CS.D/B picks 32 or 16.</summary>
    public static Bitness Of(in PagingState state, in Segment cs)
    {
        bool real = (state.Cr0 & PagingState.Cr0PE) == 0;
        return (state.Efer & PagingState.EferLMA) != 0 && cs.Long && !real ? Bitness.Bits64
            : cs.Big ? Bitness.Bits32 : Bitness.Bits16;
    }

    /// <summary>The mask RIP wraps at: 64, 32 or 16 bits.</summary>
    public static ulong IpMask(Bitness bitness) => bitness switch
    {
        Bitness.Bits64 => ulong.MaxValue,
        Bitness.Bits32 => 0xFFFF_FFFFUL,
        _ => 0xFFFFUL,
    };

    /// <summary>Adds <paramref name="delta"/> to a register at an address or stack width of
    /// <paramref name="bytes"/>: 16 bits keep the rest of the register, 32 bits zero-extend.</summary>
    public static ulong AddAtWidth(ulong register, ulong delta, int bytes) =>
        RegisterInfo.Merge(register, bytes, high: false, register + delta);
}
