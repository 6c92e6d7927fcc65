// The CPUID a guest sees: one consistent, configurable model of an Intel-compatible processor
// at an x86-64 microarchitecture level: v2 by default (with XSAVE for the x87 and SSE state), v3
// with AVX, AVX2, FMA, F16C, BMI1, BMI2, MOVBE and AVX's XSAVE state. Two answers follow the vCPU:
// OSXSAVE is CR4's bit, and leaf 0xD's current XSAVE size follows XCR0.
using System;
using System.Text;
using Hyve.X86;

namespace Hyve.Vmm;

/// <summary>The x86-64 microarchitecture levels the CPUID model can report.</summary>
public enum CpuLevel
{
    /// <summary>x86-64 as first defined: SSE and SSE2 (with CMPXCHG16B, POPCNT and LAHF/SAHF,
    /// which Hyve's processor always has).</summary>
    V1,

    /// <summary>x86-64-v2: v1 with SSE3, SSSE3, SSE4.1 and SSE4.2; XSAVE too (the x87 and SSE
    /// state components).</summary>
    V2,

    /// <summary>x86-64-v3: v2 with AVX, AVX2, FMA, F16C, BMI1, BMI2 and MOVBE, and AVX's state in
    /// XSAVE (LZCNT is there at every level).</summary>
    V3,
}

/// <summary>Answers CPUID for every vCPU of a VM.</summary>
public sealed class CpuidPolicy
{
    private const uint MaxBasic = 0x15;
    private const uint MaxExtended = 0x8000_0008;
    private static readonly byte[] Vendor = Encoding.ASCII.GetBytes("GenuineIntel");
    private static readonly byte[] Hypervisor = Encoding.ASCII.GetBytes("HyveHyveHyve");
    private static readonly byte[] Brand = Encoding.ASCII.GetBytes("Hyve virtual CPU".PadRight(48, '\0'));

    /// <summary>Number of vCPUs (reported as logical processors in leaf 1).</summary>
    public int Vcpus { get; init; } = 1;

    /// <summary>The TSC frequency when it counts the VM clock's nanoseconds.</summary>
    public const ulong ClockTscHz = 1_000_000_000;

    /// <summary>The time-stamp counter's frequency in Hz, reported in leaf 0x15.</summary>
    public ulong TscHz { get; init; } = ClockTscHz;

    /// <summary>Physical-address width reported in leaf 0x80000008 (and used for reserved bits).</summary>
    public int PhysicalAddressBits { get; init; } = 46;

    /// <summary>Processor signature of leaf 1 EAX (family 6).</summary>
    public uint Signature { get; init; } = 0x000306A9;

    /// <summary>Leaf 1 ECX at every level: CX16, x2APIC, POPCNT, TSC-deadline, RDRAND, hypervisor
    /// (XSAVE comes with v2; MOVBE, AVX, FMA and F16C with v3).</summary>
    public const uint Leaf1Ecx = (1u << 13) | (1u << 21) | (1u << 23) | (1u << 24) | (1u << 30) | (1u << 31);

    /// <summary>Leaf 1 ECX's x86-64-v2 bits: SSE3, SSSE3, SSE4.1, SSE4.2, and XSAVE.</summary>
    public const uint Leaf1EcxV2 = (1u << 0) | (1u << 9) | (1u << 19) | (1u << 20) | Leaf1EcxXsave;

    /// <summary>Leaf 1 ECX's x86-64-v3 bits: FMA, MOVBE, AVX, F16C.</summary>
    public const uint Leaf1EcxV3 = (1u << 12) | (1u << 22) | (1u << 28) | (1u << 29);

    /// <summary>Leaf 7 EBX's x86-64-v3 bits: BMI1, AVX2, BMI2.</summary>
    public const uint Leaf7EbxV3 = (1u << 3) | (1u << 5) | (1u << 8);

    /// <summary>Leaf 1 ECX's XSAVE bit (XSAVE, XRSTOR, XGETBV, XSETBV and XCR0).</summary>
    public const uint Leaf1EcxXsave = 1u << 26;

    /// <summary>Leaf 1 ECX's OSXSAVE bit: CR4.OSXSAVE as the asking vCPU has it.</summary>
    public const uint Leaf1EcxOsxsave = 1u << 27;

    /// <summary>The XCR0 bits XSETBV accepts: x87 and SSE where XSAVE is offered (AVX too at v3),
    /// none otherwise.</summary>
    public ulong Xcr0Supported => Level >= CpuLevel.V3 ? Xcr0.X87 | Xcr0.SseAvx : Level >= CpuLevel.V2 ? Xcr0.X87 | Xcr0.Sse : 0;

    /// <summary>Where AVX's state component (the upper halves of YMM0-15) sits in the standard
    /// XSAVE format, and its size.</summary>
    public const uint AvxStateOffset = 576, AvxStateSize = 256;

    /// <summary>The size of the standard-format XSAVE area for the components in <paramref name="xcr0"/>:
    /// the 512-byte legacy region (x87 and SSE) and the 64-byte header, then AVX's component.</summary>
    public static uint XsaveSize(ulong xcr0) => (xcr0 & Xcr0.Avx) != 0 ? AvxStateOffset + AvxStateSize : 512 + 64;

    /// <summary>Whether XSETBV may set XCR0 to <paramref name="value"/>: x87 on, nothing CPUID does
    /// not offer, and AVX only with SSE.</summary>
    public bool ValidXcr0(ulong value) =>
        (value & ~Xcr0Supported) == 0 && (value & Xcr0.X87) != 0 && ((value & Xcr0.Avx) == 0 || (value & Xcr0.Sse) != 0);

    /// <summary>The level reported (v2 by default; v1 makes guests choose their SSE2 code paths).</summary>
    public CpuLevel Level { get; init; } = CpuLevel.V2;

    /// <summary>Leaf 1 EDX: FPU, VME, PSE, TSC, MSR, PAE, CX8, APIC, SEP, MTRR, PGE, CMOV, PAT, PSE-36,
    /// CLFSH, MMX, FXSR, SSE, SSE2.</summary>
    public const uint Leaf1Edx = (1u << 0) | (1u << 1) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9)
        | (1u << 11) | (1u << 12) | (1u << 13) | (1u << 15) | (1u << 16) | (1u << 17) | (1u << 19) | (1u << 23)
        | (1u << 24) | (1u << 25) | (1u << 26);

    /// <summary>Leaf 7 EBX at every level: SMEP, ERMS, RDSEED, SMAP, CLFLUSHOPT (BMI1, AVX2 and BMI2
    /// come with v3; without BMI1, TZCNT is BSF).</summary>
    public const uint Leaf7Ebx = (1u << 7) | (1u << 9) | (1u << 18) | (1u << 20) | (1u << 23);

    /// <summary>The answer for <paramref name="leaf"/>/<paramref name="subleaf"/> on the vCPU whose
    /// APIC ID is <paramref name="apicId"/>, as after reset (CR4.OSXSAVE clear, XCR0 x87 only).</summary>
    public (uint Eax, uint Ebx, uint Ecx, uint Edx) Query(uint leaf, uint subleaf, int apicId) => Query(leaf, subleaf, apicId, 0, 1);

    /// <summary>The answer for <paramref name="leaf"/>/<paramref name="subleaf"/> on the vCPU whose
    /// APIC ID is <paramref name="apicId"/> and whose CR4 and XCR0 are <paramref name="cr4"/> and
    /// <paramref name="xcr0"/>.</summary>
    public (uint Eax, uint Ebx, uint Ecx, uint Edx) Query(uint leaf, uint subleaf, int apicId, ulong cr4, ulong xcr0)
    {
        switch (leaf)
        {
            case 0:
                return (MaxBasic, Word(Vendor, 0), Word(Vendor, 8), Word(Vendor, 4));
            case 1:
                uint ebx = ((uint)apicId << 24) | ((uint)Math.Min(Vcpus, 255) << 16) | (8u << 8);
                uint edx = Leaf1Edx | (Vcpus > 1 ? 1u << 28 : 0);
                uint ecx = Leaf1Ecx | (Level >= CpuLevel.V2 ? Leaf1EcxV2 : 0) | (Level >= CpuLevel.V3 ? Leaf1EcxV3 : 0);
                if ((ecx & Leaf1EcxXsave) != 0 && (cr4 & PagingState.Cr4OSXSAVE) != 0)
                    ecx |= Leaf1EcxOsxsave;
                return (Signature, ebx, ecx, edx);
            case 7:
                return subleaf == 0 ? (0u, Leaf7Ebx | (Level >= CpuLevel.V3 ? Leaf7EbxV3 : 0), 0u, 0u) : (0u, 0u, 0u, 0u);
            case 0xD:
                // Subleaf 0: the XCR0 bits supported, the area size for the current XCR0 and for all
                // supported components. Subleaf 1: XSAVEOPT (not XSAVEC, XGETBV with ECX 1 or XSAVES).
                // Subleaf 2: AVX's component, its size and offset.
                if (Xcr0Supported == 0)
                    return (0, 0, 0, 0);
                if (subleaf == 2 && (Xcr0Supported & Xcr0.Avx) != 0)
                    return (AvxStateSize, AvxStateOffset, 0, 0);
                if (subleaf == 1)
                    return (1, 0, 0, 0);
                if (subleaf != 0)
                    return (0, 0, 0, 0);
                return ((uint)Xcr0Supported, XsaveSize(xcr0), XsaveSize(Xcr0Supported), (uint)(Xcr0Supported >> 32));
            case 0x15:
                // TSC / crystal ratio 1/1 and the crystal's frequency: the TSC counts the VM clock's
                // nanoseconds, so guests need not calibrate it against the PIT.
                // Above 4.29 GHz the crystal is reported as 1 kHz with the TSC a multiple of it.
                return TscHz <= uint.MaxValue ? (1, 1, (uint)TscHz, 0) : (1, (uint)(TscHz / 1000), 1000, 0);
            case 0x4000_0000:
                return (0x4000_0000, Word(Hypervisor, 0), Word(Hypervisor, 4), Word(Hypervisor, 8));
            case 0x8000_0000:
                return (MaxExtended, 0, 0, 0);
            case 0x8000_0001:
                // LAHF/SAHF, LZCNT; SYSCALL, NX, 1 GiB pages, RDTSCP (with IA32_TSC_AUX), long mode.
                return (0, 0, (1u << 0) | (1u << 5), (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29));
            case >= 0x8000_0002 and <= 0x8000_0004:
                int o = (int)(leaf - 0x8000_0002) * 16;
                return (Word(Brand, o), Word(Brand, o + 4), Word(Brand, o + 8), Word(Brand, o + 12));
            case 0x8000_0008:
                return ((48u << 8) | (uint)PhysicalAddressBits, 0, 0, 0);
            default:
                return (0, 0, 0, 0);
        }
    }

    private static uint Word(byte[] s, int at) => BitConverter.ToUInt32(s, at);
}
