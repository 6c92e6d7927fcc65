/* The mode tour: from 64-bit mode to compatibility mode, out of long mode to 32-bit protected
 * mode without paging (with a visit to virtual-8086 mode), then with 32-bit paging (4 MiB
 * pages), then with PAE paging, then to 16-bit protected mode and real mode (code copied below
 * 64 KiB), and back up to 64-bit mode.
 * In each mode it writes and reads pc-testdev memory and stores what it read in the results
 * array (EBX all the way). */
#include "callee.h"
	.text
	.code64
	.globl mode_tour, pd32, pae_pdpt, probe_va32, low16, low16_end, msg, gate32_target, task_b_entry, after_task
	.globl v86_gp, v86_cli, idt32
mode_tour:
	SAVE_CALLEE
	mov %rsp, saved_rsp(%rip)
	mov %rdi, %rbx
	pushq $0x18
	lea compat32(%rip), %rax
	push %rax
	lretq

	.code32
compat32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	movl $0xC0A1C0A1, 0xFF000200
	movl 0xFF000200, %eax
	mov %eax, 0(%ebx)
	mov $0xC0000080, %ecx
	rdmsr
	mov %eax, 4(%ebx)			/* EFER in compatibility mode: LMA set */

	/* Out of long mode: paging off (LMA clears), then LME off. */
	mov %cr0, %eax
	and $0x7FFFFFFF, %eax
	mov %eax, %cr0
	mov $0xC0000080, %ecx
	rdmsr
	mov %eax, 8(%ebx)			/* LMA clear now */
	and $~0x100, %eax
	wrmsr
	movl $0xB0B0B0B0, 0xFF000204
	movl 0xFF000204, %eax
	mov %eax, 12(%ebx)
	call legacy32
	mov %eax, 112(%ebx)			/* the legacy set in 32-bit code */
	mov %edx, 116(%ebx)
	mov %esi, 120(%ebx)

	/* A 32-bit call gate (one parameter on the stack) and a CALL through a task gate, which
	 * the other task returns from with IRET; main fills in the descriptors and TSSs. */
	pushl $0x6A7E6A7E
	lcall $0x68, $0
	mov $0x70, %ax
	ltr %ax
	lcall $0x80, $0
after_task:
	clts				/* the task switch set CR0.TS */
	mov tss_a+32, %eax
	mov %eax, 60(%ebx)		/* the EIP the switch saved in this task's TSS */

	/* Virtual-8086 mode: IRET (VM set, IOPL 0) into the 8086 code copied to 0x7000 (CS 0x0700,
	 * DS 0x0700, ES 0x0900, stack 0700:0F00); its CLI raises #GP, which a 32-bit IDT sends to
	 * v86_gp on TSS A's CPL 0 stack, and that comes back to v86_back. */
	sidt saved_idt
	lidt idt32_ptr
	mov %esp, v86_esp
	pushl $0			/* GS */
	pushl $0			/* FS */
	pushl $0x0700			/* DS */
	pushl $0x0900			/* ES */
	pushl $0x0700			/* SS */
	pushl $0x0F00			/* SP */
	pushl $0x00020002		/* EFLAGS: VM, IOPL 0 */
	pushl $0x0700			/* CS */
	pushl $(v86_code - low16)	/* IP */
	iret
v86_back:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	lidt saved_idt
	mov 0x9000, %eax
	mov %eax, 80(%ebx)		/* what the 8086 code stored through ES */

	/* 32-bit paging with 4 MiB pages. */
	mov %cr4, %eax
	and $~0x20, %eax
	or $0x10, %eax
	mov %eax, %cr4
	mov $pd32, %eax
	mov %eax, %cr3
	mov %cr0, %eax
	or $0x80000000, %eax
	mov %eax, %cr0
	movl $0x32323232, 0xFF000208
	movl 0xFF000208, %eax
	mov %eax, 16(%ebx)
	mov probe_va32, %esi
	mov (%esi), %eax
	mov %eax, 20(%ebx)			/* through a 4 MiB page that is not identity-mapped */

	/* PAE paging. */
	mov %cr0, %eax
	and $0x7FFFFFFF, %eax
	mov %eax, %cr0
	mov %cr4, %eax
	or $0x20, %eax
	mov %eax, %cr4
	mov $pae_pdpt, %eax
	mov %eax, %cr3
	mov %cr0, %eax
	or $0x80000000, %eax
	mov %eax, %cr0
	movl $0xAEAEAEAE, 0xFF00020C
	movl 0xFF00020C, %eax
	mov %eax, 24(%ebx)
	mov %cr0, %eax
	and $0x7FFFFFFF, %eax
	mov %eax, %cr0

	/* 16-bit protected mode, at the copy below 64 KiB. */
	ljmp $0x20, $0x7000

back32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $pml4, %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax
	mov %eax, %cr0
	ljmp $0x08, $back64

	.code64
back64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov saved_rsp(%rip), %rsp
	RESTORE_CALLEE
	ret

	/* Copied to 0x7000: 16-bit protected mode, then real mode (CS 0x0700). */
	.section .rodata
	.code16
low16:
	mov $0x28, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0xFF000210, %esi
	mov $0x16161616, %eax
	addr32 movl %eax, (%esi)
	addr32 movl (%esi), %eax
	addr32 movl %eax, 28(%ebx)
	/* REP OUTSB with 16-bit addresses: SI and CX count, the latch keeps the last byte. */
	mov $(0x7000 + msg - low16), %si
	mov $4, %cx
	mov $0xE8, %dx
	cld
	rep outsb
	addr32 movw %si, 32(%ebx)
	addr32 movw %cx, 34(%ebx)
	movw $0x28, 0x6F22			/* LES loads this selector */
	movb $1, 0x6F28				/* and ARPL runs (protected mode) */
	mov $0x6F02, %esp			/* 0x6F00 once the call has pushed IP */
	call legacy16
	addr32 movl %eax, 88(%ebx)
	addr32 movl %edx, 92(%ebx)
	addr32 movl %esi, 96(%ebx)
	mov %cr0, %eax
	and $~1, %eax
	mov %eax, %cr0
	ljmp $0x0700, $(real - low16)
real:
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %ss
	mov %cs, %ax
	addr32 movw %ax, 36(%ebx)
	mov $0xFF000214, %esi
	mov $0x80868086, %eax
	addr32 movl %eax, (%esi)		/* DS keeps its 4 GiB limit from protected mode */
	addr32 movl (%esi), %eax
	addr32 movl %eax, 40(%ebx)
	mov $0x5A, %al
	out %al, $0xE0
	xor %al, %al
	in $0xE0, %al
	addr32 movb %al, 44(%ebx)
	movw $0x0900, 0x6F22			/* LES loads this segment */
	movb $0, 0x6F28				/* ARPL is #UD in real mode */
	mov $0x6F02, %esp			/* 0x6F00 once the call has pushed IP */
	call legacy16
	addr32 movl %eax, 100(%ebx)
	addr32 movl %edx, 104(%ebx)
	addr32 movl %esi, 108(%ebx)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x18, $back32
	/* Virtual-8086 mode (entered from 32-bit protected mode at IOPL 0). */
v86_code:
	mov $0x19, %al
	add $0x28, %al
	daa				/* AL = 0x47 */
	xor %ah, %ah
	mov $0x0102, %cx
	pusha
	xor %cx, %cx
	popa				/* CX is 0x0102 again */
	mov %ax, %es:0
	mov %cx, %es:2
v86_cli:
	cli				/* IOPL-sensitive: #GP(0) */
	jmp v86_cli
	/* The legacy set in 16-bit code, run in 16-bit protected mode and in real mode, with its
	 * stack at 0x6F00 (the caller's return IP above it): the BCD adjustments and SALC summed into EAX; PUSHA/POPA and ENTER/LEAVE
	 * (the SPs, the pushed SP, a copied frame pointer) into EDX; LES of the far pointer at
	 * 0x6F20 (its segment set by the caller), BOUND in range and, where 0x6F28 says so, ARPL
	 * (its result and ZF) into ESI. */
legacy16:
	mov $0x19, %al
	add $0x28, %al
	daa				/* 0x47 */
	movzbl %al, %esi
	mov $0x47, %al
	sub $0x19, %al
	das				/* 0x28 */
	movzbl %al, %eax
	shl $8, %eax
	add %eax, %esi
	mov $0x0009, %ax
	add $0x08, %al
	aaa				/* AX 0x0107 */
	movzwl %ax, %eax
	add %eax, %esi
	mov $0x0203, %ax
	sub $0x05, %al
	aas				/* AX 0x0108 */
	movzwl %ax, %eax
	add %eax, %esi
	mov $0x003F, %ax
	aam				/* AX 0x0603 */
	movzwl %ax, %eax
	add %eax, %esi
	aad				/* AX 0x003F */
	movzwl %ax, %eax
	add %eax, %esi
	mov $0x00AB, %ax
	aam $16				/* AX 0x0A0B */
	movzwl %ax, %eax
	add %eax, %esi
	stc
	.byte 0xD6			/* SALC: AL 0xFF */
	movzbl %al, %eax
	add %esi, %eax			/* 0x3BA2 */
	push %eax
	mov $0x0102, %cx
	pusha
	mov %sp, %si			/* 0x6EEC: PUSHA pushed eight words below the saved EAX */
	mov 6(%si), %dx			/* the SP it pushed: 0x6EFC */
	mov %dx, 0x6F30
	xor %cx, %cx
	popa				/* CX 0x0102 again */
	movzwl %cx, %edx
	shl $16, %edx
	movzwl 0x6F30, %eax
	add %eax, %edx
	movzwl %sp, %eax
	add %eax, %edx			/* + 0x6EFC */
	movw $0xBEEF, 0x6F0E
	mov $0x6F10, %ebp
	enter $4, $2			/* pushes BP, the word at BP - 2, the new frame */
	movzwl %sp, %eax
	add %eax, %edx
	movzwl 0x6EF8, %eax		/* the copied word */
	add %eax, %edx
	movzwl %bp, %eax
	add %eax, %edx
	leave
	movzwl %bp, %eax
	add %eax, %edx
	movzwl %sp, %eax
	add %eax, %edx
	movw $0x1234, 0x6F20
	les 0x6F20, %di
	mov %es, %ax
	movzwl %ax, %esi
	shl $16, %esi
	movzwl %di, %eax
	add %eax, %esi
	movw $0xFFFE, 0x6F24
	movw $0x000A, 0x6F26
	mov $5, %ax
	bound %ax, 0x6F24		/* in range: no #BR */
	add $0x100, %esi
	cmpb $1, 0x6F28
	jne 1f
	mov $0x28, %ax
	mov $3, %cx
	arpl %cx, %ax			/* AX 0x2B, ZF set */
	pushf
	pop %cx
	and $0x40, %cx
	add %cx, %ax
	movzwl %ax, %eax
	add %eax, %esi
1:	pop %eax
	ret
msg:	.ascii "mode"
low16_end:

	.data
	.align 8
legacy_frame:	.long 0x0F0F0F0F, 0x22222222, 0x11111111, 0
legacy_far:	.long 0, 0
legacy_bounds:	.long 0, 0
legacy_scratch:	.long 0
saved_rsp:	.quad 0
probe_va32:	.long 0
v86_esp:	.long 0
saved_idt:	.word 0
		.quad 0
idt32_ptr:	.word 14 * 8 - 1
		.long idt32
	.align 8
idt32:		.skip 14 * 8
	.bss
	.align 4096
pd32:		.skip 4096
pae_pdpt:	.skip 32

	.text
	.code32
	/* The legacy set in 32-bit code: the BCD adjustments and SALC summed into EAX; PUSHAD/
	 * POPAD and ENTER/LEAVE (distances between stack pointers, the pushed ESP, copied frame
	 * pointers) into EDX; LES of a 6-byte pointer, BOUND in range and ARPL into ESI. */
legacy32:
	push %ebx
	push %ebp
	push %edi
	mov $0x19, %al
	add $0x28, %al
	daa
	movzbl %al, %esi
	mov $0x47, %al
	sub $0x19, %al
	das
	movzbl %al, %eax
	shl $8, %eax
	add %eax, %esi
	mov $0x0009, %ax
	add $0x08, %al
	aaa
	movzwl %ax, %eax
	add %eax, %esi
	mov $0x0203, %ax
	sub $0x05, %al
	aas
	movzwl %ax, %eax
	add %eax, %esi
	mov $0x003F, %ax
	aam
	movzwl %ax, %eax
	add %eax, %esi
	aad
	movzwl %ax, %eax
	add %eax, %esi
	mov $0x00AB, %ax
	aam $16
	movzwl %ax, %eax
	add %eax, %esi
	stc
	.byte 0xD6			/* SALC */
	movzbl %al, %eax
	add %esi, %eax			/* 0x3BA2, as in 16-bit code */
	push %eax
	mov %esp, %ebp
	mov $0x01020304, %ecx
	pushal
	mov 12(%esp), %edx		/* the ESP PUSHAD pushed */
	sub %esp, %edx			/* 32 */
	mov %edx, legacy_scratch
	xor %ecx, %ecx
	popal
	mov %ecx, %edx			/* 0x01020304 */
	add legacy_scratch, %edx
	mov %esp, %edi
	sub %ebp, %edi			/* 0 */
	add %edi, %edx
	mov %esp, %edi
	mov $legacy_frame + 12, %ebp	/* frame pointers at EBP - 4 and EBP - 8 */
	enter $8, $3
	mov %edi, %eax
	sub %esp, %eax			/* 4 + 8 + 4 + 8 = 24 */
	add %eax, %edx
	mov -4(%ebp), %eax		/* the first copied frame pointer */
	add %eax, %edx
	mov -8(%ebp), %eax		/* the second */
	add %eax, %edx
	leave
	mov %ebp, %eax
	sub $legacy_frame, %eax		/* 12 */
	add %eax, %edx
	mov %edi, %eax
	sub %esp, %eax			/* 0 */
	add %eax, %edx
	movl $0x12345678, legacy_far
	movw $0x10, legacy_far + 4
	les legacy_far, %edi
	mov %es, %ax
	movzwl %ax, %esi
	add %edi, %esi			/* 0x12345688 */
	mov $0x10, %ax
	mov %ax, %es
	movl $-2, legacy_bounds
	movl $10, legacy_bounds + 4
	mov $5, %eax
	bound %eax, legacy_bounds
	add $0x100, %esi
	mov $0x28, %ax
	mov $3, %cx
	arpl %cx, %ax
	pushf
	pop %ecx
	and $0x40, %ecx
	add %cx, %ax
	movzwl %ax, %eax
	add %eax, %esi
	pop %eax
	pop %edi
	pop %ebp
	pop %ebx
	ret

gate32_target:				/* through the call gate: CS 0x18, CPL 0 */
	mov 8(%esp), %eax		/* the caller's parameter, above its CS and EIP */
	mov %eax, 48(%ebx)
	mov %cs, %eax
	mov %eax, 52(%ebx)
	lret $4

v86_gp:					/* #GP from virtual-8086 mode, CPL 0 */
	mov %ds, %ecx			/* null: the 8086 segments are on the stack */
	mov $0x10, %ax
	mov %ax, %ds			/* (before any access through DS) */
	mov %ecx, 84(%ebx)
	mov 0(%esp), %eax		/* error code */
	mov %eax, 64(%ebx)
	mov 4(%esp), %eax		/* EIP */
	mov %eax, 68(%ebx)
	mov 8(%esp), %eax		/* CS << 16 | ES */
	shl $16, %eax
	or 24(%esp), %eax
	mov %eax, 72(%ebx)
	mov 12(%esp), %eax		/* EFLAGS.VM | DS */
	and $0x20000, %eax
	or 28(%esp), %eax
	mov %eax, 76(%ebx)
	mov v86_esp, %esp
	jmp v86_back

task_b_entry:				/* the other task: EBX from its TSS */
	pushf
	pop %eax
	and $0x4000, %eax		/* NT */
	movzwl tss_b, %ecx		/* the back link */
	shl $16, %ecx
	or %ecx, %eax
	mov %eax, 56(%ebx)
	iret
	jmp task_b_entry
	.code64
