// The software CPU as a VMX processor: VM entry loads the guest state from the VMCS, delivers
// the injected event, interprets guest code until something exits (port I/O, HLT, CPUID,
// RDMSR/WRMSR, an access to memory that is not RAM, an interrupt window, a request from the
// vmm), then stores the guest state and the exit information back, as hardware would. It runs
// real, virtual-8086, protected, compatibility and 64-bit mode with segment checks, paging and event delivery
// through the IDT, gates and task switches, and the general-purpose, x87, MMX and SSE to SSE4.2
// instructions (the partial files beside this one, one per group) of the extensions the vmm's
// CPUID reports (CpuFeatures). An instruction it does not implement raises #UD in the guest,
// counted (docs/isa.md lists what is missing).
using Hyve.Vmm;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

/// <summary>A VMX processor that interprets guest code.</summary>
public sealed partial class SoftProcessor : IVmxProcessor
{
    private const int Batch = 1024;

    private readonly GuestMemory _memory;
    private readonly VmClock _clock;
    private volatile bool _exitRequested;

    // Guest state while running (loaded at entry, stored at exit).
    private VmcsRegion _vmcs = null!;
    private VmxGuestArea _area = null!;
    private ulong[] _gpr = null!;
    private ulong _rip;
    private readonly Segment[] _seg = new Segment[6];
    private ulong _cr0, _cr3, _cr4, _efer;
    private ulong _gdtrBase, _idtrBase;
    private uint _idtrLimit;
    private uint _interruptibility;
    private PagingState _paging;
    private Bitness _bitness;
    private ulong _ipMask;
    private Instruction _insn;

    /// <summary>A processor over <paramref name="memory"/> whose retired instructions move <paramref name="clock"/>
    /// (one nanosecond each).</summary>
    public SoftProcessor(GuestMemory memory, VmClock clock)
    {
        _memory = memory;
        _clock = clock;
    }

    /// <summary>Instructions retired.</summary>
    public long Retired { get; private set; }

    /// <inheritdoc/>
    public void RequestExit() => _exitRequested = true;

    /// <inheritdoc/>
    public void Enter(VmxState state, VmxGuestArea area, bool resume)
    {
        _vmcs = state.Current ?? throw new VmmPanicException("VM entry without a current VMCS");
        _area = area;
        _gpr = area.Gpr;
        Load();
        _vmcs.Store(VmcsField.IdtVectoringInfo, 0);
        uint info = (uint)_vmcs.Load(VmcsField.EntryInterruptionInfo);
        _exitPending = false;
        if ((info & (1u << 31)) != 0)
        {
            _vmcs.Store(VmcsField.EntryInterruptionInfo, info & ~(1u << 31));
            int type = (int)((info >> 8) & 7);
            EventSource source = type switch
            {
                2 => EventSource.Nmi,
                3 => EventSource.Exception,
                4 => EventSource.Software,
                5 => EventSource.PrivilegedSoftware,
                6 => EventSource.SoftwareException,
                _ => EventSource.External,
            };
            // Software events return past their instruction (the entry instruction length).
            ulong returnRip = type is 4 or 5 or 6 ? _rip + _vmcs.Load(VmcsField.EntryInstructionLength) : _rip;
            Event((byte)info, source, (info & (1 << 11)) != 0, (uint)_vmcs.Load(VmcsField.EntryExceptionErrorCode), returnRip, injected: true);
            if (_exitPending)
            {
                Store();
                return;
            }
        }
        Run();
        Store();
    }

    private void Run()
    {
        // The controls do not change while the guest runs: read the one that matters once.
        bool windowExiting = (_vmcs.Load(VmcsField.PrimaryProcessorControls) & VmxVcpu.InterruptWindowExiting) != 0;
        // The VMX-preemption timer, counted here in retired instructions (checked per batch).
        long slice = (_vmcs.Load(VmcsField.PinBasedControls) & VmxVcpu.PreemptionTimerControl) != 0
            ? (long)_vmcs.Load(VmcsField.PreemptionTimerValue) : long.MaxValue;
        // Instructions retired before an exit count toward the next batch of virtual time, so a
        // loop that exits every few instructions (polling a port) still moves the clock.
        int budget = _budget;
        try
        {
            RunLoop(windowExiting, slice, ref budget);
        }
        finally
        {
            _budget = budget;
        }
    }

    private int _budget = Batch;

    // Virtual time a port access handed to the vmm takes, in nanoseconds: about an I/O cycle to
    // a PC's chipset. A guest that waits by polling a timer port (the ACPI PM timer, port 0x61)
    // then sees time pass per access as on hardware, not by one instruction's nanosecond while
    // each exit costs the host far more (OVMF's waits took minutes that way).
    private const int PortAccessTime = 1000;

    private void RunLoop(bool windowExiting, long slice, ref int budget)
    {
        while (budget <= 0)
        {
            budget += Batch;
            _clock.Advance(Batch);
        }
        while (true)
        {
            if (_exitRequested)
            {
                _exitRequested = false;
                Exit(VmxExitReason.ExternalInterrupt);
                return;
            }
            if (windowExiting && Interruptibility.InterruptWindowOpen(_interruptibility, _flags))
            {
                Exit(VmxExitReason.InterruptWindow);
                return;
            }
            bool shadow = (_interruptibility & (Interruptibility.Sti | Interruptibility.MovSs)) != 0;
            _interruptibility &= ~(Interruptibility.Sti | Interruptibility.MovSs); // the shadow lasts one instruction
            // TF at the start of an instruction traps after it completes (single step).
            bool singleStep = (_flags & Rflags.TF) != 0; // TF is never deferred
            int retired = 1;
            int block;
            if (!shadow && !singleStep && (block = FindBlock(Linear(Register.CS, _rip))) >= 0)
            {
                // Nothing can stop a block between its instructions (see SoftProcessor.Blocks).
                retired = RunBlock(block);
                if (_exitPending)
                {
                    Retired += retired;
                    budget -= retired;
                    return;
                }
            }
            else if (!Step())
            {
                if (_exitPending)
                {
                    if (_vmcs.Load(VmcsField.ExitReason) == VmxExitReason.IoInstruction)
                        budget -= PortAccessTime; // counted into the next batch of virtual time
                    return;
                }
            }
            else if (singleStep)
            {
                _dr[6] |= 0x4000; // DR6.BS
                Event(ExceptionVector.DB, EventSource.Exception, false, 0, _rip, injected: false);
                if (_exitPending)
                    return;
            }
            Retired += retired;
            budget -= retired;
            while (budget <= 0)
            {
                budget += Batch;
                _clock.Advance(Batch); // may fire timers, which kick the vCPU (RequestExit)
                if ((slice -= Batch) <= 0)
                {
                    Exit(VmxExitReason.PreemptionTimer);
                    return;
                }
            }
        }
    }

    private void Load()
    {
        _gpr[4] = _vmcs.Load(VmcsField.GuestRsp);
        _rip = _vmcs.Load(VmcsField.GuestRip);
        _lazy = Lazy.None;
        _flags = _vmcs.Load(VmcsField.GuestRflags);
        for (uint i = 0; i < 6; i++)
        {
            _seg[i] = new Segment((ushort)_vmcs.Load(VmcsField.GuestEsSelector + 2 * i), _vmcs.Load(VmcsField.GuestEsBase + 2 * i),
                (uint)_vmcs.Load(VmcsField.GuestEsLimit + 2 * i), (uint)_vmcs.Load(VmcsField.GuestEsAccessRights + 2 * i));
        }
        _cr0 = _vmcs.Load(VmcsField.GuestCr0);
        _cr3 = _vmcs.Load(VmcsField.GuestCr3);
        _cr4 = _vmcs.Load(VmcsField.GuestCr4);
        uint entry = (uint)_vmcs.Load(VmcsField.EntryControls);
        _efer = VmxConversions.EferFor(_vmcs.Load(VmcsField.GuestEfer), entry);
        _gdtrBase = _vmcs.Load(VmcsField.GuestGdtrBase);
        _gdtrLimit = (ushort)_vmcs.Load(VmcsField.GuestGdtrLimit);
        _idtrBase = _vmcs.Load(VmcsField.GuestIdtrBase);
        _idtrLimit = (uint)_vmcs.Load(VmcsField.GuestIdtrLimit);
        _interruptibility = (uint)_vmcs.Load(VmcsField.GuestInterruptibility);
        _tr = new Segment((ushort)_vmcs.Load(VmcsField.GuestTrSelector), _vmcs.Load(VmcsField.GuestTrBase),
            (uint)_vmcs.Load(VmcsField.GuestTrLimit), (uint)_vmcs.Load(VmcsField.GuestTrAccessRights));
        _ldtr = new Segment((ushort)_vmcs.Load(VmcsField.GuestLdtrSelector), _vmcs.Load(VmcsField.GuestLdtrBase),
            (uint)_vmcs.Load(VmcsField.GuestLdtrLimit), (uint)_vmcs.Load(VmcsField.GuestLdtrAccessRights));
        Modes();
    }

    private void Modes()
    {
        _v86 = (_cr0 & PagingState.Cr0PE) != 0 && (_efer & PagingState.EferLMA) == 0 && (_flags & FlagVm) != 0;
        _paging = new PagingState(_cr0, _cr3, _cr4, _efer, _seg[2].Dpl);
        _bitness = CodeSize.Of(in _paging, in _seg[1]);
        _ipMask = CodeSize.IpMask(_bitness);
        TlbCheck();
    }

    private void Store()
    {
        _vmcs.Store(VmcsField.GuestRsp, _gpr[4]);
        _vmcs.Store(VmcsField.GuestRip, _rip);
        _vmcs.Store(VmcsField.GuestRflags, Flags);
        for (uint i = 0; i < 6; i++)
        {
            _vmcs.Store(VmcsField.GuestEsSelector + 2 * i, _seg[i].Selector);
            _vmcs.Store(VmcsField.GuestEsBase + 2 * i, _seg[i].Base);
            _vmcs.Store(VmcsField.GuestEsLimit + 2 * i, _seg[i].Limit);
            _vmcs.Store(VmcsField.GuestEsAccessRights + 2 * i, _seg[i].Access);
        }
        _vmcs.Store(VmcsField.GuestInterruptibility, _interruptibility);
        _vmcs.Store(VmcsField.GuestTrSelector, _tr.Selector);
        _vmcs.Store(VmcsField.GuestTrBase, _tr.Base);
        _vmcs.Store(VmcsField.GuestTrLimit, _tr.Limit);
        _vmcs.Store(VmcsField.GuestTrAccessRights, _tr.Access);
        _vmcs.Store(VmcsField.GuestLdtrSelector, _ldtr.Selector);
        _vmcs.Store(VmcsField.GuestLdtrBase, _ldtr.Base);
        _vmcs.Store(VmcsField.GuestLdtrLimit, _ldtr.Limit);
        _vmcs.Store(VmcsField.GuestLdtrAccessRights, _ldtr.Access);
        StoreSystem();
    }

    private void Exit(uint reason, ulong qualification = 0, int length = 0)
    {
        _exitPending = true;
        _vmcs.Store(VmcsField.ExitReason, reason);
        _vmcs.Store(VmcsField.ExitQualification, qualification);
        _vmcs.Store(VmcsField.ExitInstructionLength, (ulong)length);
    }

    // An instruction this processor does not implement: #UD, as a processor without the feature
    // raises it (delivered through the guest's IDT, or an exit where the exception bitmap asks),
    // counted with the last one kept (decoded, formatted only when asked) for --stats and the
    // end of a run: a guest may take this path in a loop, so it allocates nothing.
    private bool RaiseUnimplemented()
    {
        Unimplemented++;
        _lastUnimplemented = _insn;
        _lastUnimplementedRip = _rip;
        return Raise(ExceptionVector.UD);
    }

    private CpuFeatures _features = CpuFeatures.All;
    private ulong _random = 0x9E37_79B9_7F4A_7C15;

    /// <summary>The seed of RDRAND's and RDSEED's values: the same seed gives the same values in
    /// the same order, so a run in virtual time repeats exactly.</summary>
    public ulong RandomSeed
    {
        set => _random = value;
    }

    // SplitMix64: a full-period 64-bit sequence with well-mixed outputs.
    private ulong NextRandom()
    {
        ulong z = _random += 0x9E37_79B9_7F4A_7C15;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB;
        return z ^ (z >> 31);
    }

    /// <summary>The extensions this processor runs (all it implements until the vmm's CPUID is
    /// given through <see cref="SetCpuid"/>); the others raise #UD.</summary>
    public CpuFeatures Features
    {
        get => _features;
        set => _features = value;
    }

    /// <inheritdoc/>
    public void SetCpuid(CpuidPolicy policy) => _features = CpuFeatureBits.From(policy);

    private Instruction _lastUnimplemented;
    private ulong _lastUnimplementedRip;

    /// <inheritdoc/>
    public long Unimplemented { get; private set; }

    /// <inheritdoc/>
    public string? LastUnimplemented => Unimplemented == 0 ? null
        : $"{Formatter.Format(in _lastUnimplemented, _lastUnimplementedRip)} at 0x{_lastUnimplementedRip:X}";

    // An exception the exception bitmap selects exits instead of being delivered, with the
    // VM-exit interruption information a processor would report.
    private bool ExitException(byte vector, uint errorCode = 0, bool hasError = false)
    {
        _vmcs.Store(VmcsField.ExitInterruptionInfo, vector | (3u << 8) | (hasError ? 1u << 11 : 0) | (1u << 31));
        _vmcs.Store(VmcsField.ExitInterruptionErrorCode, errorCode);
        Exit(VmxExitReason.ExceptionOrNmi);
        return false;
    }

}
