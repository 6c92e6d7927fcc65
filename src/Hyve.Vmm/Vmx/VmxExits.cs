// The VMX layer's reading of an exit: the exit reason and qualification, the guest-physical
// and guest-linear addresses, the instruction length and information, turned into the
// backend-neutral BackendExit the run loop dispatches; and the VM-entry event fields.
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm.Vmx;

/// <summary>Basic exit reasons (exit reason bits 15:0) the VMX layer handles.</summary>
public static class VmxExitReason
{
#pragma warning disable CS1591 // the SDM's names
    public const uint ExceptionOrNmi = 0, ExternalInterrupt = 1, TripleFault = 2, InitSignal = 3, Sipi = 4,
        InterruptWindow = 7, NmiWindow = 8, Cpuid = 10, Hlt = 12, Invlpg = 14, Rdtsc = 16, CrAccess = 28,
        IoInstruction = 30, Rdmsr = 31, Wrmsr = 32, EntryFailureGuestState = 33, Pause = 40, EptViolation = 48,
        EptMisconfiguration = 49, PreemptionTimer = 52, Xsetbv = 55;
#pragma warning restore CS1591
}

/// <summary>Turns the current VMCS's exit information into a <see cref="BackendExit"/>.</summary>
public static class VmxExits
{
    /// <summary>
    /// Reads the exit. An EPT violation that is a data access (not a fetch) to a final
    /// translation with a valid guest-linear address, on memory that is not RAM, becomes an MMIO
    /// exit; a fetch from memory that is not RAM is a device fetch; on RAM (or anything else) it
    /// stays unhandled. I/O exits are decoded with
    /// <see cref="VmxIoExit"/>. Reasons the run loop does not handle come back as
    /// <see cref="BackendExitKind.Unhandled"/> with the reason.
    /// </summary>
    public static BackendExit Decode(VmxState state, IGuestMemory memory)
    {
        uint reason = (uint)Vmcs.Read(state, VmcsField.ExitReason) & 0xFFFF;
        int length = (int)Vmcs.Read(state, VmcsField.ExitInstructionLength);
        var exit = new BackendExit { Reason = reason, InstructionLength = (byte)length };
        switch (reason)
        {
            case VmxExitReason.IoInstruction:
                exit.Kind = BackendExitKind.Io;
                exit.Io = VmxIoExit.Decode(Vmcs.Read(state, VmcsField.ExitQualification),
                    (uint)Vmcs.Read(state, VmcsField.ExitInstructionInfo), length);
                break;
            case VmxExitReason.EptViolation:
                {
                    ulong q = Vmcs.Read(state, VmcsField.ExitQualification);
                    ulong gpa = Vmcs.Read(state, VmcsField.GuestPhysicalAddress);
                    bool fetch = (q & 4) != 0;
                    bool glaValid = (q & 0x80) != 0;
                    bool final = (q & 0x100) != 0;
                    if (!fetch && glaValid && final && !IsRam(memory, gpa))
                    {
                        exit.Kind = BackendExitKind.Mmio;
                        exit.Gpa = gpa;
                        exit.Gla = Vmcs.Read(state, VmcsField.GuestLinearAddress);
                        exit.GlaValid = true;
                    }
                    else if (fetch && !IsRam(memory, gpa))
                    {
                        exit.Kind = BackendExitKind.DeviceFetch;
                        exit.Gpa = gpa;
                    }
                    else
                    {
                        exit.Kind = BackendExitKind.Unhandled;
                    }
                    break;
                }
            case VmxExitReason.Hlt: exit.Kind = BackendExitKind.Hlt; break;
            case VmxExitReason.Pause: exit.Kind = BackendExitKind.Pause; break;
            case VmxExitReason.Cpuid: exit.Kind = BackendExitKind.Cpuid; break;
            case VmxExitReason.CrAccess:
                {
                    // Only CR8 is taken as an exit: CR number 3:0, access type 5:4 (0 MOV to CR,
                    // 1 MOV from CR), general register 11:8.
                    ulong q = Vmcs.Read(state, VmcsField.ExitQualification);
                    exit.Kind = (q & 0xF) == 8 && ((q >> 4) & 3) <= 1 ? BackendExitKind.Cr8 : BackendExitKind.Unhandled;
                    exit.Cr8Write = ((q >> 4) & 3) == 0;
                    exit.Cr8Register = (byte)((q >> 8) & 0xF);
                    break;
                }
            case VmxExitReason.Rdmsr: exit.Kind = BackendExitKind.Rdmsr; break;
            case VmxExitReason.Wrmsr: exit.Kind = BackendExitKind.Wrmsr; break;
            case VmxExitReason.TripleFault: exit.Kind = BackendExitKind.TripleFault; break;
            case VmxExitReason.InterruptWindow or VmxExitReason.NmiWindow: exit.Kind = BackendExitKind.InterruptWindow; break;
            case VmxExitReason.ExternalInterrupt: exit.Kind = BackendExitKind.Interrupted; break;
            case VmxExitReason.PreemptionTimer: exit.Kind = BackendExitKind.Preempted; break;
            case VmxExitReason.Xsetbv: exit.Kind = BackendExitKind.Xsetbv; break;
            default: exit.Kind = BackendExitKind.Unhandled; break;
        }
        return exit;
    }

    private static bool IsRam(IGuestMemory memory, ulong gpa)
    {
        System.Span<byte> probe = stackalloc byte[1];
        return memory.ReadRam(gpa, probe);
    }

    /// <summary>The VM-entry interruption-information field for <paramref name="e"/>: vector 7:0,
    /// type 10:8, error code valid 11, valid 31.</summary>
    public static uint EntryInterruptionInfo(in Event e) =>
        e.Vector | ((uint)e.Type << 8) | (e.HasErrorCode ? 1u << 11 : 0) | (1u << 31);

    /// <summary>Writes <paramref name="e"/> into the current VMCS's entry fields (with the
    /// instruction length for software events).</summary>
    public static void Inject(VmxState state, in Event e, int instructionLength = 0)
    {
        Vmcs.Write(state, VmcsField.EntryInterruptionInfo, EntryInterruptionInfo(in e));
        if (e.HasErrorCode)
            Vmcs.Write(state, VmcsField.EntryExceptionErrorCode, e.ErrorCode);
        if (e.Type is EventType.SoftwareInterrupt or EventType.SoftwareException)
            Vmcs.Write(state, VmcsField.EntryInstructionLength, (ulong)instructionLength);
    }

    /// <summary>An event whose delivery the exit interrupted (IDT-vectoring information valid),
    /// to inject again on the next entry; null when there is none.</summary>
    public static Event? InterruptedDelivery(VmxState state)
    {
        uint info = (uint)Vmcs.Read(state, VmcsField.IdtVectoringInfo);
        if ((info & (1u << 31)) == 0)
            return null;
        bool hasError = (info & (1u << 11)) != 0;
        uint code = hasError ? (uint)Vmcs.Read(state, VmcsField.IdtVectoringErrorCode) : 0;
        return new Event((byte)info, (EventType)((info >> 8) & 7), code, hasError);
    }
}
