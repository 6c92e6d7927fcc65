/* User-mode trips for the CPU guest. user_call(fn, stack) enters CPL 3 at fn with SYSRET and
 * returns when fn executes SYSCALL; sysexit_call does the same with SYSEXIT and SYSENTER. The
 * entries record the registers the instructions define. */
#include "callee.h"
	.text
	.globl user_call, syscall_entry, sysexit_call, sysenter_entry
	.globl sys_rcx, sys_r11, sys_cs, sys_ss, kernel_rsp

user_call:
	SAVE_CALLEE
	mov %rsp, kernel_rsp(%rip)
	mov %rdi, %rcx
	mov $0x2, %r11
	mov %rsi, %rsp
	sysretq

syscall_entry:
	mov %rcx, sys_rcx(%rip)
	mov %r11, sys_r11(%rip)
	mov %cs, %rcx
	mov %rcx, sys_cs(%rip)
	mov %ss, %rcx
	mov %rcx, sys_ss(%rip)
back_to_kernel:
	mov kernel_rsp(%rip), %rsp
	RESTORE_CALLEE
	ret

sysexit_call:
	SAVE_CALLEE
	mov %rsp, kernel_rsp(%rip)
	mov %rdi, %rdx
	mov %rsi, %rcx
	sysexitq

sysenter_entry:
	mov %cs, %rcx
	mov %rcx, sys_cs(%rip)
	mov %ss, %rcx
	mov %rcx, sys_ss(%rip)
	jmp back_to_kernel

	.data
	.align 8
sys_rcx: .quad 0
sys_r11: .quad 0
sys_cs: .quad 0
sys_ss: .quad 0
kernel_rsp: .quad 0

	/* User-mode bodies: each ends with SYSCALL (or SYSENTER). */
	.text
	.globl u_segments, u_segments_ret, u_port_allowed, u_port_denied, u_port_denied_end
	.globl u_cli, u_cli_end, u_hlt, u_hlt_end, u_ac, u_ac_end, u_rdtsc, u_sysenter
	.globl user_cs, user_ss, user_value, u_movss, u_movss_end, u_movds, u_movds_end
u_segments:
	mov %cs, %rax
	mov %rax, user_cs(%rip)
	mov %ss, %rax
	mov %rax, user_ss(%rip)
	syscall
u_segments_ret:

u_port_allowed:
	inl $0xE0, %eax
	mov %rax, user_value(%rip)
	syscall

u_port_denied:
	inb $0x80, %al
u_port_denied_end:
	syscall

u_cli:	cli
u_cli_end:
	syscall

u_hlt:	hlt
u_hlt_end:
	syscall

u_ac:
	pushfq
	orq $0x40000, (%rsp)
	popfq
	mov user_buf+1(%rip), %eax
u_ac_end:
	pushfq
	andq $~0x40000, (%rsp)
	popfq
	syscall

u_rdtsc:
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, user_value(%rip)
	syscall

u_movss:
	mov $0x10, %ax
	mov %ax, %ss			/* a DPL 0 stack at CPL 3: #GP(0x10) */
u_movss_end:
	syscall

u_movds:
	mov $0x53, %ax
	mov %ax, %ds			/* the user data segment: fine (the GDT is read as a supervisor) */
	mov %ds, %rax
	mov %rax, user_value(%rip)
	mov $0x10, %ax
	mov %ax, %es			/* a DPL 0 data segment at CPL 3: #GP(0x10) */
u_movds_end:
	syscall

u_sysenter:
	mov %cs, %rax
	mov %rax, user_cs(%rip)
	sysenter

	/* Call gates from CPL 3: through a DPL 3 gate to CPL 0 and back with a far RET outward;
	 * through a DPL 0 gate (#GP), a gate marked not present (#NP), and a JMP through the DPL 3
	 * gate, which cannot raise the privilege (#GP on the target code segment). */
	.globl u_gate, u_gate_ret, u_gate_dpl, u_gate_dpl_end, u_gate_np, u_gate_np_end, u_gate_jmp, u_gate_jmp_end
	.globl gate_handler, gate_seen, gate_far3, gate_far0, gate_far_np, gate_far16, tss_far
	.globl k_gate_call, k_gate16, k_gate16_end, k_tss_jump, k_tss_jump_end
u_gate:
	lcall *gate_far3(%rip)
u_gate_ret:
	mov %ds, %rax
	mov %rax, user_value(%rip)
	mov %cs, %rax
	mov %rax, user_cs(%rip)
	mov %ss, %rax
	mov %rax, user_ss(%rip)
	syscall

u_gate_dpl:
	lcall *gate_far0(%rip)
u_gate_dpl_end:
	syscall

u_gate_np:
	lcall *gate_far_np(%rip)
u_gate_np_end:
	syscall

u_gate_jmp:
	ljmp *gate_far3(%rip)
u_gate_jmp_end:
	syscall

	/* The gates' target at CPL 0: what it runs with, and the frame the CALL left. */
gate_handler:
	mov %cs, %rax
	mov %rax, gate_seen(%rip)
	mov %ss, %rax
	mov %rax, gate_seen+8(%rip)
	mov %rsp, gate_seen+16(%rip)
	mov (%rsp), %rax
	mov %rax, gate_seen+24(%rip)
	mov 8(%rsp), %rax
	mov %rax, gate_seen+32(%rip)
	mov 16(%rsp), %rax
	mov %rax, gate_seen+40(%rip)
	mov 24(%rsp), %rax
	mov %rax, gate_seen+48(%rip)
	lretq

	/* From CPL 0: a CALL through the DPL 3 gate (no privilege change); a 16-bit call gate and a
	 * JMP to the TSS, both #GP in IA-32e mode. */
k_gate_call:
	lcall *gate_far3(%rip)
	ret
k_gate16:
	lcall *gate_far16(%rip)
k_gate16_end:
	ret
k_tss_jump:
	ljmp *tss_far(%rip)
k_tss_jump_end:
	ret

	/* k_compat_probe(selector, offset, how): in compatibility mode at CPL 0, loads DS (how 0:
	 * read, 2: write) or SS (how 1: read through EBP) with the selector and accesses 4 bytes at
	 * the offset through it; a fault resumes at compat_resume. */
	.globl k_compat_probe, compat_resume
k_compat_probe:
	push %rbx
	push %rbp
	mov %rsp, %rbx
	movl $compat_entry, compat_far(%rip)
	ljmp *compat_far(%rip)
	.code32
compat_entry:
	mov %edi, %eax
	cmp $1, %edx
	je 1f
	mov %ax, %ds
	cmp $2, %edx
	je 2f
	mov (%esi), %eax
	jmp compat_resume
2:	mov %eax, (%esi)
	jmp compat_resume
1:	mov %ax, %ss
	mov %esi, %ebp
	mov (%ebp), %eax
compat_resume:
	mov $0x10, %eax
	mov %ax, %ds
	mov %ax, %ss
	ljmp $0x08, $compat_back
	.code64
compat_back:
	mov %rbx, %rsp
	pop %rbp
	pop %rbx
	ret

	.data
	.align 16
compat_far: .long 0
	.word 0x18
	.align 16
gate_seen: .quad 0, 0, 0, 0, 0, 0, 0
gate_far3: .long 0
	.word 0x6B
gate_far0: .long 0
	.word 0x7B
gate_far_np: .long 0
	.word 0x8B
gate_far16: .long 0
	.word 0x98
tss_far: .long 0
	.word 0x40
	.align 16
user_cs: .quad 0
user_ss: .quad 0
user_value: .quad 0
user_buf: .quad 0, 0
