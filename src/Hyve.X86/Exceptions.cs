// Exception vectors and the error-code bits the emulators report with them.
namespace Hyve.X86;

/// <summary>Architectural exception vectors.</summary>
public static class ExceptionVector
{
    /// <summary>Divide error.</summary>
    public const byte DE = 0;
    /// <summary>Debug.</summary>
    public const byte DB = 1;
    /// <summary>Breakpoint.</summary>
    public const byte BP = 3;
    /// <summary>Invalid opcode.</summary>
    public const byte UD = 6;
    /// <summary>Device not available.</summary>
    public const byte NM = 7;
    /// <summary>Double fault.</summary>
    public const byte DF = 8;
    /// <summary>Segment not present.</summary>
    public const byte NP = 11;
    /// <summary>Stack-segment fault.</summary>
    public const byte SS = 12;
    /// <summary>General protection.</summary>
    public const byte GP = 13;
    /// <summary>Page fault.</summary>
    public const byte PF = 14;
    /// <summary>x87 floating-point error.</summary>
    public const byte MF = 16;
    /// <summary>Alignment check.</summary>
    public const byte AC = 17;
    /// <summary>SIMD floating-point exception.</summary>
    public const byte XM = 19;

    /// <summary>Whether the exception pushes an error code.</summary>
    public static bool HasErrorCode(byte vector) => vector is DF or 10 or 11 or SS or GP or PF or AC or 21;
}

/// <summary>Page-fault error-code bits.</summary>
public static class PageFaultError
{
    /// <summary>Set for a protection violation, clear for a not-present page.</summary>
    public const uint Present = 1;
    /// <summary>The access was a write.</summary>
    public const uint Write = 2;
    /// <summary>The access was made at CPL 3.</summary>
    public const uint User = 4;
    /// <summary>A reserved bit was set in a paging-structure entry.</summary>
    public const uint Reserved = 8;
    /// <summary>The access was an instruction fetch (reported when NX or SMEP is enabled).</summary>
    public const uint Fetch = 16;
}

/// <summary>An exception an instruction raises: vector, error code and (for #PF) the faulting address.</summary>
/// <param name="Vector">Exception vector.</param>
/// <param name="ErrorCode">Error code (meaningful when <see cref="ExceptionVector.HasErrorCode"/>).</param>
/// <param name="Address">Faulting linear address for #PF (the new CR2), else 0.</param>
public readonly record struct GuestFault(byte Vector, uint ErrorCode, ulong Address = 0)
{
    /// <summary>Whether the exception delivers an error code.</summary>
    public bool HasErrorCode => ExceptionVector.HasErrorCode(Vector);

    /// <inheritdoc/>
    public override string ToString() => Vector switch
    {
        ExceptionVector.PF => $"#PF({ErrorCode:X}) at {Address:X}",
        _ when HasErrorCode => $"vector {Vector}({ErrorCode:X})",
        _ => $"vector {Vector}",
    };
}
