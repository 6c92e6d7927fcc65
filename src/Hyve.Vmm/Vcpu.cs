// A vCPU and its run loop: entry actions, run-state work (INIT/SIPI, halt), event delivery,
// entering the backend, and dispatching its exits, so the device half sees single requests and
// answers them on the next entry.
using System;
using System.Threading;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Devices;
using Hyve.Vmm.Emulation;
using Hyve.X86;

namespace Hyve.Vmm;

/// <summary>A vCPU's run state (bhyve's Run/Init/Halt).</summary>
public enum RunState : byte
{
    /// <summary>Running guest code.</summary>
    Run,
    /// <summary>Parked after INIT, waiting for a startup IPI.</summary>
    Init,
    /// <summary>Halted until an interrupt (or NMI, INIT) wakes it.</summary>
    Halt,
}

/// <summary>The interrupts a vCPU's local APIC has for it.</summary>
public interface IInterruptSource
{
    /// <summary>Whether an NMI is pending.</summary>
    bool NmiPending { get; }

    /// <summary>The NMI was delivered.</summary>
    void AcceptNmi();

    /// <summary>The highest-priority interrupt the APIC would deliver now, or -1.</summary>
    int PendingInterrupt { get; }

    /// <summary>Vector <paramref name="vector"/> was delivered (IRR to ISR).</summary>
    void AcceptInterrupt(int vector);
}

/// <summary>A vCPU. <see cref="Run"/> is the only way the device half drives it.</summary>
public sealed class Vcpu
{
    private const int ParkWaitMs = 50;

    private readonly Vm _vm;
    private readonly IBackendVcpu _cpu;
    private readonly Vie _vie = new();
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly long[] _exits = new long[24];
    private readonly long[] _backendExits = new long[Enum.GetValues<BackendExitKind>().Length];
    private int _pendInit;
    private int _pendSipi;
    private byte _sipiVector;
    private RunState _state;
    // An MSR exit waiting for the device half.
    private bool _msrPending;
    private bool _msrWrite;
    private uint _msr;
    private ulong _msrValue;
    private byte _msrLength;
    // A decoded access (from a backend that decodes, KVM) being answered piece by piece: each
    // piece goes to the vmm's devices, then as a single request to the device half.
    private DecodedAccess _access;
    private bool _accessActive;
    private bool _accessPort;
    private bool _accessWaiting;
    private int _accessOffset;
    private int _pieceSize;
    private ulong _pieceData;
    private long _accessRequests;

    internal Vcpu(Vm vm, int id, IBackendVcpu cpu)
    {
        _vm = vm;
        Id = id;
        _cpu = cpu;
        Msrs = new MsrFile(bootstrap: id == 0);
        Apic = new LocalApic(id, vm.ApicBus, vm.Clock, Kick);
        // A backend that keeps the guest's TSC itself (KVM) is asked; otherwise it follows the clock.
        Apic.TscAt = now => _cpu.TryGetMsr(Hyve.Vmm.Msr.Tsc, out ulong tsc) ? tsc : Msrs.Tsc(now);
        Apic.TscHz = vm.Cpuid.TscHz;
        Msrs.Apic = Apic;
        Interrupts = Apic;
        _devices = new VcpuDevices(this);
        _state = id == 0 ? RunState.Run : RunState.Init;
    }

    private readonly VcpuDevices _devices;

    /// <summary>This vCPU's local APIC.</summary>
    public LocalApic Apic { get; }

    // The vmm's devices as this vCPU sees them: its own APIC page first (wherever IA32_APIC_BASE
    // puts it, while the APIC is enabled and in xAPIC mode), then the VM's.
    private sealed class VcpuDevices(Vcpu vcpu) : IVmmDevices
    {
        private bool OwnPage(ulong gpa)
        {
            ulong b = vcpu.Msrs.ApicBase;
            return (b & 0x800) != 0 && (b & 0x400) == 0 && (gpa & ~0xFFFUL) == (b & 0xF_FFFF_FFFF_F000UL);
        }

        public bool TryRead(ulong gpa, int bytes, out ulong value)
        {
            if (OwnPage(gpa))
            {
                value = vcpu.Apic.Read(gpa & 0xFFF, bytes);
                return true;
            }
            return vcpu._vm.Devices.TryRead(gpa, bytes, out value);
        }

        public bool TryWrite(ulong gpa, int bytes, ulong value)
        {
            if (OwnPage(gpa))
            {
                vcpu.Apic.Write(gpa & 0xFFF, bytes, value);
                return true;
            }
            return vcpu._vm.Devices.TryWrite(gpa, bytes, value);
        }

        public bool TryIn(ushort port, int bytes, out uint value) => vcpu._vm.Devices.TryIn(port, bytes, out value);

        public bool TryOut(ushort port, int bytes, uint value) => vcpu._vm.Devices.TryOut(port, bytes, value);
    }

    /// <summary>vCPU number (its APIC ID).</summary>
    public int Id { get; }

    /// <summary>The backend's vCPU (registers, segments, control state).</summary>
    public IBackendVcpu Cpu => _cpu;

    /// <summary>The vmm's MSRs of this vCPU.</summary>
    public MsrFile Msrs { get; }

    /// <summary>The local APIC's interrupts for this vCPU, once there is one.</summary>
    public IInterruptSource? Interrupts { get; set; }

    /// <summary>The run state.</summary>
    public RunState State => _state;

    /// <summary>Exits returned to the device half, by <see cref="VmExitCode"/>.</summary>
    public ReadOnlySpan<long> ExitCounts => _exits;

    /// <summary>Backend exits, by <see cref="BackendExitKind"/>.</summary>
    public ReadOnlySpan<long> BackendExitCounts => _backendExits;

    /// <summary>Device-half requests made by instruction emulation.</summary>
    public long Requests => _vie.Requests + _accessRequests;

    /// <summary>Instruction fetches from memory that is not RAM, each answered with #UD.</summary>
    public long DeviceFetches { get; private set; }

    /// <summary>When set, every decoded device-memory access (KVM) is emulated a second time by
    /// the vmm and the two results compared (<c>--verify-emulation</c>).</summary>
    public Verification.AccessVerifier? Verifier { get; set; }

    /// <summary>Sets the run state (for reset and snapshot); clears pending INIT and SIPI.</summary>
    public void SetState(RunState state)
    {
        Volatile.Write(ref _pendInit, 0);
        Volatile.Write(ref _pendSipi, 0);
        _state = state;
        Kick();
    }

    /// <summary>Records an INIT: the vCPU resets and parks at its next run-state check. A pending
    /// startup IPI is dropped.</summary>
    public void RequestInit()
    {
        Volatile.Write(ref _pendSipi, 0);
        Volatile.Write(ref _pendInit, 1);
        Kick();
    }

    /// <summary>Records a startup IPI; it takes effect only on a vCPU parked in (or about to enter)
    /// Init. The first one wins: by the time a second arrives the processor has started.</summary>
    public void RequestSipi(byte vector)
    {
        if (_state != RunState.Init && Volatile.Read(ref _pendInit) == 0)
            return; // a running vCPU ignores SIPI
        if (Volatile.Read(ref _pendSipi) != 0)
            return;
        _sipiVector = vector;
        Volatile.Write(ref _pendSipi, 1);
        Kick();
    }

    /// <summary>Wakes the vCPU: out of a halt or park, and out of the backend's run.</summary>
    public void Kick()
    {
        _wake.Set();
        _cpu.RequestExit();
    }

    /// <summary>
    /// Enters the vCPU with <paramref name="entry"/> (an answer to the previous exit, or a plain
    /// entry) and runs until the device half is needed. A fulfilment that does not match the
    /// pending request throws <see cref="VmEntryException"/>.
    /// </summary>
    public VmExit Run(in VmEntry entry)
    {
        VmExit exit = default;
        switch (entry.Command)
        {
            case VmEntryCommand.FulfillMmio when _accessWaiting:
            case VmEntryCommand.FulfillInout when _accessWaiting:
                FulfillAccess(in entry);
                break;
            case VmEntryCommand.FulfillMmio:
                if (!_vie.Active || _vie.PendingIsInout)
                    throw new VmEntryException($"vCPU {Id}: no device-memory request is pending");
                if (_vie.Fulfill(in entry.Mmio) is var mr && mr != FulfillResult.Ok)
                    throw Mismatch(entry.Mmio.ToString(), mr);
                break;
            case VmEntryCommand.FulfillInout:
                if (!_vie.Active || !_vie.PendingIsInout)
                    throw new VmEntryException($"vCPU {Id}: no port request is pending");
                if (_vie.FulfillInout(in entry.Inout) is var ir && ir != FulfillResult.Ok)
                    throw Mismatch(entry.Inout.ToString(), ir);
                break;
            case VmEntryCommand.DiscardInstruction:
                _vie.Reset();
                _msrPending = false;
                DiscardAccess();
                break;
            case VmEntryCommand.FulfillMsr:
                if (!_msrPending)
                    throw new VmEntryException($"vCPU {Id}: no MSR exit is pending");
                _msrPending = false;
                _cpu.CompleteMsr(!_msrWrite, _msrLength, entry.MsrFault, entry.MsrValue);
                break;
            default:
                if (_msrPending)
                    return MsrExit();
                if (_accessWaiting)
                    return Count(AccessRequest());
                break;
        }

        while (true)
        {
            if (_vm.Suspended != SuspendReason.None)
                return Count(Suspended(_vm.Suspended));

            if (_vie.Active && Emulate(ref exit))
                return Count(exit);
            if (_vie.Active)
                continue;
            if (_accessActive && Access(ref exit))
                return Count(exit);

            if (!RunStateWork(ref exit))
                return Count(exit);
            if (_state != RunState.Run)
                continue;

            DeliverEvents();
            BackendExit be = _cpu.Run();
            _backendExits[(int)be.Kind]++;
            if (Dispatch(in be, ref exit))
                return Count(exit);
        }
    }

    // Built only when the answer is wrong: the message would cost an allocation per entry.
    private VmEntryException Mismatch(string answer, FulfillResult r) =>
        new($"vCPU {Id}: the answer {answer} does not match the pending request ({r})");

    private VmExit Count(in VmExit exit)
    {
        _exits[(int)exit.Code]++;
        return exit;
    }

    private VmExit Suspended(SuspendReason reason) => new() { Code = VmExitCode.Suspended, Suspend = reason, Rip = _cpu.Rip };

    private PagingState Paging()
    {
        ControlState c = _cpu.Control;
        return new PagingState(c.Cr0, c.Cr3, c.Cr4, c.Efer, _cpu.GetSegment(Register.SS).Dpl, _vm.Cpuid.PhysicalAddressBits);
    }

    // One emulation pass. True when the device half is needed (exit filled in).
    private bool Emulate(ref VmExit exit)
    {
        VieStatus st = _vie.Emulate(_cpu, _devices, _vm.Memory);
        switch (st)
        {
            case VieStatus.NeedsDevice:
                exit.Rip = _cpu.Rip;
                if (_vie.PendingIsInout)
                {
                    exit.Code = VmExitCode.Inout;
                    exit.Inout = _vie.PendingInout;
                }
                else
                {
                    exit.Code = VmExitCode.Mmio;
                    exit.Mmio = _vie.Pending;
                }
                return true;
            case VieStatus.Repeat:
                // The next element runs at once unless an interrupt waits: then the guest takes it
                // and re-executes the instruction, as on hardware.
                if (Interrupts is { } src && (src.NmiPending || (src.PendingInterrupt >= 0 && _cpu.InterruptWindowOpen)))
                    _vie.Reset();
                return false;
            case VieStatus.Fault:
                GuestFault f = _vie.Fault;
                if (f.Vector == ExceptionVector.PF)
                    _cpu.Control = _cpu.Control with { Cr2 = f.Address };
                _cpu.Inject(new Event(f.Vector, EventType.HardwareException, f.ErrorCode, f.HasErrorCode));
                return false;
            case VieStatus.Fallback:
                exit.Code = VmExitCode.InstEmul;
                exit.Rip = _cpu.Rip;
                ReadOnlySpan<byte> bytes = _vie.InstructionBytes;
                bytes.CopyTo(exit.InstructionBytes);
                exit.InstructionLength = (byte)bytes.Length;
                _vie.Reset();
                return true;
            default:
                return false;
        }
    }

    // INIT, SIPI, halt. False when the device half should hear about it (exit filled in).
    private bool RunStateWork(ref VmExit exit)
    {
        if (Interlocked.Exchange(ref _pendInit, 0) != 0)
        {
            InitReset();
            _state = RunState.Init;
        }
        if (_state == RunState.Init)
        {
            if (Interlocked.Exchange(ref _pendSipi, 0) != 0)
            {
                StartAt(_sipiVector);
                _state = RunState.Run;
                return true;
            }
            // Parked: wait a little for a SIPI, then let the device half look around.
            _wake.Reset();
            if (Volatile.Read(ref _pendSipi) == 0 && Volatile.Read(ref _pendInit) == 0 && _vm.Suspended == SuspendReason.None)
                Park();
            if (Volatile.Read(ref _pendSipi) == 0 && Volatile.Read(ref _pendInit) == 0)
            {
                exit = new VmExit { Code = VmExitCode.RunState, Rip = _cpu.Rip };
                return false;
            }
            return true;
        }
        if (_state == RunState.Halt)
        {
            if (CanWake())
            {
                _state = RunState.Run;
                return true;
            }
            // Nothing to wake it yet: move virtual time to the next deadline, or wait for one.
            _wake.Reset();
            if (CanWake())
                return true;
            long next = _vm.Clock.NextDeadline;
            // Virtual time jumps only when no vCPU is running: a running one moves the clock itself.
            if (!_vm.Clock.HostTime && _vm.OthersIdle(this) && _vm.Clock.SkipToNextDeadline())
                return true;
            if (next == long.MaxValue || !_vm.Clock.HostTime)
            {
                Park();
                if (!CanWake())
                {
                    exit = new VmExit { Code = VmExitCode.Bogus, Rip = _cpu.Rip };
                    return false;
                }
                return true;
            }
            long waitNs = next - _vm.Clock.Now;
            if (waitNs > 0 && !Cooperative)
                _wake.Wait(TimeSpan.FromTicks(Math.Max(1, waitNs / 100)));
            _vm.Clock.FireDue();
            return true;
        }
        return true;
    }

    // Waits a little for a wake-up; a cooperative vCPU returns at once so the thread that runs
    // every vCPU goes on to the next.
    private void Park()
    {
        if (!Cooperative)
            _wake.Wait(ParkWaitMs);
    }

    /// <summary>Whether one host thread runs this vCPU among others: a parked or halted vCPU
    /// then returns to its caller instead of waiting.</summary>
    public bool Cooperative { get; set; }

    /// <summary>Whether this vCPU runs, or would run at its next turn: running, halted with an
    /// interrupt it can take, or with an INIT or SIPI waiting. Asked by another vCPU only in
    /// virtual time, where every vCPU runs on one thread (the APIC's pending-interrupt query
    /// notes what it offered).</summary>
    internal bool Busy => _state == RunState.Run || Volatile.Read(ref _pendInit) != 0
        || (_state == RunState.Init && Volatile.Read(ref _pendSipi) != 0) || (_state == RunState.Halt && CanWake());

    private bool CanWake()
    {
        if (Volatile.Read(ref _pendInit) != 0)
            return true;
        IInterruptSource? src = Interrupts;
        if (src == null)
            return false;
        return src.NmiPending || ((_cpu.Rflags & Rflags.IF) != 0 && src.PendingInterrupt >= 0);
    }

    private void DeliverEvents()
    {
        IInterruptSource? src = Interrupts;
        if (src == null)
            return;
        if (src.NmiPending && _cpu.NmiWindowOpen)
        {
            src.AcceptNmi();
            _cpu.Inject(new Event(2, EventType.Nmi));
            return;
        }
        int vector = src.PendingInterrupt;
        if (vector < 0)
        {
            // A request withdrawn while the window was closed (a level-triggered line that fell
            // before the guest could take it): stop asking for the window, or the vCPU would
            // exit for it at every instruction.
            if (_windowRequested)
            {
                _cpu.RequestInterruptWindow(false);
                _windowRequested = false;
            }
            return;
        }
        if (_cpu.InterruptWindowOpen)
        {
            src.AcceptInterrupt(vector);
            _cpu.Inject(new Event((byte)vector, EventType.External));
            _cpu.RequestInterruptWindow(false);
            _windowRequested = false;
        }
        else
        {
            _cpu.RequestInterruptWindow(true);
            _windowRequested = true;
        }
    }

    // Whether the backend was last asked to exit when the interrupt window opens.
    private bool _windowRequested;

    // One backend exit. True when the device half is needed (exit filled in).
    private bool Dispatch(in BackendExit be, ref VmExit exit)
    {
        if (Verifier is { Active: true } check && be.Kind is not (BackendExitKind.DecodedMmio or BackendExitKind.DecodedIo))
        {
            // The backend gave the instruction up (the vmm emulates it now) or finished it.
            if (be.Kind == BackendExitKind.Mmio)
                check.Abandon();
            else
                check.Completed(_cpu, _vm.Memory);
        }
        switch (be.Kind)
        {
            case BackendExitKind.DecodedMmio:
            case BackendExitKind.DecodedIo:
                _access = be.Access;
                _accessPort = be.Kind == BackendExitKind.DecodedIo;
                _accessOffset = 0;
                _accessActive = true;
                Verifier?.Exit(_cpu, _vm.Memory, Paging(), in _access, _accessPort);
                return Access(ref exit);
            case BackendExitKind.Mmio:
                ReadOnlySpan<byte> bytes = ((ReadOnlySpan<byte>)be.Bytes)[..be.ByteCount];
                _vie.Begin(be.Gpa, be.Gla, be.GlaValid, Paging(), _cpu, _vm.Memory, bytes);
                return Emulate(ref exit);
            case BackendExitKind.Io:
                _vie.BeginIo(in be.Io, Paging(), _cpu);
                return Emulate(ref exit);
            case BackendExitKind.Hlt:
                _state = RunState.Halt;
                if ((_cpu.Rflags & Rflags.IF) == 0 && !CanWake())
                {
                    // Only an NMI or INIT can end this halt: the device half decides what it means.
                    exit = new VmExit { Code = VmExitCode.Hlt, Rip = _cpu.Rip };
                    return true;
                }
                return false;
            case BackendExitKind.Pause:
            case BackendExitKind.InterruptWindow:
            case BackendExitKind.Interrupted:
                return false;
            case BackendExitKind.Preempted:
                // The time slice is over: the caller runs the next vCPU.
                exit = new VmExit { Code = VmExitCode.Bogus, Rip = _cpu.Rip };
                return true;
            case BackendExitKind.Cpuid:
                {
                    var (a, b, c, d) = _vm.Cpuid.Query((uint)_cpu.GetGpr(0), (uint)_cpu.GetGpr(1), Id, _cpu.Control.Cr4, _cpu.Xcr0);
                    _cpu.SetGpr(0, a);
                    _cpu.SetGpr(3, b);
                    _cpu.SetGpr(1, c);
                    _cpu.SetGpr(2, d);
                    _cpu.Rip += be.InstructionLength;
                    return false;
                }
            case BackendExitKind.Rdmsr:
            case BackendExitKind.Wrmsr:
                return Msr(in be, ref exit);
            case BackendExitKind.Cr8:
                // CR8 bits 3:0 are the task priority's class, TPR bits 7:4 (a lowered priority
                // lets a waiting interrupt through at the next entry).
                if (be.Cr8Write)
                    Apic.WriteRegister(0x80, (uint)(_cpu.GetGpr(be.Cr8Register) & 0xF) << 4);
                else
                    _cpu.SetGpr(be.Cr8Register, Apic.ReadRegister(0x80) >> 4);
                _cpu.Rip += be.InstructionLength;
                return false;
            case BackendExitKind.Xsetbv:
                {
                    // As bhyve's vmx_emulate_xsetbv: only XCR0; x87 always on, nothing CPUID does not
                    // offer, AVX only with SSE. The processor checked CPL 0 and CR4.OSXSAVE first.
                    ulong value = (_cpu.GetGpr(2) << 32) | (uint)_cpu.GetGpr(0);
                    if ((uint)_cpu.GetGpr(1) != 0 || !_vm.Cpuid.ValidXcr0(value))
                    {
                        _cpu.Inject(new Event(ExceptionVector.GP, EventType.HardwareException, 0, true));
                        return false;
                    }
                    _cpu.SetXcr0(value);
                    _cpu.Rip += be.InstructionLength;
                    return false;
                }
            case BackendExitKind.DeviceFetch:
                // Code run from where no RAM is: the all-ones bytes a PC's bus returns there
                // decode as FF /7, an undefined opcode. Nothing to ask the device half.
                DeviceFetches++;
                _cpu.Inject(new Event(ExceptionVector.UD, EventType.HardwareException));
                return false;
            case BackendExitKind.TripleFault:
                _vm.Suspend(SuspendReason.TripleFault);
                exit = Suspended(_vm.Suspended);
                return true;
            default:
                exit = new VmExit { Code = VmExitCode.Vmx, Rip = _cpu.Rip, Reason = be.Reason };
                return true;
        }
    }

    // The pieces of a decoded access in order: each naturally sized (a page split can leave an
    // MMIO access of 3, 5, 6 or 7 bytes), to the vmm's devices first, then to the device half.
    // True when the device half is needed (exit filled in).
    private bool Access(ref VmExit exit)
    {
        int total = _access.Size * _access.Count;
        while (_accessOffset < total)
        {
            int piece = _accessPort ? _access.Size : MmioAccess.PieceSize(total - _accessOffset);
            ulong at = AccessAddress;
            ulong value = 0;
            bool claimed;
            if (_access.Write)
            {
                value = _cpu.GetAccessData(_accessOffset, piece);
                claimed = _accessPort ? _devices.TryOut((ushort)at, piece, (uint)value) : _devices.TryWrite(at, piece, value);
            }
            else if (_accessPort)
            {
                claimed = _devices.TryIn((ushort)at, piece, out uint v);
                value = v;
            }
            else
            {
                claimed = _devices.TryRead(at, piece, out value);
            }
            if (!claimed)
            {
                _pieceSize = piece;
                _pieceData = _access.Write ? value & Alu.Mask(piece) : 0;
                _accessWaiting = true;
                _accessRequests++;
                exit = AccessRequest();
                return true;
            }
            PieceDone(piece, value);
        }
        _accessActive = false;
        Verifier?.AccessDone(_cpu);
        return false;
    }

    private ulong AccessAddress => _accessPort ? _access.Address : _access.Address + (ulong)_accessOffset;

    private void PieceDone(int piece, ulong value)
    {
        value &= Alu.Mask(piece);
        if (!_access.Write)
            _cpu.SetAccessData(_accessOffset, piece, value);
        Verifier?.Piece(AccessAddress, piece, _access.Write, _accessPort, value);
        _accessOffset += piece;
    }

    // The request of the piece waiting for the device half. RIP is left out (0): a decoding
    // backend's registers cost a system call to read, and the request does not need them.
    private VmExit AccessRequest() => _accessPort
        ? new VmExit { Code = VmExitCode.Inout, Inout = new InoutAccess((ushort)_access.Address, (byte)_pieceSize, !_access.Write, (uint)_pieceData) }
        : new VmExit { Code = VmExitCode.Mmio, Mmio = new MmioAccess(AccessAddress, (byte)_pieceSize, _access.Write, _pieceData) };

    private void FulfillAccess(in VmEntry entry)
    {
        bool port = entry.Command == VmEntryCommand.FulfillInout;
        (ulong address, int bytes, bool write, ulong data) = port
            ? (entry.Inout.Port, entry.Inout.Bytes, !entry.Inout.In, entry.Inout.Eax)
            : (entry.Mmio.Gpa, (int)entry.Mmio.Bytes, entry.Mmio.Write, entry.Mmio.Data);
        if (port != _accessPort || address != AccessAddress || bytes != _pieceSize || write != _access.Write)
            throw Mismatch(port ? entry.Inout.ToString() : entry.Mmio.ToString(), FulfillResult.Mismatch);
        _accessWaiting = false;
        PieceDone(_pieceSize, write ? _pieceData : data);
    }

    // The backend has the instruction in flight and cannot drop it: what is left of the access
    // completes as an unclaimed one would (reads all ones, writes dropped).
    private void DiscardAccess()
    {
        if (!_accessActive)
            return;
        int total = _access.Size * _access.Count;
        if (!_access.Write)
        {
            for (int at = _accessOffset; at < total; at++)
                _cpu.SetAccessData(at, 1, 0xFF);
        }
        _accessOffset = total;
        _accessWaiting = false;
        _accessActive = false;
        Verifier?.Abandon();
    }

    private bool Msr(in BackendExit be, ref VmExit exit)
    {
        (uint msr, ulong value) = _cpu.MsrOperands;
        bool write = be.Kind == BackendExitKind.Wrmsr;
        long now = _vm.Clock.Now;
        MsrResult r = write ? Msrs.Write(msr, value, _cpu, now) : Msrs.Read(msr, _cpu, now, out value);
        switch (r)
        {
            case MsrResult.Handled:
            case MsrResult.Fault:
                _cpu.CompleteMsr(!write, be.InstructionLength, r == MsrResult.Fault, value);
                return false;
            default:
                _msrPending = true;
                _msrWrite = write;
                _msr = msr;
                _msrValue = write ? value : 0;
                _msrLength = be.InstructionLength;
                exit = MsrExit();
                return true;
        }
    }

    private VmExit MsrExit() => new()
    {
        Code = _msrWrite ? VmExitCode.Wrmsr : VmExitCode.Rdmsr,
        Msr = _msr,
        MsrValue = _msrValue,
        Rip = _cpu.Rip,
    };

    // INIT: the processor state of the SDM's INIT column (real mode at F000:FFF0, XCR0 = 1); MSRs
    // and the vector registers are kept.
    /// <summary>Puts the vCPU in the state hardware reset gives (real mode at F000:FFF0 with CS
    /// based at 0xFFFF0000, EDX the processor signature), for firmware to start from.</summary>
    public void PowerOnReset() => InitReset();

    private void InitReset()
    {
        _vie.Reset();
        _msrPending = false;
        for (int r = 0; r < 16; r++)
            _cpu.SetGpr(r, 0);
        _cpu.SetGpr(2, _vm.Cpuid.Signature);
        _cpu.Rflags = Rflags.Fixed1;
        _cpu.Rip = 0xFFF0;
        _cpu.Control = new ControlState(0x6000_0010, 0, 0, 0, 0);
        _cpu.SetSegment(Register.CS, new Segment(0xF000, 0xFFFF_0000, 0xFFFF, 0x9B));
        foreach (Register s in DataSegments)
            _cpu.SetSegment(s, new Segment(0, 0, 0xFFFF, 0x93));
        _cpu.Gdtr = new TableRegister(0, 0xFFFF);
        _cpu.Idtr = new TableRegister(0, 0xFFFF);
        if (_cpu.Xcr0 != 1)
            _cpu.SetXcr0(1); // INIT puts XCR0 back to x87 only
    }

    private static readonly Register[] DataSegments = [Register.ES, Register.SS, Register.DS, Register.FS, Register.GS];

    // SIPI: real mode at vector:0000.
    private void StartAt(byte vector)
    {
        _cpu.SetSegment(Register.CS, new Segment((ushort)(vector << 8), (ulong)vector << 12, 0xFFFF, 0x9B));
        _cpu.Rip = 0;
    }
}
