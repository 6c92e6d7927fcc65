/* Faulting snippets for the exceptions guest: each label is a function that raises one
 * exception; the matching _end label is where the handler resumes it. */
	.text
	.macro SNIPPET name
	.globl \name, \name\()_end
	.endm

	SNIPPET de_div
de_div:	xor %ecx, %ecx
	div %ecx
de_div_end:
	ret

	SNIPPET ud_ud2
ud_ud2:	ud2
ud_ud2_end:
	ret

	SNIPPET bp_int3
bp_int3: int3
bp_int3_end:
	ret

	SNIPPET gp_noncanonical
gp_noncanonical:
	movabs $0x8000000000000000, %rax
	mov (%rax), %rax
gp_noncanonical_end:
	ret

	SNIPPET gp_privileged_port_msr
gp_privileged_port_msr:
	mov $0x12345678, %ecx		/* an MSR nobody implements */
	rdmsr
gp_privileged_port_msr_end:
	ret

	SNIPPET ss_noncanonical
ss_noncanonical:
	push %rbp
	movabs $0x8000000000000000, %rbp
	mov (%rbp), %rax
ss_noncanonical_end:
	pop %rbp
	ret

	SNIPPET nm_fwait
nm_fwait:
	fwait
nm_fwait_end:
	ret

	/* Single step: TF on for five instructions (nop, nop, pushfq, andq, popfq). */
	.globl single_step
single_step:
	pushfq
	orq $0x100, (%rsp)
	popfq
	nop
	nop
	pushfq
	andq $~0x100, (%rsp)
	popfq
	ret

	/* A read at (%rdi), resumed at the _end label. */
	SNIPPET touch_read
touch_read:
	mov (%rdi), %rax
touch_read_end:
	ret

	SNIPPET touch_write
touch_write:
	movq $1, (%rdi)
touch_write_end:
	ret

	SNIPPET touch_call
touch_call:
	call *%rdi
touch_call_end:
	ret
