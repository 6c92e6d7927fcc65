// A backend vCPU built on VMX: the guest's state lives in its VMCS (and, for what the VMCS does
// not hold, in a save area), reached by field encoding through the VMCS API; VM entries go to
// a VMX processor (the software CPU, or hardware) and exits are decoded by the VMX layer. This
// is how bhyve's vmx.c drives the processor.
using System;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.X86;

namespace Hyve.Vmm.Vmx;

/// <summary>What the VMCS does not hold: the general registers but RSP, CR2, vector registers and
/// the MSRs the processor uses that VMX leaves to software.</summary>
public sealed class VmxGuestArea
{
    /// <summary>General registers (index 4, RSP, lives in the VMCS and is unused here).</summary>
    public ulong[] Gpr { get; } = new ulong[16];

    /// <summary>CR2.</summary>
    public ulong Cr2 { get; set; }

    /// <summary>XMM registers.</summary>
    public UInt128[] Xmm { get; } = new UInt128[16];

    /// <summary>MMX registers.</summary>
    public ulong[] Mm { get; } = new ulong[8];

    /// <summary>Bits 255:128 of YMM0-15 (their low halves are <see cref="Xmm"/>).</summary>
    public UInt128[] YmmHigh { get; } = new UInt128[16];

    /// <summary>XCR0, the XSAVE feature mask (x87 only after reset). The vmm sets it on an XSETBV
    /// exit, as VMX leaves XCR0 to software.</summary>
    public ulong Xcr0 { get; set; } = 1;

    /// <summary>STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE, TSC_AUX.</summary>
    public ulong Star, Lstar, Cstar, Fmask, KernelGsBase, TscAux;
}

/// <summary>A processor that runs VMX non-root operation: the software CPU (or hardware).</summary>
public interface IVmxProcessor
{
    /// <summary>VM entry (VMLAUNCH, or VMRESUME when <paramref name="resume"/>) with the current VMCS
    /// of <paramref name="state"/>: delivers the event in the entry interruption-information field
    /// (and clears its valid bit), runs the guest until a VM exit, and leaves the guest state and
    /// the exit information in the VMCS and <paramref name="area"/>.</summary>
    void Enter(VmxState state, VmxGuestArea area, bool resume);

    /// <summary>Makes the guest exit soon (an external-interrupt exit); callable from any thread.</summary>
    void RequestExit();

    /// <summary>Guest instructions retired so far (0 when the processor does not count them).</summary>
    long Retired => 0;

    /// <summary>Instructions the processor does not implement that the guest ran (each raised #UD).</summary>
    long Unimplemented => 0;

    /// <summary>The last of them, disassembled with its RIP, or null.</summary>
    string? LastUnimplemented => null;

    /// <summary>Tells the processor what CPUID reports, for a processor whose instruction set
    /// follows it (hardware's is fixed): it then runs exactly the extensions offered.</summary>
    void SetCpuid(CpuidPolicy policy)
    {
    }
}

/// <summary>A vCPU whose state is a VMCS.</summary>
public sealed class VmxVcpu : IBackendVcpu
{
    /// <summary>Primary processor-based control: interrupt-window exiting.</summary>
    public const uint InterruptWindowExiting = 1 << 2;

    /// <summary>Primary controls Hyve uses: HLT, CR8 loads and stores, unconditional I/O and (no MSR bitmap) every
    /// RDMSR/WRMSR exit; secondary controls active.</summary>
    public const uint PrimaryControls = (1 << 7) | Cr8LoadExiting | Cr8StoreExiting | (1 << 24) | (1u << 31);

    /// <summary>Primary processor-based controls 19 and 20: MOV to and from CR8 exit (the vmm
    /// owns the local APIC whose task priority CR8 is).</summary>
    public const uint Cr8LoadExiting = 1 << 19, Cr8StoreExiting = 1 << 20;

    /// <summary>Secondary controls: EPT and unrestricted guest.</summary>
    public const uint SecondaryControls = (1 << 1) | (1 << 7);

    /// <summary>Entry controls: load IA32_EFER and IA32_PAT.</summary>
    public const uint EntryControls = (1 << 15) | (1 << 14);

    private readonly IVmxProcessor _cpu;
    private readonly VmxState _state = new();
    private readonly VmxGuestArea _area = new();

    private static readonly uint[] Selectors = [VmcsField.GuestEsSelector, VmcsField.GuestCsSelector, VmcsField.GuestSsSelector, VmcsField.GuestDsSelector, VmcsField.GuestFsSelector, VmcsField.GuestGsSelector];

    /// <summary>A vCPU with its VMCS at <paramref name="vmcsAddress"/>, run by <paramref name="cpu"/>.</summary>
    public VmxVcpu(IVmxProcessor cpu, ulong vmcsAddress)
    {
        _cpu = cpu;
        Region = new VmcsRegion(vmcsAddress);
        Vmcs.Initialize(_state, Region);
        Vmcs.Clear(_state, Region);
        Vmcs.Load(_state, Region);
        Vmcs.Write(_state, VmcsField.PrimaryProcessorControls, PrimaryControls);
        Vmcs.Write(_state, VmcsField.SecondaryProcessorControls, SecondaryControls);
        Vmcs.Write(_state, VmcsField.EntryControls, EntryControls);
        Vmcs.Write(_state, VmcsField.VmcsLinkPointer, ulong.MaxValue);
        Vmcs.Write(_state, VmcsField.GuestRflags, Hyve.X86.Rflags.Fixed1);
        foreach (uint sel in Selectors)
            Vmcs.Write(_state, AccessRightsField(sel), 0x1_0000); // unusable until set
    }

    /// <summary>The VMCS.</summary>
    public VmcsRegion Region { get; }

    /// <summary>The VMX state (current VMCS, launch state).</summary>
    public VmxState State => _state;

    /// <summary>The save area.</summary>
    public VmxGuestArea Area => _area;

    private static uint Index(Register segment) => (uint)(segment - Register.ES);

    private static uint AccessRightsField(uint selectorField) => VmcsField.GuestEsAccessRights + (selectorField - VmcsField.GuestEsSelector);

    /// <inheritdoc/>
    public ulong GetGpr(int n) => n == 4 ? Vmcs.Read(_state, VmcsField.GuestRsp) : _area.Gpr[n];

    /// <inheritdoc/>
    public void SetGpr(int n, ulong value)
    {
        if (n == 4)
            Vmcs.Write(_state, VmcsField.GuestRsp, value);
        else
            _area.Gpr[n] = value;
    }

    /// <inheritdoc/>
    public ulong Rip
    {
        get => Vmcs.Read(_state, VmcsField.GuestRip);
        set => Vmcs.Write(_state, VmcsField.GuestRip, value);
    }

    /// <inheritdoc/>
    public ulong Rflags
    {
        get => Vmcs.Read(_state, VmcsField.GuestRflags);
        set => Vmcs.Write(_state, VmcsField.GuestRflags, value);
    }

    /// <inheritdoc/>
    public Segment GetSegment(Register segment)
    {
        uint i = Index(segment) * 2;
        return new Segment((ushort)Vmcs.Read(_state, VmcsField.GuestEsSelector + i), Vmcs.Read(_state, VmcsField.GuestEsBase + i),
            (uint)Vmcs.Read(_state, VmcsField.GuestEsLimit + i), (uint)Vmcs.Read(_state, VmcsField.GuestEsAccessRights + i));
    }

    /// <inheritdoc/>
    public void SetSegment(Register segment, in Segment value)
    {
        uint i = Index(segment) * 2;
        Vmcs.Write(_state, VmcsField.GuestEsSelector + i, value.Selector);
        Vmcs.Write(_state, VmcsField.GuestEsBase + i, value.Base);
        Vmcs.Write(_state, VmcsField.GuestEsLimit + i, value.Limit);
        Vmcs.Write(_state, VmcsField.GuestEsAccessRights + i, value.Access);
    }

    /// <inheritdoc/>
    public ControlState Control
    {
        get => new(Vmcs.Read(_state, VmcsField.GuestCr0), _area.Cr2, Vmcs.Read(_state, VmcsField.GuestCr3),
            Vmcs.Read(_state, VmcsField.GuestCr4), Vmcs.Read(_state, VmcsField.GuestEfer));
        set
        {
            // The guest owns CR0 and CR4 outright (no host-owned bits): masks zero, shadows equal.
            Vmcs.Write(_state, VmcsField.GuestCr0, value.Cr0);
            Vmcs.Write(_state, VmcsField.Cr0ReadShadow, value.Cr0);
            _area.Cr2 = value.Cr2;
            Vmcs.Write(_state, VmcsField.GuestCr3, value.Cr3);
            Vmcs.Write(_state, VmcsField.GuestCr4, value.Cr4);
            Vmcs.Write(_state, VmcsField.Cr4ReadShadow, value.Cr4);
            Vmcs.Write(_state, VmcsField.GuestEfer, value.Efer);
            uint entry = (uint)Vmcs.Read(_state, VmcsField.EntryControls);
            Vmcs.Write(_state, VmcsField.EntryControls, VmxConversions.EntryControlsFor(entry, value.Efer));
        }
    }

    /// <inheritdoc/>
    public TableRegister Gdtr
    {
        get => new(Vmcs.Read(_state, VmcsField.GuestGdtrBase), (ushort)Vmcs.Read(_state, VmcsField.GuestGdtrLimit));
        set
        {
            Vmcs.Write(_state, VmcsField.GuestGdtrBase, value.Base);
            Vmcs.Write(_state, VmcsField.GuestGdtrLimit, value.Limit);
        }
    }

    /// <inheritdoc/>
    public TableRegister Idtr
    {
        get => new(Vmcs.Read(_state, VmcsField.GuestIdtrBase), (ushort)Vmcs.Read(_state, VmcsField.GuestIdtrLimit));
        set
        {
            Vmcs.Write(_state, VmcsField.GuestIdtrBase, value.Base);
            Vmcs.Write(_state, VmcsField.GuestIdtrLimit, value.Limit);
        }
    }

    /// <inheritdoc/>
    public UInt128 GetXmm(int n) => _area.Xmm[n];

    /// <inheritdoc/>
    public ulong Xcr0 => _area.Xcr0;

    /// <inheritdoc/>
    public void SetXcr0(ulong value) => _area.Xcr0 = value;

    /// <inheritdoc/>
    public bool TryGetSystemSelector(bool ldtr, out ushort selector)
    {
        selector = (ushort)Vmcs.Read(_state, ldtr ? VmcsField.GuestLdtrSelector : VmcsField.GuestTrSelector);
        return true;
    }

    /// <inheritdoc/>
    public bool TryGetYmmHigh(int n, out UInt128 value)
    {
        value = _area.YmmHigh[n];
        return true;
    }

    /// <inheritdoc/>
    public bool TrySetYmmHigh(int n, UInt128 value)
    {
        _area.YmmHigh[n] = value;
        return true;
    }

    /// <inheritdoc/>
    public void SetXmm(int n, UInt128 value) => _area.Xmm[n] = value;

    /// <inheritdoc/>
    public ulong GetMm(int n) => _area.Mm[n];

    /// <inheritdoc/>
    public void SetMm(int n, ulong value) => _area.Mm[n] = value;

    /// <inheritdoc/>
    public bool TryGetMsr(uint msr, out ulong value)
    {
        switch (msr)
        {
            case Msr.SysenterCs: value = Vmcs.Read(_state, VmcsField.GuestSysenterCs); return true;
            case Msr.SysenterEsp: value = Vmcs.Read(_state, VmcsField.GuestSysenterEsp); return true;
            case Msr.SysenterEip: value = Vmcs.Read(_state, VmcsField.GuestSysenterEip); return true;
            case Msr.FsBase: value = Vmcs.Read(_state, VmcsField.GuestFsBase); return true;
            case Msr.GsBase: value = Vmcs.Read(_state, VmcsField.GuestGsBase); return true;
            case Msr.Star: value = _area.Star; return true;
            case Msr.Lstar: value = _area.Lstar; return true;
            case Msr.Cstar: value = _area.Cstar; return true;
            case Msr.Fmask: value = _area.Fmask; return true;
            case Msr.KernelGsBase: value = _area.KernelGsBase; return true;
            case Msr.TscAux: value = _area.TscAux; return true;
            default: value = 0; return false;
        }
    }

    /// <inheritdoc/>
    public bool TrySetMsr(uint msr, ulong value)
    {
        switch (msr)
        {
            case Msr.SysenterCs: Vmcs.Write(_state, VmcsField.GuestSysenterCs, value & 0xFFFF_FFFF); return true;
            case Msr.SysenterEsp: Vmcs.Write(_state, VmcsField.GuestSysenterEsp, value); return true;
            case Msr.SysenterEip: Vmcs.Write(_state, VmcsField.GuestSysenterEip, value); return true;
            case Msr.FsBase: Vmcs.Write(_state, VmcsField.GuestFsBase, value); return true;
            case Msr.GsBase: Vmcs.Write(_state, VmcsField.GuestGsBase, value); return true;
            case Msr.Star: _area.Star = value; return true;
            case Msr.Lstar: _area.Lstar = value; return true;
            case Msr.Cstar: _area.Cstar = value; return true;
            case Msr.Fmask: _area.Fmask = value; return true;
            case Msr.KernelGsBase: _area.KernelGsBase = value; return true;
            case Msr.TscAux: _area.TscAux = value; return true;
            default: return false;
        }
    }

    /// <inheritdoc/>
    public long Retired => _cpu.Retired;

    /// <inheritdoc/>
    public long Unimplemented => _cpu.Unimplemented;

    /// <inheritdoc/>
    public string? LastUnimplemented => _cpu.LastUnimplemented;

    /// <inheritdoc/>
    public bool InterruptWindowOpen =>
        Interruptibility.InterruptWindowOpen((uint)Vmcs.Read(_state, VmcsField.GuestInterruptibility), Rflags) && !EventPending;

    /// <inheritdoc/>
    public bool NmiWindowOpen => Interruptibility.NmiWindowOpen((uint)Vmcs.Read(_state, VmcsField.GuestInterruptibility)) && !EventPending;

    private bool EventPending => (Vmcs.Read(_state, VmcsField.EntryInterruptionInfo) & (1UL << 31)) != 0;

    /// <inheritdoc/>
    public void Inject(in Event e) => VmxExits.Inject(_state, in e);

    /// <inheritdoc/>
    public void RequestInterruptWindow(bool on)
    {
        uint c = (uint)Vmcs.Read(_state, VmcsField.PrimaryProcessorControls);
        uint n = on ? c | InterruptWindowExiting : c & ~InterruptWindowExiting;
        if (n != c)
            Vmcs.Write(_state, VmcsField.PrimaryProcessorControls, n);
    }

    /// <inheritdoc/>
    public void RequestExit() => _cpu.RequestExit();

    /// <inheritdoc/>
    public void SetCpuid(CpuidPolicy policy, int apicId) => _cpu.SetCpuid(policy);

    /// <summary>Must be wired by the VM: its guest memory, for telling RAM from device memory.</summary>
    public IGuestMemory? Memory { get; set; }

    /// <summary>Pin-based control: activate the VMX-preemption timer.</summary>
    public const uint PreemptionTimerControl = 1 << 6;

    private uint _quantum;

    /// <inheritdoc/>
    /// <remarks>Through the VMX-preemption timer: the software CPU counts it in retired instructions.</remarks>
    public uint Quantum
    {
        get => _quantum;
        set
        {
            if (value == _quantum)
                return;
            _quantum = value;
            ulong pin = Vmcs.Read(_state, VmcsField.PinBasedControls);
            Vmcs.Write(_state, VmcsField.PinBasedControls, value != 0 ? pin | PreemptionTimerControl : pin & ~(ulong)PreemptionTimerControl);
            Vmcs.Write(_state, VmcsField.PreemptionTimerValue, value);
        }
    }

    /// <inheritdoc/>
    public BackendExit Run()
    {
        if (_quantum != 0)
            Vmcs.Write(_state, VmcsField.PreemptionTimerValue, _quantum);
        bool resume = _state.IsLaunched(Region);
        Vmcs.Enter(_state, resume);
        _cpu.Enter(_state, _area, resume);
        BackendExit exit = VmxExits.Decode(_state, Memory ?? throw new InvalidOperationException("VmxVcpu.Memory is not set"));
        // An exit that interrupted an event's delivery: deliver it again on the next entry.
        if (VmxExits.InterruptedDelivery(_state) is { } again)
            VmxExits.Inject(_state, in again);
        // VMX leaves RIP on HLT and PAUSE; the backend contract has it past them.
        if (exit.Kind is BackendExitKind.Hlt or BackendExitKind.Pause)
            Rip += exit.InstructionLength;
        return exit;
    }
}
