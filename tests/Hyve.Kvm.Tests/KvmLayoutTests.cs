// The interop layer against the kernel's own headers: a C program compiled with gcc at test time
// prints every ioctl number, constant, struct size and field offset the backend uses, and each
// must equal the C# side's.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.Kvm.Tests;

public sealed class KvmLayoutTests(ITestOutputHelper log)
{
    private static ulong Off<T>(string field) => (ulong)Marshal.OffsetOf<T>(field);

    private static ulong Size<T>() where T : unmanaged => (ulong)Unsafe.SizeOf<T>();

    private static Dictionary<string, ulong> Ours() => new()
    {
        ["KVM_GET_API_VERSION"] = KvmApi.GetApiVersion,
        ["KVM_CREATE_VM"] = KvmApi.CreateVm,
        ["KVM_CHECK_EXTENSION"] = KvmApi.CheckExtension,
        ["KVM_GET_VCPU_MMAP_SIZE"] = KvmApi.GetVcpuMmapSize,
        ["KVM_CREATE_VCPU"] = KvmApi.CreateVcpu,
        ["KVM_SET_USER_MEMORY_REGION"] = KvmApi.SetUserMemoryRegion,
        ["KVM_SET_TSS_ADDR"] = KvmApi.SetTssAddr,
        ["KVM_ENABLE_CAP"] = KvmApi.EnableCap,
        ["KVM_X86_SET_MSR_FILTER"] = KvmApi.X86SetMsrFilter,
        ["KVM_RUN"] = KvmApi.Run,
        ["KVM_GET_REGS"] = KvmApi.GetRegs,
        ["KVM_SET_REGS"] = KvmApi.SetRegs,
        ["KVM_GET_SREGS"] = KvmApi.GetSregs,
        ["KVM_SET_SREGS"] = KvmApi.SetSregs,
        ["KVM_GET_FPU"] = KvmApi.GetFpu,
        ["KVM_SET_FPU"] = KvmApi.SetFpu,
        ["KVM_GET_MSRS"] = KvmApi.GetMsrs,
        ["KVM_SET_MSRS"] = KvmApi.SetMsrs,
        ["KVM_SET_CPUID2"] = KvmApi.SetCpuid2,
        ["KVM_INTERRUPT"] = KvmApi.Interrupt,
        ["KVM_NMI"] = KvmApi.Nmi,
        ["KVM_GET_VCPU_EVENTS"] = KvmApi.GetVcpuEvents,
        ["KVM_SET_VCPU_EVENTS"] = KvmApi.SetVcpuEvents,
        ["KVM_SET_SIGNAL_MASK"] = KvmApi.SetSignalMask,
        ["KVM_GET_TSC_KHZ"] = KvmApi.GetTscKhz,
        ["KVM_CAP_IMMEDIATE_EXIT"] = KvmApi.CapImmediateExit,
        ["KVM_CAP_X86_USER_SPACE_MSR"] = KvmApi.CapX86UserSpaceMsr,
        ["KVM_CAP_X86_MSR_FILTER"] = KvmApi.CapX86MsrFilter,
        ["KVM_CAP_VCPU_EVENTS"] = KvmApi.CapVcpuEvents,
        ["KVM_EXIT_UNKNOWN"] = KvmApi.ExitUnknown,
        ["KVM_EXIT_EXCEPTION"] = KvmApi.ExitException,
        ["KVM_EXIT_IO"] = KvmApi.ExitIo,
        ["KVM_EXIT_HLT"] = KvmApi.ExitHlt,
        ["KVM_EXIT_MMIO"] = KvmApi.ExitMmio,
        ["KVM_EXIT_IRQ_WINDOW_OPEN"] = KvmApi.ExitIrqWindowOpen,
        ["KVM_EXIT_SHUTDOWN"] = KvmApi.ExitShutdown,
        ["KVM_EXIT_FAIL_ENTRY"] = KvmApi.ExitFailEntry,
        ["KVM_EXIT_INTR"] = KvmApi.ExitIntr,
        ["KVM_EXIT_INTERNAL_ERROR"] = KvmApi.ExitInternalError,
        ["KVM_EXIT_SYSTEM_EVENT"] = KvmApi.ExitSystemEvent,
        ["KVM_EXIT_X86_RDMSR"] = KvmApi.ExitX86Rdmsr,
        ["KVM_EXIT_X86_WRMSR"] = KvmApi.ExitX86Wrmsr,
        ["KVM_EXIT_IO_IN"] = KvmApi.ExitIoIn,
        ["KVM_EXIT_IO_OUT"] = KvmApi.ExitIoOut,
        ["KVM_MSR_EXIT_REASON_UNKNOWN"] = KvmApi.MsrExitReasonUnknown,
        ["KVM_MSR_EXIT_REASON_FILTER"] = KvmApi.MsrExitReasonFilter,
        ["KVM_MSR_FILTER_READ"] = KvmApi.MsrFilterRead,
        ["KVM_MSR_FILTER_WRITE"] = KvmApi.MsrFilterWrite,
        ["KVM_MSR_FILTER_DEFAULT_ALLOW"] = KvmApi.MsrFilterDefaultAllow,
        ["KVM_MSR_FILTER_MAX_RANGES"] = KvmApi.MsrFilterMaxRanges,
        ["KVM_CPUID_FLAG_SIGNIFCANT_INDEX"] = KvmApi.CpuidFlagSignificantIndex,
        ["KVM_INTERNAL_ERROR_EMULATION"] = KvmApi.InternalErrorEmulation,
        ["KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES"] = KvmApi.EmulationFailureHasBytes,
        ["sizeof kvm_run"] = KvmApi.RunOffset.Size,
        ["kvm_run.request_interrupt_window"] = KvmApi.RunOffset.RequestInterruptWindow,
        ["kvm_run.immediate_exit"] = KvmApi.RunOffset.ImmediateExit,
        ["kvm_run.exit_reason"] = KvmApi.RunOffset.ExitReason,
        ["kvm_run.ready_for_interrupt_injection"] = KvmApi.RunOffset.ReadyForInterruptInjection,
        ["kvm_run.if_flag"] = KvmApi.RunOffset.IfFlag,
        ["kvm_run.cr8"] = KvmApi.RunOffset.Cr8,
        ["kvm_run.apic_base"] = KvmApi.RunOffset.ApicBase,
        ["kvm_run.io.direction"] = KvmApi.RunOffset.IoDirection,
        ["kvm_run.io.size"] = KvmApi.RunOffset.IoSize,
        ["kvm_run.io.port"] = KvmApi.RunOffset.IoPort,
        ["kvm_run.io.count"] = KvmApi.RunOffset.IoCount,
        ["kvm_run.io.data_offset"] = KvmApi.RunOffset.IoDataOffset,
        ["kvm_run.mmio.phys_addr"] = KvmApi.RunOffset.MmioPhysAddr,
        ["kvm_run.mmio.data"] = KvmApi.RunOffset.MmioData,
        ["kvm_run.mmio.len"] = KvmApi.RunOffset.MmioLen,
        ["kvm_run.mmio.is_write"] = KvmApi.RunOffset.MmioIsWrite,
        ["kvm_run.fail_entry.hardware_entry_failure_reason"] = KvmApi.RunOffset.FailEntryReason,
        ["kvm_run.internal.suberror"] = KvmApi.RunOffset.InternalSuberror,
        ["kvm_run.internal.ndata"] = KvmApi.RunOffset.InternalNdata,
        ["kvm_run.internal.data"] = KvmApi.RunOffset.InternalData,
        ["kvm_run.emulation_failure.flags"] = KvmApi.RunOffset.EmulationFailureFlags,
        ["kvm_run.emulation_failure.insn_size"] = KvmApi.RunOffset.EmulationFailureInsnSize,
        ["kvm_run.emulation_failure.insn_bytes"] = KvmApi.RunOffset.EmulationFailureInsnBytes,
        ["kvm_run.system_event.type"] = KvmApi.RunOffset.SystemEventType,
        ["kvm_run.msr.error"] = KvmApi.RunOffset.MsrError,
        ["kvm_run.msr.index"] = KvmApi.RunOffset.MsrIndex,
        ["kvm_run.msr.data"] = KvmApi.RunOffset.MsrData,
        ["sizeof kvm_regs"] = Size<KvmRegs>(),
        ["kvm_regs.rax"] = Off<KvmRegs>("Rax"),
        ["kvm_regs.rsp"] = Off<KvmRegs>("Rsp"),
        ["kvm_regs.r15"] = Off<KvmRegs>("R15"),
        ["kvm_regs.rip"] = Off<KvmRegs>("Rip"),
        ["kvm_regs.rflags"] = Off<KvmRegs>("Rflags"),
        ["sizeof kvm_segment"] = Size<KvmSegment>(),
        ["kvm_segment.base"] = Off<KvmSegment>("Base"),
        ["kvm_segment.limit"] = Off<KvmSegment>("Limit"),
        ["kvm_segment.selector"] = Off<KvmSegment>("Selector"),
        ["kvm_segment.type"] = Off<KvmSegment>("Type"),
        ["kvm_segment.present"] = Off<KvmSegment>("Present"),
        ["kvm_segment.dpl"] = Off<KvmSegment>("Dpl"),
        ["kvm_segment.db"] = Off<KvmSegment>("Db"),
        ["kvm_segment.s"] = Off<KvmSegment>("S"),
        ["kvm_segment.l"] = Off<KvmSegment>("L"),
        ["kvm_segment.g"] = Off<KvmSegment>("G"),
        ["kvm_segment.avl"] = Off<KvmSegment>("Avl"),
        ["kvm_segment.unusable"] = Off<KvmSegment>("Unusable"),
        ["sizeof kvm_dtable"] = Size<KvmDtable>(),
        ["kvm_dtable.base"] = Off<KvmDtable>("Base"),
        ["kvm_dtable.limit"] = Off<KvmDtable>("Limit"),
        ["sizeof kvm_sregs"] = Size<KvmSregs>(),
        ["kvm_sregs.cs"] = Off<KvmSregs>("Cs"),
        ["kvm_sregs.ds"] = Off<KvmSregs>("Ds"),
        ["kvm_sregs.es"] = Off<KvmSregs>("Es"),
        ["kvm_sregs.fs"] = Off<KvmSregs>("Fs"),
        ["kvm_sregs.gs"] = Off<KvmSregs>("Gs"),
        ["kvm_sregs.ss"] = Off<KvmSregs>("Ss"),
        ["kvm_sregs.tr"] = Off<KvmSregs>("Tr"),
        ["kvm_sregs.ldt"] = Off<KvmSregs>("Ldt"),
        ["kvm_sregs.gdt"] = Off<KvmSregs>("Gdt"),
        ["kvm_sregs.idt"] = Off<KvmSregs>("Idt"),
        ["kvm_sregs.cr0"] = Off<KvmSregs>("Cr0"),
        ["kvm_sregs.cr2"] = Off<KvmSregs>("Cr2"),
        ["kvm_sregs.cr3"] = Off<KvmSregs>("Cr3"),
        ["kvm_sregs.cr4"] = Off<KvmSregs>("Cr4"),
        ["kvm_sregs.cr8"] = Off<KvmSregs>("Cr8"),
        ["kvm_sregs.efer"] = Off<KvmSregs>("Efer"),
        ["kvm_sregs.apic_base"] = Off<KvmSregs>("ApicBase"),
        ["kvm_sregs.interrupt_bitmap"] = Off<KvmSregs>("Bitmap0"),
        ["sizeof kvm_fpu"] = Size<KvmFpu>(),
        ["kvm_fpu.fpr"] = Off<KvmFpu>("Fpr"),
        ["kvm_fpu.fcw"] = Off<KvmFpu>("Fcw"),
        ["kvm_fpu.xmm"] = Off<KvmFpu>("Xmm"),
        ["kvm_fpu.mxcsr"] = Off<KvmFpu>("Mxcsr"),
        ["sizeof kvm_msr_entry"] = Size<KvmMsrEntry>(),
        ["kvm_msr_entry.index"] = Off<KvmMsrEntry>("Index"),
        ["kvm_msr_entry.data"] = Off<KvmMsrEntry>("Data"),
        ["sizeof kvm_msrs"] = Off<KvmMsrs1>("Entry"),
        ["sizeof kvm_cpuid_entry2"] = Size<KvmCpuidEntry>(),
        ["kvm_cpuid_entry2.function"] = Off<KvmCpuidEntry>("Function"),
        ["kvm_cpuid_entry2.index"] = Off<KvmCpuidEntry>("Index"),
        ["kvm_cpuid_entry2.flags"] = Off<KvmCpuidEntry>("Flags"),
        ["kvm_cpuid_entry2.eax"] = Off<KvmCpuidEntry>("Eax"),
        ["kvm_cpuid_entry2.edx"] = Off<KvmCpuidEntry>("Edx"),
        ["sizeof kvm_cpuid2"] = KvmApi.Cpuid2Header,
        ["sizeof kvm_userspace_memory_region"] = Size<KvmMemoryRegion>(),
        ["kvm_userspace_memory_region.guest_phys_addr"] = Off<KvmMemoryRegion>("GuestPhysAddr"),
        ["kvm_userspace_memory_region.memory_size"] = Off<KvmMemoryRegion>("MemorySize"),
        ["kvm_userspace_memory_region.userspace_addr"] = Off<KvmMemoryRegion>("UserspaceAddr"),
        ["sizeof kvm_enable_cap"] = Size<KvmEnableCap>(),
        ["kvm_enable_cap.args"] = Off<KvmEnableCap>("Arg0"),
        ["sizeof kvm_msr_filter_range"] = Size<KvmMsrFilterRange>(),
        ["kvm_msr_filter_range.nmsrs"] = Off<KvmMsrFilterRange>("Count"),
        ["kvm_msr_filter_range.base"] = Off<KvmMsrFilterRange>("Base"),
        ["kvm_msr_filter_range.bitmap"] = Off<KvmMsrFilterRange>("Bitmap"),
        ["sizeof kvm_msr_filter"] = KvmApi.MsrFilterSize,
        ["kvm_msr_filter.ranges"] = KvmApi.MsrFilterRanges,
        ["sizeof kvm_vcpu_events"] = Size<KvmVcpuEvents>(),
        ["kvm_vcpu_events.exception"] = Off<KvmVcpuEvents>("ExceptionInjected"),
        ["kvm_vcpu_events.interrupt"] = Off<KvmVcpuEvents>("InterruptInjected"),
        ["kvm_vcpu_events.nmi"] = Off<KvmVcpuEvents>("NmiInjected"),
        ["kvm_vcpu_events.sipi_vector"] = Off<KvmVcpuEvents>("SipiVector"),
        ["kvm_vcpu_events.flags"] = Off<KvmVcpuEvents>("Flags"),
        ["sizeof kvm_interrupt"] = sizeof(uint),
        ["sizeof kvm_signal_mask"] = KvmApi.SignalMaskHeader,
        ["kernel sigset bytes"] = KvmApi.KernelSigsetSize,
    };

    [Fact]
    public void EveryNumberSizeAndOffsetMatchesTheKernelHeaders()
    {
        string source = Path.Combine(AppContext.BaseDirectory, "Native", "kvm_layout.c");
        string exe = Path.Combine(Path.GetTempPath(), $"hyve-kvm-layout-{Environment.ProcessId}");
        try
        {
            Run("gcc", $"-O0 -o {exe} {source}");
            string output = Run(exe, "");
            Dictionary<string, ulong> ours = Ours();
            int compared = 0;
            foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                int at = line.LastIndexOf(' ');
                string name = line[..at];
                ulong headers = ulong.Parse(line[(at + 1)..], System.Globalization.CultureInfo.InvariantCulture);
                Assert.True(ours.TryGetValue(name, out ulong mine), $"the C side prints {name}, which the test does not know");
                Assert.True(headers == mine, $"{name}: headers {headers}, Hyve.Kvm {mine}");
                compared++;
            }
            log.WriteLine($"{compared} numbers, sizes and offsets equal to <linux/kvm.h>");
            Assert.Equal(ours.Count, compared);
        }
        finally
        {
            File.Delete(exe);
        }
    }

    private static string Run(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {args}: exit {p.ExitCode}: {error}");
        return output;
    }
}
