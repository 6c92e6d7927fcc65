// The KVM backend: a KVM VM over the vmm's guest RAM (one memory slot per RAM region), with the
// MSRs the vmm's machine model owns sent to user space, and vCPUs behind the backend contract.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Hyve.Vmm;
using Hyve.Vmm.Backend;

namespace Hyve.Kvm;

/// <summary>Runs a VM's vCPUs on KVM. Hyve's own interrupt controllers and timers stay in the
/// vmm (no in-kernel irqchip), so both backends run the same machine.</summary>
public sealed unsafe class KvmBackend : IBackend, IDisposable
{
    // Where KVM may put the three pages it needs for real mode on Intel (below the BIOS area, as
    // QEMU places them); unused on AMD.
    private const long TssAddress = 0xFFFB_D000;

    // MSRs the vmm's MsrFile answers (first, count): the APIC base, TSC deadline and x2APIC
    // registers (the APIC is the vmm's), and the identification, MTRR and machine-check MSRs so
    // guests see the same values on both backends. EFER, PAT, the SYSCALL/SYSENTER and segment
    // base MSRs and the TSC stay with KVM: the processor itself uses them.
    private static readonly (uint First, uint Count)[] UserMsrs =
    [
        (0x17, 1), (0x1B, 1), (0x3A, 1), (0x8B, 1), (0xFE, 1), (0x179, 2), (0x1A0, 1),
        (0x200, 0x70), (0x2FF, 1), (0x6E0, 1), (0x800, 0x100),
    ];

    private readonly KvmSystem _system;

    static KvmBackend() => System.Diagnostics.Debug.Assert(UserMsrs.Length <= KvmApi.MsrFilterMaxRanges, "one MSR filter holds 16 ranges");
    private readonly List<KvmVcpu> _vcpus = [];
    private KvmVcpu? _first;

    /// <summary>Creates the KVM VM over <paramref name="memory"/>'s RAM regions. Throws
    /// <see cref="KvmException"/> with a one-line reason when the host cannot.</summary>
    public KvmBackend(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _system = KvmSystem.Open();
        try
        {
            VmFd = KvmApi.Ioctl(_system.Fd, KvmApi.CreateVm, 0, "KVM_CREATE_VM");
            RunSize = KvmApi.Ioctl(_system.Fd, KvmApi.GetVcpuMmapSize, 0, "KVM_GET_VCPU_MMAP_SIZE");
            uint slot = 0;
            foreach (RamRegion r in memory.Regions)
            {
                var region = new KvmMemoryRegion { Slot = slot++, GuestPhysAddr = r.Gpa, MemorySize = r.Size, UserspaceAddr = (ulong)r.Host };
                KvmApi.Ioctl(VmFd, KvmApi.SetUserMemoryRegion, ref region, "KVM_SET_USER_MEMORY_REGION");
            }
            KvmApi.TryIoctl(VmFd, KvmApi.SetTssAddr, unchecked((nint)TssAddress));
            var cap = new KvmEnableCap { Cap = KvmApi.CapX86UserSpaceMsr, Arg0 = KvmApi.MsrExitReasonUnknown | KvmApi.MsrExitReasonFilter };
            KvmApi.Ioctl(VmFd, KvmApi.EnableCap, ref cap, "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)");
            SetMsrFilter();
            _first = new KvmVcpu(this, 0);
            _vcpus.Add(_first);
            int khz = KvmApi.TryIoctl(_first.Fd, KvmApi.GetTscKhz, 0);
            TscHz = khz > 0 ? (ulong)khz * 1000 : 0;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The VM descriptor.</summary>
    public int VmFd { get; private set; } = -1;

    /// <summary>Size of each vCPU's kvm_run mapping.</summary>
    public int RunSize { get; }

    /// <inheritdoc/>
    public string Name => "kvm";

    /// <inheritdoc/>
    /// <remarks>The host's TSC rate as KVM runs it for the guest.</remarks>
    public ulong TscHz { get; }

    /// <inheritdoc/>
    public IBackendVcpu CreateVcpu(int id)
    {
        if (id == 0 && _first != null)
        {
            KvmVcpu first = _first;
            _first = null;
            return first;
        }
        var v = new KvmVcpu(this, id);
        _vcpus.Add(v);
        return v;
    }

    private void SetMsrFilter()
    {
        byte* filter = stackalloc byte[KvmApi.MsrFilterSize];
        new Span<byte>(filter, KvmApi.MsrFilterSize).Clear();
        // SAFETY: filter is a zeroed stack buffer of sizeof(struct kvm_msr_filter); each range's
        // bitmap is a zeroed native block (all MSRs of the range denied to KVM, so they exit to user
        // space) that KVM copies during the ioctl and that is freed right after it.
        var bitmaps = new nint[UserMsrs.Length];
        try
        {
            *(uint*)filter = KvmApi.MsrFilterDefaultAllow;
            var ranges = (KvmMsrFilterRange*)(filter + KvmApi.MsrFilterRanges);
            for (int i = 0; i < UserMsrs.Length; i++)
            {
                bitmaps[i] = (nint)NativeMemory.AllocZeroed((UserMsrs[i].Count + 7) / 8);
                ranges[i] = new KvmMsrFilterRange
                {
                    Flags = KvmApi.MsrFilterRead | KvmApi.MsrFilterWrite,
                    Count = UserMsrs[i].Count,
                    Base = UserMsrs[i].First,
                    Bitmap = bitmaps[i],
                };
            }
            KvmApi.Ioctl(VmFd, KvmApi.X86SetMsrFilter, (nint)filter, "KVM_X86_SET_MSR_FILTER");
        }
        finally
        {
            foreach (nint b in bitmaps)
                NativeMemory.Free((void*)b);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (KvmVcpu v in _vcpus)
            v.Dispose();
        _vcpus.Clear();
        if (VmFd >= 0)
            KvmApi.Close(VmFd);
        VmFd = -1;
        _system.Dispose();
    }
}
