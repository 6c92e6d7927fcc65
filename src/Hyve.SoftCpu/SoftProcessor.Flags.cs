// The software CPU's RFLAGS with lazily computed status flags. Most flag results are never
// read: the next arithmetic instruction overwrites them. So the fast paths of ADD, SUB, CMP,
// AND, OR, XOR, TEST, INC and DEC record their operands and result instead of computing
// CF, PF, AF, ZF, SF and OF, and Jcc answers its condition from the record where it can. Any
// other reader goes through Flags, which computes the status flags (with the same Alu code the
// eager paths use) before returning RFLAGS. The other bits of RFLAGS (TF, IF, AC, ...) are
// never deferred, so code that reads only those may read _flags directly.
using System.Runtime.CompilerServices;
using Hyve.X86;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    private enum Lazy : byte { None, Add, Sub, Logic, Inc, Dec }

    private ulong _flags; // RFLAGS; its status flags are stale while _lazy is not None
    private Lazy _lazy;
    private ulong _lazyA, _lazyB, _lazyR; // operands and result (Inc/Dec: B holds the old CF)
    private int _lazySize;

    /// <summary>RFLAGS with every status flag computed.</summary>
    private ref ulong Flags
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if (_lazy != Lazy.None)
                Materialize();
            return ref _flags;
        }
    }

    private void Materialize()
    {
        ulong f = _flags;
        switch (_lazy)
        {
            case Lazy.Add:
                Alu.Binary(Alu.Op.Add, _lazyA, _lazyB, _lazySize, ref f);
                break;
            case Lazy.Sub:
                Alu.Binary(Alu.Op.Sub, _lazyA, _lazyB, _lazySize, ref f);
                break;
            case Lazy.Logic:
                Alu.Binary(Alu.Op.Or, _lazyR, 0, _lazySize, ref f); // the flags of a logic result
                break;
            case Lazy.Inc:
                f = (f & ~Rflags.CF) | _lazyB;
                Alu.Inc(_lazyA, _lazySize, ref f);
                break;
            default:
                f = (f & ~Rflags.CF) | _lazyB;
                Alu.Dec(_lazyA, _lazySize, ref f);
                break;
        }
        _flags = f;
        _lazy = Lazy.None;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Defer(Lazy kind, ulong a, ulong b, ulong r, int size)
    {
        _lazy = kind;
        _lazyA = a;
        _lazyB = b;
        _lazyR = r;
        _lazySize = size;
    }

    // CF as it stands, without computing the other flags.
    private ulong Carry() => _lazy switch
    {
        Lazy.None => _flags & Rflags.CF,
        Lazy.Add => _lazyR < _lazyA ? Rflags.CF : 0,
        Lazy.Sub => _lazyA < _lazyB ? Rflags.CF : 0,
        Lazy.Logic => 0,
        _ => _lazyB,
    };

    // ADD, SUB, CMP, AND, OR, XOR on masked operands with deferred flags (ADC and SBB, which
    // read CF, go the eager way). For CMP the result is a, as Alu.Binary gives it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong AluDeferred(Alu.Op op, ulong a, ulong b, int size)
    {
        ulong m = Alu.Mask(size);
        a &= m;
        b &= m;
        ulong r;
        switch (op)
        {
            case Alu.Op.Add:
                r = (a + b) & m;
                Defer(Lazy.Add, a, b, r, size);
                return r;
            case Alu.Op.Sub:
            case Alu.Op.Cmp:
                r = (a - b) & m;
                Defer(Lazy.Sub, a, b, r, size);
                return op == Alu.Op.Cmp ? a : r;
            case Alu.Op.And:
                r = a & b;
                break;
            case Alu.Op.Or:
                r = a | b;
                break;
            case Alu.Op.Xor:
                r = a ^ b;
                break;
            default:
                return Alu.Binary(op, a, b, size, ref Flags);
        }
        Defer(Lazy.Logic, a, b, r, size);
        return r;
    }

    // INC or DEC of a register value with deferred flags (CF keeps its value).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong IncDecDeferred(ulong a, int size, bool dec)
    {
        ulong m = Alu.Mask(size);
        a &= m;
        ulong r = (dec ? a - 1 : a + 1) & m;
        Defer(dec ? Lazy.Dec : Lazy.Inc, a, Carry(), r, size);
        return r;
    }

    // Condition code cc (Jcc's low nibble), from the deferred record where that is direct.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Condition(int cc)
    {
        if (_lazy == Lazy.None)
            return Conditions.Holds(cc, _flags);
        bool holds;
        int test = cc >> 1;
        if (test == 2)
            holds = _lazyR == 0; // ZF: every deferred kind sets it from the result
        else if (test == 4)
            holds = (_lazyR & Alu.SignBit(_lazySize)) != 0; // SF likewise
        else if (_lazy == Lazy.Sub && test is 1 or 3 or 6 or 7)
        {
            ulong a = _lazyA, b = _lazyB;
            holds = test switch
            {
                1 => a < b,                                                        // CF
                3 => a <= b,                                                       // CF or ZF
                6 => Alu.SignExtend(a, _lazySize) < Alu.SignExtend(b, _lazySize),  // SF != OF
                _ => Alu.SignExtend(a, _lazySize) <= Alu.SignExtend(b, _lazySize), // ZF or SF != OF
            };
        }
        else
            return Conditions.Holds(cc, Flags);
        return (cc & 1) == 0 ? holds : !holds;
    }
}
