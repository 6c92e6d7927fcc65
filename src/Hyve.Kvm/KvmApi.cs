// The KVM ioctl interface and the few libc calls around it: ioctl numbers, capability and exit
// numbers, kvm_run offsets, and thin wrappers that turn a failed call into an exception naming it.
using System;
using System.Runtime.InteropServices;

namespace Hyve.Kvm;

/// <summary>A KVM or libc call failed.</summary>
public sealed class KvmException(string message, int errno = 0) : InvalidOperationException(message)
{
    /// <summary>The errno of the failed call (0 when none).</summary>
    public int Errno { get; } = errno;
}

/// <summary>Numbers from &lt;linux/kvm.h&gt; (x86-64) and the libc entry points the backend uses.</summary>
public static unsafe partial class KvmApi
{
    /// <summary>The API version every KVM since Linux 2.6.22 reports.</summary>
    public const int ApiVersion = 12;

    /// <summary>ioctls on /dev/kvm.</summary>
    public const nuint GetApiVersion = 0xAE00, CreateVm = 0xAE01, CheckExtension = 0xAE03, GetVcpuMmapSize = 0xAE04;
    /// <summary>ioctls on a VM.</summary>
    public const nuint CreateVcpu = 0xAE41, SetUserMemoryRegion = 0x4020AE46, SetTssAddr = 0xAE47,
        EnableCap = 0x4068AEA3, X86SetMsrFilter = 0x4188AEC6;
    /// <summary>ioctls on a vCPU.</summary>
    public const nuint Run = 0xAE80, GetRegs = 0x8090AE81, SetRegs = 0x4090AE82, GetSregs = 0x8138AE83,
        SetSregs = 0x4138AE84, GetFpu = 0x81A0AE8C, SetFpu = 0x41A0AE8D, GetMsrs = 0xC008AE88, SetMsrs = 0x4008AE89,
        SetCpuid2 = 0x4008AE90, Interrupt = 0x4004AE86, Nmi = 0xAE9A, GetVcpuEvents = 0x8040AE9F,
        SetVcpuEvents = 0x4040AEA0, SetSignalMask = 0x4004AE8B, GetTscKhz = 0xAEA3;

    /// <summary>Capabilities (KVM_CHECK_EXTENSION, KVM_ENABLE_CAP).</summary>
    public const int CapImmediateExit = 136, CapX86UserSpaceMsr = 188, CapX86MsrFilter = 189,
        CapVcpuEvents = 41;

    /// <summary>kvm_run.exit_reason values.</summary>
    public const uint ExitUnknown = 0, ExitException = 1, ExitIo = 2, ExitHlt = 5, ExitMmio = 6, ExitIrqWindowOpen = 7,
        ExitShutdown = 8, ExitFailEntry = 9, ExitIntr = 10, ExitInternalError = 17, ExitSystemEvent = 24,
        ExitX86Rdmsr = 29, ExitX86Wrmsr = 30;
    /// <summary>KVM_INTERNAL_ERROR_EMULATION, and its flag saying the instruction bytes are given.</summary>
    public const uint InternalErrorEmulation = 1;
    /// <summary>KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES.</summary>
    public const ulong EmulationFailureHasBytes = 1;
    /// <summary>kvm_run.io.direction of an IN.</summary>
    public const byte ExitIoIn = 0;
    /// <summary>kvm_run.io.direction of an OUT.</summary>
    public const byte ExitIoOut = 1;

    /// <summary>KVM_CAP_X86_USER_SPACE_MSR reasons.</summary>
    public const ulong MsrExitReasonUnknown = 2, MsrExitReasonFilter = 4;
    /// <summary>MSR filter flags.</summary>
    public const uint MsrFilterRead = 1, MsrFilterWrite = 2, MsrFilterDefaultAllow = 0;
    /// <summary>Ranges in one MSR filter.</summary>
    public const int MsrFilterMaxRanges = 16;
    /// <summary>kvm_cpuid_entry2.flags: the subleaf matters.</summary>
    public const uint CpuidFlagSignificantIndex = 1;

    /// <summary>Offsets into struct kvm_run.</summary>
    public static class RunOffset
    {
        /// <summary>Field offsets.</summary>
        public const int RequestInterruptWindow = 0, ImmediateExit = 1, ExitReason = 8, ReadyForInterruptInjection = 12,
            IfFlag = 13, Cr8 = 16, ApicBase = 24,
            IoDirection = 32, IoSize = 33, IoPort = 34, IoCount = 36, IoDataOffset = 40,
            MmioPhysAddr = 32, MmioData = 40, MmioLen = 48, MmioIsWrite = 52,
            FailEntryReason = 32, InternalSuberror = 32, InternalNdata = 36, InternalData = 40, SystemEventType = 32,
            MsrError = 32, MsrIndex = 44, MsrData = 48,
            EmulationFailureFlags = 40, EmulationFailureInsnSize = 48, EmulationFailureInsnBytes = 49;
        /// <summary>sizeof(struct kvm_run).</summary>
        public const int Size = 2352;
    }

    /// <summary>sizeof(struct kvm_msr_filter): flags, padding, 16 ranges.</summary>
    public const int MsrFilterSize = 392;

    /// <summary>Where kvm_msr_filter's ranges start.</summary>
    public const int MsrFilterRanges = 8;

    /// <summary>sizeof(struct kvm_cpuid2) before its entries.</summary>
    public const int Cpuid2Header = 8;

    /// <summary>struct kvm_signal_mask before its sigset, and the kernel's sigset there (bytes:
    /// one unsigned long on x86-64).</summary>
    public const int SignalMaskHeader = 4, KernelSigsetSize = 8;

    // libc
    private const int ORdwr = 2, OCloexec = 0x80000;
    private const int ProtRead = 1, ProtWrite = 2, MapShared = 1;
    /// <summary>SIGURG: ignored by default, so a stray one never harms the process; it is kept
    /// blocked on vCPU threads outside KVM_RUN and used to kick them out of it.</summary>
    public const int KickSignal = 23;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SysOpen(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int SysClose(int fd);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int SysIoctl(int fd, nuint request, nint arg);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint SysMmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int SysMunmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "getpid")]
    private static partial int SysGetpid();

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int SysGettid();

    [LibraryImport("libc", EntryPoint = "tgkill")]
    private static partial int SysTgkill(int tgid, int tid, int sig);

    [LibraryImport("libc", EntryPoint = "pthread_sigmask")]
    private static partial int SysPthreadSigmask(int how, ulong* set, ulong* old);

    [LibraryImport("libc", EntryPoint = "sigtimedwait")]
    private static partial int SysSigtimedwait(ulong* set, nint info, long* timeout);

    /// <summary>Opens <paramref name="path"/> read-write; throws with the errno on failure.</summary>
    public static int Open(string path)
    {
        int fd = SysOpen(path, ORdwr | OCloexec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new KvmException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }
        return fd;
    }

    /// <summary>Closes a descriptor.</summary>
    public static void Close(int fd) => SysClose(fd);

    /// <summary>An ioctl whose failure is returned as -errno (0 or a positive result on success).</summary>
    public static int TryIoctl(int fd, nuint request, nint arg)
    {
        int r = SysIoctl(fd, request, arg);
        return r >= 0 ? r : -Marshal.GetLastPInvokeError();
    }

    /// <summary>An ioctl that must succeed; <paramref name="what"/> names it in the exception.</summary>
    public static int Ioctl(int fd, nuint request, nint arg, string what)
    {
        int r = TryIoctl(fd, request, arg);
        if (r < 0)
            throw new KvmException($"{what} failed: {Marshal.GetPInvokeErrorMessage(-r)}", -r);
        return r;
    }

    /// <summary>An ioctl taking a pointer to <paramref name="value"/>.</summary>
    public static int Ioctl<T>(int fd, nuint request, ref T value, string what) where T : unmanaged
    {
        // SAFETY: value is a caller's local or field pinned by the fixed statement for the call;
        // the kernel reads or writes exactly sizeof(T) bytes, which the layout tests check.
        fixed (T* p = &value)
            return Ioctl(fd, request, (nint)p, what);
    }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> shared, read-write.</summary>
    public static nint Map(int fd, int length)
    {
        nint p = SysMmap(0, (nuint)length, ProtRead | ProtWrite, MapShared, fd, 0);
        if (p == -1)
            throw new KvmException($"mmap of the kvm_run area failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        return p;
    }

    /// <summary>Unmaps a mapping made by <see cref="Map"/>.</summary>
    public static void Unmap(nint p, int length) => SysMunmap(p, (nuint)length);

    /// <summary>The calling thread's kernel thread id.</summary>
    public static int ThreadId() => SysGettid();

    private static readonly int s_pid = SysGetpid();

    /// <summary>Sends the kick signal to thread <paramref name="tid"/> of this process.</summary>
    public static void Kick(int tid) => SysTgkill(s_pid, tid, KickSignal);

    // glibc's sigset_t is 1024 bits; the kick signal is in its first word.
    private const int SigsetWords = 16;

    /// <summary>Blocks the kick signal on the calling thread (it stays pending until KVM_RUN, whose
    /// own mask lets it interrupt the guest).</summary>
    public static void BlockKick()
    {
        // SAFETY: a zeroed sigset_t of glibc's size on this stack frame; no old mask is asked for.
        ulong* set = stackalloc ulong[SigsetWords];
        new Span<ulong>(set, SigsetWords).Clear();
        set[0] = 1UL << (KickSignal - 1);
        SysPthreadSigmask(0 /* SIG_BLOCK */, set, null);
    }

    /// <summary>Consumes a pending kick signal of the calling thread, if any.</summary>
    public static void DrainKick()
    {
        // SAFETY: the sigset_t and the zero timespec live on this stack frame for the calls.
        ulong* set = stackalloc ulong[SigsetWords];
        new Span<ulong>(set, SigsetWords).Clear();
        set[0] = 1UL << (KickSignal - 1);
        long* zero = stackalloc long[2];
        zero[0] = 0;
        zero[1] = 0;
        while (SysSigtimedwait(set, 0, zero) == KickSignal)
        {
        }
    }
}
