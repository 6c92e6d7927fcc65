// XCR0's state-component bits, shared by the processor, the vmm's CPUID and XSETBV checks, and
// the instruction emulator.
namespace Hyve.X86;

/// <summary>The XSAVE state components XCR0 enables.</summary>
public static class Xcr0
{
    /// <summary>x87 state (always set).</summary>
    public const ulong X87 = 1;

    /// <summary>SSE state: XMM0-15 and MXCSR.</summary>
    public const ulong Sse = 2;

    /// <summary>AVX state: the upper halves of YMM0-15.</summary>
    public const ulong Avx = 4;

    /// <summary>What VEX instructions need the operating system to have enabled: SSE and AVX.</summary>
    public const ulong SseAvx = Sse | Avx;
}
