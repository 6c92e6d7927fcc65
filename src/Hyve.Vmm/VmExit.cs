// What a vCPU run returns to the device half, and what the device half answers with: bhyve's
// exit codes and entry commands (same ordinals), carrying single accesses only.
using System;
using System.Runtime.CompilerServices;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm;

/// <summary>Exit codes, with bhyve's ordinals so traces compare.</summary>
public enum VmExitCode : byte
{
    /// <summary>A port access for the device half (<see cref="VmExit.Inout"/>).</summary>
    Inout = 0,
    /// <summary>A VMX exit the vmm did not handle (diagnostics).</summary>
    Vmx = 1,
    /// <summary>Nothing for the device half to do (a kick, an interrupt window); run again.</summary>
    Bogus = 2,
    /// <summary>RDMSR of an MSR the vmm does not own (<see cref="VmExit.Msr"/>); answer with
    /// <see cref="VmEntryCommand.FulfillMsr"/>.</summary>
    Rdmsr = 3,
    /// <summary>WRMSR of an MSR the vmm does not own (<see cref="VmExit.Msr"/>, <see cref="VmExit.MsrValue"/>).</summary>
    Wrmsr = 4,
    /// <summary>HLT with interrupts disabled: only an NMI, INIT or reset can wake the vCPU.</summary>
    Hlt = 5,
    /// <summary>Monitor trap (single step).</summary>
    Mtrap = 6,
    /// <summary>PAUSE (only when the device half asked to see them).</summary>
    Pause = 7,
    /// <summary>A nested-paging fault on RAM the vmm could not resolve.</summary>
    Paging = 8,
    /// <summary>An instruction the vmm could not emulate (<see cref="VmExit.InstructionBytes"/>).</summary>
    InstEmul = 9,
    /// <summary>The vCPU is parked (INIT without SIPI, or stopped); run again to wait.</summary>
    RunState = 10,
    /// <summary>vmm-internal MMIO emulation (never returned).</summary>
    MmioEmul = 11,
    /// <summary>An I/O APIC EOI broadcast (vmm-internal).</summary>
    IoapicEoi = 13,
    /// <summary>The VM stopped: <see cref="VmExit.Suspend"/> says why.</summary>
    Suspended = 14,
    /// <summary>A device-memory access for the device half (<see cref="VmExit.Mmio"/>).</summary>
    Mmio = 15,
    /// <summary>A task switch (not emulated).</summary>
    TaskSwitch = 16,
    /// <summary>MONITOR.</summary>
    Monitor = 17,
    /// <summary>MWAIT.</summary>
    Mwait = 18,
    /// <summary>A debug exception the device half asked to see.</summary>
    Debug = 21,
    /// <summary>A VMX instruction executed by the guest.</summary>
    VmInsn = 22,
    /// <summary>A breakpoint the device half asked to see.</summary>
    Bpt = 23,
}

/// <summary>Why a VM stopped.</summary>
public enum SuspendReason : byte
{
    /// <summary>Not suspended.</summary>
    None,
    /// <summary>The guest asked to reset the machine.</summary>
    Reset,
    /// <summary>The guest powered the machine off.</summary>
    PowerOff,
    /// <summary>The guest halted for good (HLT with nothing left to wake it).</summary>
    Halt,
    /// <summary>A vCPU triple-faulted.</summary>
    TripleFault,
}

/// <summary>Up to 15 instruction bytes, inline.</summary>
[InlineArray(15)]
public struct InstructionBytes
{
    private byte _e0;
}

/// <summary>One exit to the device half. Only the payload of <see cref="Code"/> is meaningful.</summary>
public struct VmExit
{
    /// <summary>What happened.</summary>
    public VmExitCode Code;
    /// <summary>RIP at the exit (0 on the requests of a backend that decodes accesses itself,
    /// KVM, where reading it costs a system call).</summary>
    public ulong Rip;
    /// <summary>The access of an <see cref="VmExitCode.Mmio"/> exit.</summary>
    public MmioAccess Mmio;
    /// <summary>The access of an <see cref="VmExitCode.Inout"/> exit.</summary>
    public InoutAccess Inout;
    /// <summary>The MSR of an <see cref="VmExitCode.Rdmsr"/> or <see cref="VmExitCode.Wrmsr"/> exit.</summary>
    public uint Msr;
    /// <summary>The value of a <see cref="VmExitCode.Wrmsr"/> exit.</summary>
    public ulong MsrValue;
    /// <summary>Why the VM stopped (<see cref="VmExitCode.Suspended"/>).</summary>
    public SuspendReason Suspend;
    /// <summary>The bytes of an <see cref="VmExitCode.InstEmul"/> exit (<see cref="InstructionLength"/> valid).</summary>
    public InstructionBytes InstructionBytes;
    /// <summary>How many of <see cref="InstructionBytes"/> are valid.</summary>
    public byte InstructionLength;
    /// <summary>The backend's own reason for a <see cref="VmExitCode.Vmx"/> exit.</summary>
    public uint Reason;

    /// <inheritdoc/>
    public override readonly string ToString() => Code switch
    {
        VmExitCode.Mmio => $"mmio {(Mmio.Write ? "write" : "read")} {Mmio.Bytes}@{Mmio.Gpa:X}" + (Mmio.Write ? $" = {Mmio.Data:X}" : ""),
        VmExitCode.Inout => $"{(Inout.In ? "in" : "out")} {Inout.Bytes}@{Inout.Port:X}" + (Inout.In ? "" : $" = {Inout.Eax:X}"),
        VmExitCode.Rdmsr => $"rdmsr {Msr:X}",
        VmExitCode.Wrmsr => $"wrmsr {Msr:X} = {MsrValue:X}",
        VmExitCode.Suspended => $"suspended ({Suspend})",
        VmExitCode.InstEmul => $"instruction not emulated at {Rip:X}: {Convert.ToHexString(((ReadOnlySpan<byte>)InstructionBytes)[..InstructionLength])}",
        VmExitCode.Vmx => $"vmx exit reason {Reason} at {Rip:X}",
        _ => Code.ToString(),
    };
}

/// <summary>Entry commands, with bhyve's ordinals (and one for MSRs).</summary>
public enum VmEntryCommand : byte
{
    /// <summary>Run; a pending request is emitted again.</summary>
    Default = 0,
    /// <summary>Drop the instruction being emulated; RIP is not advanced.</summary>
    DiscardInstruction = 1,
    /// <summary>Answer the pending device-memory request.</summary>
    FulfillMmio = 2,
    /// <summary>Answer the pending port request.</summary>
    FulfillInout = 3,
    /// <summary>Answer an RDMSR or WRMSR exit (value, or a #GP).</summary>
    FulfillMsr = 4,
}

/// <summary>How the device half re-enters a vCPU.</summary>
public struct VmEntry
{
    /// <summary>The command.</summary>
    public VmEntryCommand Command;
    /// <summary>The answer of <see cref="VmEntryCommand.FulfillMmio"/>.</summary>
    public MmioAccess Mmio;
    /// <summary>The answer of <see cref="VmEntryCommand.FulfillInout"/>.</summary>
    public InoutAccess Inout;
    /// <summary>The RDMSR result of <see cref="VmEntryCommand.FulfillMsr"/>.</summary>
    public ulong MsrValue;
    /// <summary>For <see cref="VmEntryCommand.FulfillMsr"/>: the MSR does not exist (#GP).</summary>
    public bool MsrFault;

    /// <summary>A plain entry.</summary>
    public static VmEntry Default => default;

    /// <summary>Answers a device-memory request.</summary>
    public static VmEntry FulfillMmio(in MmioAccess answer) => new() { Command = VmEntryCommand.FulfillMmio, Mmio = answer };

    /// <summary>Answers a port request.</summary>
    public static VmEntry FulfillInout(in InoutAccess answer) => new() { Command = VmEntryCommand.FulfillInout, Inout = answer };

    /// <summary>Answers an MSR exit.</summary>
    public static VmEntry FulfillMsr(ulong value, bool fault = false) => new() { Command = VmEntryCommand.FulfillMsr, MsrValue = value, MsrFault = fault };

    /// <summary>Drops the instruction being emulated.</summary>
    public static VmEntry Discard => new() { Command = VmEntryCommand.DiscardInstruction };
}

/// <summary>The device half re-entered a vCPU with an answer that does not match its request:
/// a bug in the device half, reported to it rather than to the guest.</summary>
public sealed class VmEntryException(string message) : Exception(message);
