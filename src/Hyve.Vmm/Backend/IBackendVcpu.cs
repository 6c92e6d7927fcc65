// The contract between the vmm and a backend (the software CPU, KVM): what a vCPU must let the
// vmm read, write and run. Backends live in their own projects and see nothing else of the vmm.
using System;
using Hyve.Vmm.Emulation;
using Hyve.X86;

namespace Hyve.Vmm.Backend;

/// <summary>Why the backend stopped running guest code.</summary>
public enum BackendExitKind : byte
{
    /// <summary>A data access to guest-physical memory that is not RAM.</summary>
    Mmio,
    /// <summary>An IN, OUT, INS or OUTS (<see cref="BackendExit.Io"/>).</summary>
    Io,
    /// <summary>HLT (RIP already past it).</summary>
    Hlt,
    /// <summary>PAUSE (RIP already past it).</summary>
    Pause,
    /// <summary>CPUID: the vmm answers from its policy and advances RIP.</summary>
    Cpuid,
    /// <summary>RDMSR of ECX: the vmm answers and advances RIP.</summary>
    Rdmsr,
    /// <summary>WRMSR of ECX with EDX:EAX: the vmm handles it and advances RIP.</summary>
    Wrmsr,
    /// <summary>A triple fault (shutdown).</summary>
    TripleFault,
    /// <summary>The interrupt window the vmm asked for opened.</summary>
    InterruptWindow,
    /// <summary>The run was interrupted from outside (a kick, a host signal).</summary>
    Interrupted,
    /// <summary>The time slice set by <see cref="IBackendVcpu.Quantum"/> ran out.</summary>
    Preempted,
    /// <summary>A device-memory access the backend decoded itself (KVM): <see cref="BackendExit.Access"/>
    /// says where and how big; the data is reached through <see cref="IBackendVcpu.GetAccessData"/> and
    /// <see cref="IBackendVcpu.SetAccessData"/>, and the backend finishes the instruction on the next run.</summary>
    DecodedMmio,
    /// <summary>A port access the backend decoded itself, possibly several elements of a string
    /// instruction (<see cref="DecodedAccess.Count"/>).</summary>
    DecodedIo,
    /// <summary>An instruction fetch from memory that is not RAM (<see cref="BackendExit.Gpa"/>):
    /// the vmm answers as a PC whose bus reads all ones there, where the bytes FF FF are an
    /// undefined opcode (#UD).</summary>
    DeviceFetch,
    /// <summary>MOV to or from CR8 (the local APIC's task priority, <see cref="BackendExit.Cr8Write"/>,
    /// the general register <see cref="BackendExit.Cr8Register"/>): the vmm does it and advances RIP.</summary>
    Cr8,
    /// <summary>XSETBV (ECX the register, EDX:EAX the value), which VMX always takes as an exit
    /// once the processor has checked CPL 0 and CR4.OSXSAVE: the vmm checks the value against
    /// what CPUID offers and sets XCR0 (<see cref="IBackendVcpu.SetXcr0"/>), or raises #GP(0).</summary>
    Xsetbv,
    /// <summary>Anything else; <see cref="BackendExit.Reason"/> says what.</summary>
    Unhandled,
}

/// <summary>An access a backend decoded itself: guest-physical address or port, element size,
/// element count (port string I/O; 1 otherwise) and direction. Its data is
/// <see cref="Size"/> × <see cref="Count"/> bytes, element after element.</summary>
public struct DecodedAccess
{
    /// <summary>Guest-physical address (MMIO) or port.</summary>
    public ulong Address;
    /// <summary>Bytes per element: 1 to 8 for MMIO (any length, a page split gives odd ones), 1, 2
    /// or 4 for ports.</summary>
    public int Size;
    /// <summary>Elements (1 unless a string port instruction was batched).</summary>
    public int Count;
    /// <summary>True for a write or OUT.</summary>
    public bool Write;
}

/// <summary>One backend exit. Only the fields of its kind are meaningful.</summary>
public struct BackendExit
{
    /// <summary>What happened.</summary>
    public BackendExitKind Kind;
    /// <summary>Guest-physical address of an MMIO access.</summary>
    public ulong Gpa;
    /// <summary>Guest-linear address of an MMIO access, when <see cref="GlaValid"/>.</summary>
    public ulong Gla;
    /// <summary>Whether <see cref="Gla"/> is known.</summary>
    public bool GlaValid;
    /// <summary>The instruction's bytes when the backend has them (<see cref="ByteCount"/> valid);
    /// otherwise the vmm fetches them.</summary>
    public InstructionBytes Bytes;
    /// <summary>How many of <see cref="Bytes"/> are valid.</summary>
    public byte ByteCount;
    /// <summary>The port access of an <see cref="BackendExitKind.Io"/> exit.</summary>
    public IoExit Io;
    /// <summary>A CR8 exit: whether the guest writes CR8 (or reads it).</summary>
    public bool Cr8Write;
    /// <summary>A CR8 exit: the general register (0-15) written to CR8 or read into.</summary>
    public byte Cr8Register;
    /// <summary>Length of the exiting instruction (CPUID, RDMSR, WRMSR, CR8): the RIP advance.</summary>
    public byte InstructionLength;
    /// <summary>A backend-specific reason for <see cref="BackendExitKind.Unhandled"/>.</summary>
    public uint Reason;
    /// <summary>The access of a <see cref="BackendExitKind.DecodedMmio"/> or <see cref="BackendExitKind.DecodedIo"/> exit.</summary>
    public DecodedAccess Access;
}

/// <summary>Control registers and EFER.</summary>
/// <param name="Cr0">CR0.</param>
/// <param name="Cr2">CR2.</param>
/// <param name="Cr3">CR3.</param>
/// <param name="Cr4">CR4.</param>
/// <param name="Efer">IA32_EFER.</param>
public readonly record struct ControlState(ulong Cr0, ulong Cr2, ulong Cr3, ulong Cr4, ulong Efer);

/// <summary>GDTR or IDTR.</summary>
/// <param name="Base">Base address.</param>
/// <param name="Limit">Limit.</param>
public readonly record struct TableRegister(ulong Base, ushort Limit);

/// <summary>Event types, as the VM-entry interruption-information field numbers them.</summary>
public enum EventType : byte
{
    /// <summary>External interrupt.</summary>
    External = 0,
    /// <summary>NMI.</summary>
    Nmi = 2,
    /// <summary>Hardware exception.</summary>
    HardwareException = 3,
    /// <summary>Software interrupt (INT n).</summary>
    SoftwareInterrupt = 4,
    /// <summary>Software exception (INT3, INTO).</summary>
    SoftwareException = 6,
}

/// <summary>An event to deliver on the next entry.</summary>
/// <param name="Vector">Vector.</param>
/// <param name="Type">Type.</param>
/// <param name="ErrorCode">Error code, when <paramref name="HasErrorCode"/>.</param>
/// <param name="HasErrorCode">Whether the event pushes an error code.</param>
public readonly record struct Event(byte Vector, EventType Type, uint ErrorCode = 0, bool HasErrorCode = false);

/// <summary>A backend's vCPU. The general registers, RIP, RFLAGS, segments and vector registers
/// come through <see cref="IVieCpu"/>.</summary>
public interface IBackendVcpu : IVieCpu
{
    /// <summary>Guest instructions retired so far (0 when the backend does not count them).</summary>
    long Retired => 0;

    /// <summary>Instructions the backend's processor does not implement that the guest ran; each
    /// raised #UD in the guest, as on a processor without the feature (0 where every instruction
    /// is the hardware's).</summary>
    long Unimplemented => 0;

    /// <summary>The last of them, disassembled with its RIP, or null.</summary>
    string? LastUnimplemented => null;

    /// <summary>When not zero, a run ends with <see cref="BackendExitKind.Preempted"/> after about
    /// this many guest instructions (backends without a time slice ignore it).</summary>
    uint Quantum
    {
        get => 0;
        set { }
    }

    /// <summary>Control registers and EFER.</summary>
    ControlState Control { get; set; }

    /// <summary>Loads a segment register's hidden and visible parts.</summary>
    void SetSegment(Register segment, in Segment value);

    /// <summary>GDTR.</summary>
    TableRegister Gdtr { get; set; }

    /// <summary>IDTR.</summary>
    TableRegister Idtr { get; set; }

    /// <inheritdoc/>
    bool IVieCpu.TrySetSegment(Register segment, in Segment value)
    {
        SetSegment(segment, value);
        return true;
    }

    /// <inheritdoc/>
    bool IVieCpu.TryGetDescriptorTable(bool idt, out TableRegister table)
    {
        table = idt ? Idtr : Gdtr;
        return true;
    }

    /// <summary>Reads an MSR the processor itself uses (SYSCALL/SYSENTER MSRs, FS/GS/kernel GS
    /// base, PAT, TSC_AUX); false when the backend does not hold it.</summary>
    bool TryGetMsr(uint msr, out ulong value);

    /// <summary>Writes such an MSR; false when the backend does not hold it.</summary>
    bool TrySetMsr(uint msr, ulong value);

    /// <summary>Whether an external interrupt can be delivered now (RFLAGS.IF set, no STI or
    /// MOV SS shadow, no event already pending).</summary>
    bool InterruptWindowOpen { get; }

    /// <summary>Whether an NMI can be delivered now (no NMI blocking, no event pending).</summary>
    bool NmiWindowOpen { get; }

    /// <summary>Delivers <paramref name="e"/> on the next entry.</summary>
    void Inject(in Event e);

    /// <summary>Asks for an <see cref="BackendExitKind.InterruptWindow"/> exit as soon as an
    /// external interrupt could be delivered (or stops asking).</summary>
    void RequestInterruptWindow(bool on);

    /// <summary>Bytes [<paramref name="offset"/>, +<paramref name="size"/>) of the pending decoded
    /// access's data (a write's or OUT's value), little-endian.</summary>
    ulong GetAccessData(int offset, int size) => throw new NotSupportedException("this backend does not decode accesses");

    /// <summary>Stores a read's or IN's result into bytes [<paramref name="offset"/>, +<paramref name="size"/>)
    /// of the pending decoded access's data.</summary>
    void SetAccessData(int offset, int size, ulong value) => throw new NotSupportedException("this backend does not decode accesses");

    /// <summary>The MSR number (ECX) and EDX:EAX of the RDMSR or WRMSR exit just returned.</summary>
    (uint Msr, ulong Value) MsrOperands => ((uint)GetGpr(1), (GetGpr(2) << 32) | (uint)GetGpr(0));

    /// <summary>Finishes that RDMSR or WRMSR: with <paramref name="fault"/> it raises #GP(0);
    /// otherwise an RDMSR returns <paramref name="value"/> in EDX:EAX and RIP moves past the
    /// instruction (<paramref name="length"/> bytes).</summary>
    void CompleteMsr(bool read, byte length, bool fault, ulong value)
    {
        if (fault)
        {
            Inject(new Event(ExceptionVector.GP, EventType.HardwareException, 0, true));
            return;
        }
        if (read)
        {
            SetGpr(0, (uint)value);
            SetGpr(2, value >> 32);
        }
        Rip += length;
    }

    /// <summary>Sets XCR0 after an <see cref="BackendExitKind.Xsetbv"/> exit (the vmm has checked the
    /// value).</summary>
    void SetXcr0(ulong value) => throw new NotSupportedException("this backend keeps XCR0 itself");

    /// <summary>Gives the backend the vmm's CPUID answers for this vCPU, for backends that answer
    /// CPUID themselves (the software CPU exits to the vmm instead and ignores this).</summary>
    void SetCpuid(CpuidPolicy policy, int apicId)
    {
    }

    /// <summary>Runs guest code until something needs the vmm.</summary>
    BackendExit Run();

    /// <summary>Makes a <see cref="Run"/> in progress (or the next one) return
    /// <see cref="BackendExitKind.Interrupted"/> soon; callable from any thread.</summary>
    void RequestExit();
}

/// <summary>A backend: creates vCPUs for a VM whose RAM it is given.</summary>
public interface IBackend
{
    /// <summary>Short name ("soft", "kvm").</summary>
    string Name { get; }

    /// <summary>Creates vCPU <paramref name="id"/>.</summary>
    IBackendVcpu CreateVcpu(int id);

    /// <summary>The guest's time-stamp counter frequency in Hz, or 0 when the TSC counts the VM
    /// clock's nanoseconds (1 GHz).</summary>
    ulong TscHz => 0;
}
