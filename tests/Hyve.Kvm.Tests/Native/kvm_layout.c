/* Prints the KVM API facts Hyve.Kvm's interop layer relies on, one "name value" pair per line,
 * from the kernel's own headers: ioctl numbers, constants, struct sizes and field offsets. */
#include <linux/kvm.h>
#include <stddef.h>
#include <stdio.h>

#define V(name, value) printf("%s %llu\n", name, (unsigned long long)(value))
#define C(x) V(#x, x)
#define S(t) V("sizeof " #t, sizeof(struct t))
#define O(t, f) V(#t "." #f, offsetof(struct t, f))

int main(void)
{
	C(KVM_GET_API_VERSION); C(KVM_CREATE_VM); C(KVM_CHECK_EXTENSION); C(KVM_GET_VCPU_MMAP_SIZE);
	C(KVM_CREATE_VCPU); C(KVM_SET_USER_MEMORY_REGION); C(KVM_SET_TSS_ADDR);
	C(KVM_ENABLE_CAP); C(KVM_X86_SET_MSR_FILTER); C(KVM_RUN);
	C(KVM_GET_REGS); C(KVM_SET_REGS); C(KVM_GET_SREGS); C(KVM_SET_SREGS); C(KVM_GET_FPU); C(KVM_SET_FPU);
	C(KVM_GET_MSRS); C(KVM_SET_MSRS); C(KVM_SET_CPUID2); C(KVM_INTERRUPT); C(KVM_NMI);
	C(KVM_GET_VCPU_EVENTS); C(KVM_SET_VCPU_EVENTS); C(KVM_SET_SIGNAL_MASK); C(KVM_GET_TSC_KHZ);
	C(KVM_CAP_IMMEDIATE_EXIT); C(KVM_CAP_X86_USER_SPACE_MSR); C(KVM_CAP_X86_MSR_FILTER);
	C(KVM_CAP_VCPU_EVENTS);
	C(KVM_EXIT_UNKNOWN); C(KVM_EXIT_EXCEPTION); C(KVM_EXIT_IO); C(KVM_EXIT_HLT); C(KVM_EXIT_MMIO);
	C(KVM_EXIT_IRQ_WINDOW_OPEN); C(KVM_EXIT_SHUTDOWN); C(KVM_EXIT_FAIL_ENTRY); C(KVM_EXIT_INTR);
	C(KVM_EXIT_INTERNAL_ERROR); C(KVM_EXIT_SYSTEM_EVENT); C(KVM_EXIT_X86_RDMSR); C(KVM_EXIT_X86_WRMSR);
	C(KVM_EXIT_IO_IN); C(KVM_EXIT_IO_OUT);
	C(KVM_MSR_EXIT_REASON_UNKNOWN); C(KVM_MSR_EXIT_REASON_FILTER); C(KVM_MSR_FILTER_READ); C(KVM_MSR_FILTER_WRITE);
	C(KVM_MSR_FILTER_DEFAULT_ALLOW); C(KVM_MSR_FILTER_MAX_RANGES); C(KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	S(kvm_run); O(kvm_run, request_interrupt_window); O(kvm_run, immediate_exit); O(kvm_run, exit_reason);
	O(kvm_run, ready_for_interrupt_injection); O(kvm_run, if_flag); O(kvm_run, cr8); O(kvm_run, apic_base);
	O(kvm_run, io.direction); O(kvm_run, io.size); O(kvm_run, io.port); O(kvm_run, io.count); O(kvm_run, io.data_offset);
	O(kvm_run, mmio.phys_addr); O(kvm_run, mmio.data); O(kvm_run, mmio.len); O(kvm_run, mmio.is_write);
	O(kvm_run, fail_entry.hardware_entry_failure_reason); O(kvm_run, internal.suberror); O(kvm_run, internal.ndata);
	O(kvm_run, internal.data); O(kvm_run, emulation_failure.flags); O(kvm_run, emulation_failure.insn_size);
	O(kvm_run, emulation_failure.insn_bytes); C(KVM_INTERNAL_ERROR_EMULATION); C(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES);
	O(kvm_run, system_event.type); O(kvm_run, msr.error);
	O(kvm_run, msr.index); O(kvm_run, msr.data);
	S(kvm_regs); O(kvm_regs, rax); O(kvm_regs, rsp); O(kvm_regs, r15); O(kvm_regs, rip); O(kvm_regs, rflags);
	S(kvm_segment); O(kvm_segment, base); O(kvm_segment, limit); O(kvm_segment, selector); O(kvm_segment, type);
	O(kvm_segment, present); O(kvm_segment, dpl); O(kvm_segment, db); O(kvm_segment, s); O(kvm_segment, l);
	O(kvm_segment, g); O(kvm_segment, avl); O(kvm_segment, unusable);
	S(kvm_dtable); O(kvm_dtable, base); O(kvm_dtable, limit);
	S(kvm_sregs); O(kvm_sregs, cs); O(kvm_sregs, ds); O(kvm_sregs, es); O(kvm_sregs, fs); O(kvm_sregs, gs);
	O(kvm_sregs, ss); O(kvm_sregs, tr); O(kvm_sregs, ldt); O(kvm_sregs, gdt); O(kvm_sregs, idt); O(kvm_sregs, cr0);
	O(kvm_sregs, cr2); O(kvm_sregs, cr3); O(kvm_sregs, cr4); O(kvm_sregs, cr8); O(kvm_sregs, efer);
	O(kvm_sregs, apic_base); O(kvm_sregs, interrupt_bitmap);
	S(kvm_fpu); O(kvm_fpu, fpr); O(kvm_fpu, fcw); O(kvm_fpu, xmm); O(kvm_fpu, mxcsr);
	S(kvm_msr_entry); O(kvm_msr_entry, index); O(kvm_msr_entry, data); S(kvm_msrs);
	S(kvm_cpuid_entry2); O(kvm_cpuid_entry2, function); O(kvm_cpuid_entry2, index); O(kvm_cpuid_entry2, flags);
	O(kvm_cpuid_entry2, eax); O(kvm_cpuid_entry2, edx); S(kvm_cpuid2);
	S(kvm_userspace_memory_region); O(kvm_userspace_memory_region, guest_phys_addr);
	O(kvm_userspace_memory_region, memory_size); O(kvm_userspace_memory_region, userspace_addr);
	S(kvm_enable_cap); O(kvm_enable_cap, args);
	S(kvm_msr_filter_range); O(kvm_msr_filter_range, nmsrs); O(kvm_msr_filter_range, base); O(kvm_msr_filter_range, bitmap);
	S(kvm_msr_filter); O(kvm_msr_filter, ranges);
	S(kvm_vcpu_events); O(kvm_vcpu_events, exception); O(kvm_vcpu_events, interrupt); O(kvm_vcpu_events, nmi);
	O(kvm_vcpu_events, sipi_vector); O(kvm_vcpu_events, flags);
	S(kvm_interrupt); V("sizeof kvm_signal_mask", sizeof(struct kvm_signal_mask));
	V("kernel sigset bytes", sizeof(unsigned long));
	return 0;
}
