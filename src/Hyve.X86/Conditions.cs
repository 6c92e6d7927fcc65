// The sixteen condition codes of Jcc/SETcc/CMOVcc, evaluated on RFLAGS.
namespace Hyve.X86;

/// <summary>Evaluates x86 condition codes (the low four bits of the Jcc/SETcc/CMOVcc opcode).</summary>
public static class Conditions
{
    /// <summary>Whether condition <paramref name="cc"/> (0 = O .. 15 = G) holds for <paramref name="rflags"/>.</summary>
    public static bool Holds(int cc, ulong rflags)
    {
        bool cf = (rflags & Rflags.CF) != 0;
        bool zf = (rflags & Rflags.ZF) != 0;
        bool sf = (rflags & Rflags.SF) != 0;
        bool of = (rflags & Rflags.OF) != 0;
        bool pf = (rflags & Rflags.PF) != 0;
        bool r = (cc >> 1) switch
        {
            0 => of,
            1 => cf,
            2 => zf,
            3 => cf || zf,
            4 => sf,
            5 => pf,
            6 => sf != of,
            _ => zf || sf != of,
        };
        return (cc & 1) == 0 ? r : !r;
    }
}
