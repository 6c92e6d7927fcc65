// A KVM vCPU behind the backend contract: registers fetched from KVM only when the vmm asks and
// written back only when it changed them, KVM_RUN with immediate_exit and a thread-directed
// signal for kicks, KVM's exits turned into the contract's kinds (its decoded MMIO and port
// accesses become the vmm's single requests), and the vmm's interrupts injected through KVM.
using System;
using System.Runtime.CompilerServices;
using System.Threading;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.X86;

namespace Hyve.Kvm;

/// <summary>One KVM vCPU.</summary>
public sealed unsafe class KvmVcpu : IBackendVcpu, IDisposable
{
    private const int Eintr = 4, Eagain = 11;

    // The contract numbers general registers as the instruction encoding does; kvm_regs orders
    // them RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP, R8..R15.
    private static ReadOnlySpan<byte> RegsIndex => [0, 2, 3, 1, 6, 7, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15];

    [ThreadStatic]
    private static bool t_kickBlocked;

    // The calling thread's kernel id, asked once per thread (a system call each time otherwise).
    [ThreadStatic]
    private static int t_tid;

    private readonly int _id;
    private readonly int _runSize;
    private byte* _run;
    private KvmRegs _regs;
    private KvmSregs _sregs;
    private KvmFpu _fpu;
    private bool _regsValid, _regsDirty, _sregsValid, _sregsDirty, _fpuValid, _fpuDirty;
    private bool _interruptQueued, _nmiQueued;
    // The pending user-space MSR exit: KVM completes the instruction from kvm_run.msr (value or error).
    private bool _msrExit;
    // Where the pending decoded access's data lives in kvm_run.
    private byte* _accessData;
    private int _tid;
    private int _inRun;

    internal KvmVcpu(KvmBackend vm, int id)
    {
        _id = id;
        _runSize = vm.RunSize;
        Fd = KvmApi.Ioctl(vm.VmFd, KvmApi.CreateVcpu, id, $"KVM_CREATE_VCPU({id})");
        _run = (byte*)KvmApi.Map(Fd, _runSize);
        // While in KVM_RUN nothing is blocked, so the kick signal (blocked on vCPU threads
        // otherwise) interrupts the guest.
        // SAFETY: struct kvm_signal_mask { u32 len; u8 sigset[8]; } built on this stack frame.
        const int size = KvmApi.SignalMaskHeader + KvmApi.KernelSigsetSize;
        byte* mask = stackalloc byte[size];
        new Span<byte>(mask, size).Clear();
        *(uint*)mask = KvmApi.KernelSigsetSize;
        KvmApi.Ioctl(Fd, KvmApi.SetSignalMask, (nint)mask, "KVM_SET_SIGNAL_MASK");
    }

    /// <summary>The vCPU descriptor.</summary>
    public int Fd { get; private set; }

    // ---- State ------------------------------------------------------------------------------

    // KVM's copy of a register group, fetched once per exit and only when asked for.
    private ref T Cached<T>(ref T value, ref bool valid, nuint request, string what) where T : unmanaged
    {
        if (!valid)
        {
            KvmApi.Ioctl(Fd, request, ref value, what);
            valid = true;
        }
        return ref value;
    }

    private ref KvmRegs Regs => ref Cached(ref _regs, ref _regsValid, KvmApi.GetRegs, "KVM_GET_REGS");

    private ref KvmSregs Sregs => ref Cached(ref _sregs, ref _sregsValid, KvmApi.GetSregs, "KVM_GET_SREGS");

    private ref KvmFpu Fpu => ref Cached(ref _fpu, ref _fpuValid, KvmApi.GetFpu, "KVM_GET_FPU");

    /// <inheritdoc/>
    public ulong GetGpr(int n) => Unsafe.Add(ref Regs.Rax, RegsIndex[n]);

    /// <inheritdoc/>
    public void SetGpr(int n, ulong value) => SetRegister(ref Unsafe.Add(ref Regs.Rax, RegsIndex[n]), value);

    /// <inheritdoc/>
    public ulong Rip
    {
        get => Regs.Rip;
        set => SetRegister(ref Regs.Rip, value);
    }

    /// <inheritdoc/>
    public ulong Rflags
    {
        get => Regs.Rflags;
        set => SetRegister(ref Regs.Rflags, value);
    }

    // A register of the fetched group: written back at the next entry only when it changed.
    private void SetRegister(ref ulong register, ulong value)
    {
        if (register == value)
            return;
        register = value;
        _regsDirty = true;
    }

    private ref KvmSegment SegmentRef(Register segment)
    {
        ref KvmSregs s = ref Sregs;
        switch (segment)
        {
            case Register.ES: return ref s.Es;
            case Register.CS: return ref s.Cs;
            case Register.SS: return ref s.Ss;
            case Register.DS: return ref s.Ds;
            case Register.FS: return ref s.Fs;
            case Register.GS: return ref s.Gs;
            default: throw new ArgumentOutOfRangeException(nameof(segment), segment, "ES..GS");
        }
    }

    /// <inheritdoc/>
    public Segment GetSegment(Register segment) => FromKvm(in SegmentRef(segment));

    /// <inheritdoc/>
    public void SetSegment(Register segment, in Segment value)
    {
        SegmentRef(segment) = ToKvm(in value);
        _sregsDirty = true;
    }

    /// <summary>VMX access rights (type, S, DPL, P, AVL, L, D/B, G, unusable in bit 16) to KVM's fields.</summary>
    public static KvmSegment ToKvm(in Segment s)
    {
        uint a = s.Access;
        return new KvmSegment
        {
            Base = s.Base,
            Limit = s.Limit,
            Selector = s.Selector,
            Type = (byte)(a & 0xF),
            S = (byte)((a >> 4) & 1),
            Dpl = (byte)((a >> 5) & 3),
            Present = (byte)((a >> 7) & 1),
            Avl = (byte)((a >> 12) & 1),
            L = (byte)((a >> 13) & 1),
            Db = (byte)((a >> 14) & 1),
            G = (byte)((a >> 15) & 1),
            Unusable = (byte)((a >> 16) & 1),
        };
    }

    /// <summary>KVM's segment fields to VMX access rights.</summary>
    public static Segment FromKvm(in KvmSegment k)
    {
        uint a = (uint)(k.Type & 0xF) | ((uint)(k.S & 1) << 4) | ((uint)(k.Dpl & 3) << 5) | ((uint)(k.Present & 1) << 7)
            | ((uint)(k.Avl & 1) << 12) | ((uint)(k.L & 1) << 13) | ((uint)(k.Db & 1) << 14) | ((uint)(k.G & 1) << 15)
            | ((uint)(k.Unusable & 1) << 16);
        return new Segment(k.Selector, k.Base, k.Limit, a);
    }

    /// <inheritdoc/>
    public ControlState Control
    {
        get
        {
            ref KvmSregs s = ref Sregs;
            return new ControlState(s.Cr0, s.Cr2, s.Cr3, s.Cr4, s.Efer);
        }
        set
        {
            ref KvmSregs s = ref Sregs;
            s.Cr0 = value.Cr0;
            s.Cr2 = value.Cr2;
            s.Cr3 = value.Cr3;
            s.Cr4 = value.Cr4;
            s.Efer = value.Efer;
            _sregsDirty = true;
        }
    }

    /// <inheritdoc/>
    public TableRegister Gdtr
    {
        get => new(Sregs.Gdt.Base, Sregs.Gdt.Limit);
        set
        {
            Sregs.Gdt.Base = value.Base;
            _sregs.Gdt.Limit = value.Limit;
            _sregsDirty = true;
        }
    }

    /// <inheritdoc/>
    public TableRegister Idtr
    {
        get => new(Sregs.Idt.Base, Sregs.Idt.Limit);
        set
        {
            Sregs.Idt.Base = value.Base;
            _sregs.Idt.Limit = value.Limit;
            _sregsDirty = true;
        }
    }

    // Register n of a 16-byte-per-register area of kvm_fpu (the x87/MMX or the XMM registers).
    private static ref byte Slot(ref byte first, int n) => ref Unsafe.Add(ref first, 16 * n);

    /// <inheritdoc/>
    public UInt128 GetXmm(int n) => Unsafe.ReadUnaligned<UInt128>(ref Slot(ref Fpu.Xmm[0], n));

    /// <inheritdoc/>
    public void SetXmm(int n, UInt128 value)
    {
        Unsafe.WriteUnaligned(ref Slot(ref Fpu.Xmm[0], n), value);
        _fpuDirty = true;
    }

    /// <inheritdoc/>
    /// <remarks>MMn is the low 64 bits of x87 register n (MMX code runs with TOP = 0).</remarks>
    public ulong GetMm(int n) => Unsafe.ReadUnaligned<ulong>(ref Slot(ref Fpu.Fpr[0], n));

    /// <inheritdoc/>
    public void SetMm(int n, ulong value)
    {
        ref byte slot = ref Slot(ref Fpu.Fpr[0], n);
        Unsafe.WriteUnaligned(ref slot, value);
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref slot, 8), (ushort)0xFFFF); // sign and exponent all ones, as an MMX write leaves them
        _fpuDirty = true;
    }

    /// <inheritdoc/>
    public bool TryGetMsr(uint msr, out ulong value)
    {
        var m = new KvmMsrs1 { Count = 1, Entry = new KvmMsrEntry { Index = msr } };
        bool ok = KvmApi.Ioctl(Fd, KvmApi.GetMsrs, ref m, "KVM_GET_MSRS") == 1;
        value = ok ? m.Entry.Data : 0;
        return ok;
    }

    /// <inheritdoc/>
    public bool TrySetMsr(uint msr, ulong value)
    {
        var m = new KvmMsrs1 { Count = 1, Entry = new KvmMsrEntry { Index = msr, Data = value } };
        return KvmApi.Ioctl(Fd, KvmApi.SetMsrs, ref m, "KVM_SET_MSRS") == 1;
    }

    /// <inheritdoc/>
    public void SetCpuid(CpuidPolicy policy, int apicId)
    {
        ArgumentNullException.ThrowIfNull(policy);
        Span<(uint Leaf, uint Subleaf, bool Indexed)> leaves = stackalloc (uint, uint, bool)[64];
        int n = 0;
        uint maxBasic = policy.Query(0, 0, apicId).Eax;
        for (uint l = 0; l <= maxBasic && n < 40; l++)
            leaves[n++] = (l, 0, l == 7);
        leaves[n++] = (0x4000_0000, 0, false);
        uint maxExt = policy.Query(0x8000_0000, 0, apicId).Eax;
        for (uint l = 0x8000_0000; l <= maxExt && n < leaves.Length; l++)
            leaves[n++] = (l, 0, false);
        // SAFETY: struct kvm_cpuid2 (8 bytes) followed by n entries of 40 bytes, zeroed, on this frame.
        int bytes = KvmApi.Cpuid2Header + n * sizeof(KvmCpuidEntry);
        byte* buf = stackalloc byte[bytes];
        new Span<byte>(buf, bytes).Clear();
        *(uint*)buf = (uint)n;
        var entries = (KvmCpuidEntry*)(buf + KvmApi.Cpuid2Header);
        for (int i = 0; i < n; i++)
        {
            var (a, b, c, d) = policy.Query(leaves[i].Leaf, leaves[i].Subleaf, apicId);
            entries[i] = new KvmCpuidEntry
            {
                Function = leaves[i].Leaf,
                Index = leaves[i].Subleaf,
                Flags = leaves[i].Indexed ? KvmApi.CpuidFlagSignificantIndex : 0,
                Eax = a,
                Ebx = b,
                Ecx = c,
                Edx = d,
            };
        }
        KvmApi.Ioctl(Fd, KvmApi.SetCpuid2, (nint)buf, "KVM_SET_CPUID2");
    }

    // ---- Events -----------------------------------------------------------------------------

    /// <inheritdoc/>
    /// <remarks>KVM's own view after the last exit; nothing is open while state the vmm changed
    /// has not reached KVM yet or an interrupt is already queued.</remarks>
    public bool InterruptWindowOpen =>
        !_interruptQueued && !_regsDirty && !_sregsDirty && _run[KvmApi.RunOffset.ReadyForInterruptInjection] != 0
        && _run[KvmApi.RunOffset.IfFlag] != 0;

    /// <inheritdoc/>
    /// <remarks>KVM holds an NMI back itself while NMIs are blocked.</remarks>
    public bool NmiWindowOpen => !_nmiQueued;

    /// <inheritdoc/>
    public void Inject(in Event e)
    {
        switch (e.Type)
        {
            case EventType.External:
                uint irq = e.Vector;
                KvmApi.Ioctl(Fd, KvmApi.Interrupt, (nint)(&irq), "KVM_INTERRUPT");
                _interruptQueued = true;
                return;
            case EventType.Nmi:
                KvmApi.Ioctl(Fd, KvmApi.Nmi, 0, "KVM_NMI");
                _nmiQueued = true;
                return;
            case EventType.HardwareException:
                {
                    FlushState();
                    var ev = default(KvmVcpuEvents);
                    KvmApi.Ioctl(Fd, KvmApi.GetVcpuEvents, ref ev, "KVM_GET_VCPU_EVENTS");
                    ev.ExceptionInjected = 1;
                    ev.ExceptionNr = e.Vector;
                    ev.ExceptionHasErrorCode = e.HasErrorCode ? (byte)1 : (byte)0;
                    ev.ExceptionErrorCode = e.ErrorCode;
                    ev.Flags = 0;
                    KvmApi.Ioctl(Fd, KvmApi.SetVcpuEvents, ref ev, "KVM_SET_VCPU_EVENTS");
                    return;
                }
            default:
                throw new VmmPanicException($"vCPU {_id}: KVM cannot be given a {e.Type} event (vector {e.Vector})");
        }
    }

    /// <inheritdoc/>
    public void RequestInterruptWindow(bool on) => _run[KvmApi.RunOffset.RequestInterruptWindow] = on ? (byte)1 : (byte)0;

    /// <inheritdoc/>
    public void RequestExit()
    {
        Volatile.Write(ref _run[KvmApi.RunOffset.ImmediateExit], 1);
        Interlocked.MemoryBarrier();
        int tid = Volatile.Read(ref _tid);
        if (Volatile.Read(ref _inRun) != 0 && tid != 0 && tid != t_tid)
            KvmApi.Kick(tid);
    }

    // ---- MSR exits (KVM_CAP_X86_USER_SPACE_MSR) ----------------------------------------------

    /// <inheritdoc/>
    /// <remarks>From kvm_run.msr: no register fetch.</remarks>
    public (uint Msr, ulong Value) MsrOperands =>
        (*(uint*)(_run + KvmApi.RunOffset.MsrIndex), *(ulong*)(_run + KvmApi.RunOffset.MsrData));

    /// <inheritdoc/>
    /// <remarks>KVM finishes the instruction on the next run from kvm_run.msr: the value into EDX:EAX
    /// and RIP past it, or a #GP for an error; the length is not needed.</remarks>
    public void CompleteMsr(bool read, byte length, bool fault, ulong value)
    {
        if (!_msrExit)
            throw new VmmPanicException($"vCPU {_id}: an MSR answer without an MSR exit");
        _run[KvmApi.RunOffset.MsrError] = fault ? (byte)1 : (byte)0;
        if (read && !fault)
            *(ulong*)(_run + KvmApi.RunOffset.MsrData) = value;
    }

    // ---- Decoded accesses -------------------------------------------------------------------

    /// <inheritdoc/>
    public ulong GetAccessData(int offset, int size)
    {
        ulong v = 0;
        for (int i = size - 1; i >= 0; i--)
            v = (v << 8) | _accessData[offset + i];
        return v;
    }

    /// <inheritdoc/>
    public void SetAccessData(int offset, int size, ulong value)
    {
        for (int i = 0; i < size; i++)
            _accessData[offset + i] = (byte)(value >> (8 * i));
    }

    // ---- Running ----------------------------------------------------------------------------

    private void FlushState()
    {
        if (_regsDirty)
        {
            KvmApi.Ioctl(Fd, KvmApi.SetRegs, ref _regs, "KVM_SET_REGS");
            _regsDirty = false;
        }
        if (_sregsDirty)
        {
            KvmApi.Ioctl(Fd, KvmApi.SetSregs, ref _sregs, "KVM_SET_SREGS");
            _sregsDirty = false;
        }
        if (_fpuDirty)
        {
            KvmApi.Ioctl(Fd, KvmApi.SetFpu, ref _fpu, "KVM_SET_FPU");
            _fpuDirty = false;
        }
    }

    /// <inheritdoc/>
    public BackendExit Run()
    {
        if (!t_kickBlocked)
        {
            KvmApi.BlockKick();
            t_kickBlocked = true;
            t_tid = KvmApi.ThreadId();
        }
        FlushState();
        Volatile.Write(ref _tid, t_tid);
        Volatile.Write(ref _inRun, 1);
        Interlocked.MemoryBarrier();
        int r = KvmApi.TryIoctl(Fd, KvmApi.Run, 0);
        // Cleared with a full fence before the vmm looks for new work: a kick that set it in
        // between has already published what it kicked for.
        Interlocked.Exchange(ref _run[KvmApi.RunOffset.ImmediateExit], 0);
        Volatile.Write(ref _inRun, 0);
        _regsValid = _sregsValid = _fpuValid = false;
        _interruptQueued = _nmiQueued = false;
        _msrExit = false;
        if (r < 0)
        {
            if (r is -Eintr or -Eagain)
            {
                KvmApi.DrainKick();
                return new BackendExit { Kind = BackendExitKind.Interrupted };
            }
            throw new KvmException($"vCPU {_id}: KVM_RUN failed: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(-r)}", -r);
        }
        return Decode();
    }

    private BackendExit Decode()
    {
        uint reason = *(uint*)(_run + KvmApi.RunOffset.ExitReason);
        switch (reason)
        {
            case KvmApi.ExitIo:
                {
                    byte* io = _run;
                    _accessData = _run + *(ulong*)(io + KvmApi.RunOffset.IoDataOffset);
                    return new BackendExit
                    {
                        Kind = BackendExitKind.DecodedIo,
                        Access = new DecodedAccess
                        {
                            Address = *(ushort*)(io + KvmApi.RunOffset.IoPort),
                            Size = io[KvmApi.RunOffset.IoSize],
                            Count = (int)*(uint*)(io + KvmApi.RunOffset.IoCount),
                            Write = io[KvmApi.RunOffset.IoDirection] == KvmApi.ExitIoOut,
                        },
                    };
                }
            case KvmApi.ExitMmio:
                _accessData = _run + KvmApi.RunOffset.MmioData;
                return new BackendExit
                {
                    Kind = BackendExitKind.DecodedMmio,
                    Access = new DecodedAccess
                    {
                        Address = *(ulong*)(_run + KvmApi.RunOffset.MmioPhysAddr),
                        Size = (int)*(uint*)(_run + KvmApi.RunOffset.MmioLen),
                        Count = 1,
                        Write = _run[KvmApi.RunOffset.MmioIsWrite] != 0,
                    },
                };
            case KvmApi.ExitHlt:
                return new BackendExit { Kind = BackendExitKind.Hlt };
            case KvmApi.ExitIrqWindowOpen:
                return new BackendExit { Kind = BackendExitKind.InterruptWindow };
            case KvmApi.ExitIntr:
                return new BackendExit { Kind = BackendExitKind.Interrupted };
            case KvmApi.ExitShutdown:
                return new BackendExit { Kind = BackendExitKind.TripleFault };
            case KvmApi.ExitX86Rdmsr:
            case KvmApi.ExitX86Wrmsr:
                // KVM finishes the instruction (RIP, EDX:EAX, or #GP) on the next run; RIP does not move here.
                _msrExit = true;
                return new BackendExit { Kind = reason == KvmApi.ExitX86Rdmsr ? BackendExitKind.Rdmsr : BackendExitKind.Wrmsr };
            case KvmApi.ExitFailEntry:
                throw new VmmPanicException($"vCPU {_id}: KVM could not enter the guest (hardware reason 0x{*(ulong*)(_run + KvmApi.RunOffset.FailEntryReason):X}){State()}");
            case KvmApi.ExitInternalError when *(uint*)(_run + KvmApi.RunOffset.InternalSuberror) == KvmApi.InternalErrorEmulation
                && (*(ulong*)(_run + KvmApi.RunOffset.EmulationFailureFlags) & KvmApi.EmulationFailureHasBytes) != 0:
                {
                    // An instruction KVM's emulator does not know (POPCNT on device memory, for one):
                    // the vmm's emulator takes it over from the bytes KVM fetched, at the state
                    // before it (KVM changed nothing).
                    // No guest-physical address: no page is taken for device memory but what the
                    // vmm's own walk finds outside RAM.
                    var exit = new BackendExit { Kind = BackendExitKind.Mmio, Gpa = ulong.MaxValue, GlaValid = false };
                    int n = Math.Min((int)_run[KvmApi.RunOffset.EmulationFailureInsnSize], 15);
                    for (int i = 0; i < n; i++)
                        exit.Bytes[i] = _run[KvmApi.RunOffset.EmulationFailureInsnBytes + i];
                    exit.ByteCount = (byte)n;
                    return exit;
                }
            case KvmApi.ExitInternalError:
                {
                    uint sub = *(uint*)(_run + KvmApi.RunOffset.InternalSuberror);
                    uint n = Math.Min(*(uint*)(_run + KvmApi.RunOffset.InternalNdata), 16);
                    var data = new System.Text.StringBuilder();
                    for (int i = 0; i < n; i++)
                        data.Append($" {*(ulong*)(_run + KvmApi.RunOffset.InternalData + 8 * i):X}");
                    string what = sub switch
                    {
                        1 => "an instruction it could not emulate",
                        2 => "an exception while delivering one",
                        3 => "an event it could not deliver",
                        4 => "an exit reason it does not know",
                        _ => $"suberror {sub}",
                    };
                    throw new VmmPanicException($"vCPU {_id}: KVM internal error: {what} (data{data}){State()}");
                }
            case KvmApi.ExitSystemEvent:
                return new BackendExit { Kind = BackendExitKind.Unhandled, Reason = 0x1_0000 | *(uint*)(_run + KvmApi.RunOffset.SystemEventType) };
            default:
                return new BackendExit { Kind = BackendExitKind.Unhandled, Reason = reason };
        }
    }

    private string State()
    {
        try
        {
            ControlState c = Control;
            return $" at RIP {Rip:X}, CR0 {c.Cr0:X}, CR4 {c.Cr4:X}, EFER {c.Efer:X}";
        }
        catch (KvmException)
        {
            return "";
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_run != null)
            KvmApi.Unmap((nint)_run, _runSize);
        _run = null;
        if (Fd >= 0)
            KvmApi.Close(Fd);
        Fd = -1;
    }
}
