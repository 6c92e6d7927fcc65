// The instruction-set extensions the software CPU runs, taken from the CPUID the vmm reports: an
// instruction of an extension CPUID hides raises #UD (or, for LZCNT and TZCNT, runs as the BSR
// and BSF that their encodings are on a processor without them), so what a guest detects and
// what it can execute agree both ways.
using System;
using Hyve.Vmm;

namespace Hyve.SoftCpu;

/// <summary>Extensions whose instructions the software CPU runs only when CPUID reports them.</summary>
[Flags]
public enum CpuFeatures
{
    /// <summary>None of them.</summary>
    None = 0,

    /// <summary>SSE3 (leaf 1 ECX bit 0), FISTTP included.</summary>
    Sse3 = 1 << 0,

    /// <summary>SSSE3 (leaf 1 ECX bit 9).</summary>
    Ssse3 = 1 << 1,

    /// <summary>SSE4.1 (leaf 1 ECX bit 19).</summary>
    Sse41 = 1 << 2,

    /// <summary>SSE4.2 (leaf 1 ECX bit 20): PCMPGTQ, the string compares and CRC32.</summary>
    Sse42 = 1 << 3,

    /// <summary>POPCNT (leaf 1 ECX bit 23).</summary>
    Popcnt = 1 << 4,

    /// <summary>MOVBE (leaf 1 ECX bit 22).</summary>
    Movbe = 1 << 5,

    /// <summary>LZCNT (leaf 0x80000001 ECX bit 5); without it F3 0F BD is BSR.</summary>
    Lzcnt = 1 << 6,

    /// <summary>BMI1 (leaf 7 EBX bit 3): ANDN, BEXTR, BLSI, BLSMSK, BLSR, TZCNT; without it TZCNT
    /// (F3 0F BC) is BSF and the rest are #UD.</summary>
    Bmi1 = 1 << 7,

    /// <summary>RDRAND (leaf 1 ECX bit 30).</summary>
    Rdrand = 1 << 8,

    /// <summary>RDSEED (leaf 7 EBX bit 18).</summary>
    Rdseed = 1 << 9,

    /// <summary>RDTSCP (leaf 0x80000001 EDX bit 27).</summary>
    Rdtscp = 1 << 10,

    /// <summary>BMI2 (leaf 7 EBX bit 8): BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX.</summary>
    Bmi2 = 1 << 11,

    /// <summary>XSAVE (leaf 1 ECX bit 26): XSAVE, XRSTOR, XGETBV, XSETBV and CR4.OSXSAVE.</summary>
    Xsave = 1 << 12,

    /// <summary>AVX (leaf 1 ECX bit 28), with XCR0's AVX state.</summary>
    Avx = 1 << 13,

    /// <summary>AVX2 (leaf 7 EBX bit 5): the 256-bit integer forms, broadcasts from registers,
    /// permutes, masked integer moves, per-element shifts.</summary>
    Avx2 = 1 << 14,

    /// <summary>FMA (leaf 1 ECX bit 12): the fused multiply-adds.</summary>
    Fma = 1 << 15,

    /// <summary>F16C (leaf 1 ECX bit 29): VCVTPH2PS and VCVTPS2PH.</summary>
    F16c = 1 << 16,

    /// <summary>Every extension the software CPU implements.</summary>
    All = Sse3 | Ssse3 | Sse41 | Sse42 | Popcnt | Movbe | Lzcnt | Bmi1 | Rdrand | Rdseed | Rdtscp | Bmi2 | Xsave | Avx | Avx2 | Fma | F16c,
}

/// <summary>Reads <see cref="CpuFeatures"/> from a CPUID policy.</summary>
public static class CpuFeatureBits
{
    /// <summary>The extensions <paramref name="policy"/> reports.</summary>
    public static CpuFeatures From(CpuidPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        uint ecx1 = policy.Query(1, 0, 0).Ecx, ebx7 = policy.Query(7, 0, 0).Ebx;
        var (_, _, ecx81, edx81) = policy.Query(0x8000_0001, 0, 0);
        var f = CpuFeatures.None;
        f |= Bit(ecx1, 0, CpuFeatures.Sse3) | Bit(ecx1, 9, CpuFeatures.Ssse3) | Bit(ecx1, 19, CpuFeatures.Sse41)
            | Bit(ecx1, 20, CpuFeatures.Sse42) | Bit(ecx1, 22, CpuFeatures.Movbe) | Bit(ecx1, 23, CpuFeatures.Popcnt)
            | Bit(ecx81, 5, CpuFeatures.Lzcnt) | Bit(ebx7, 3, CpuFeatures.Bmi1) | Bit(ecx1, 30, CpuFeatures.Rdrand)
            | Bit(ebx7, 18, CpuFeatures.Rdseed) | Bit(edx81, 27, CpuFeatures.Rdtscp) | Bit(ebx7, 8, CpuFeatures.Bmi2)
            | Bit(ecx1, 26, CpuFeatures.Xsave) | Bit(ecx1, 28, CpuFeatures.Avx) | Bit(ebx7, 5, CpuFeatures.Avx2)
            | Bit(ecx1, 12, CpuFeatures.Fma) | Bit(ecx1, 29, CpuFeatures.F16c);
        return f;
    }

    private static CpuFeatures Bit(uint word, int bit, CpuFeatures feature) => ((word >> bit) & 1) != 0 ? feature : CpuFeatures.None;
}
