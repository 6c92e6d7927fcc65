/* Multiboot entry shared by the test guests: from 32-bit protected mode (as the loader leaves
 * it), identity-map the first 4 GiB with 2 MiB pages, enter long mode and call main(info).
 * The file is linked as ELF64 and shipped in an ELF32 container, which is what QEMU's Multiboot
 * loader accepts. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .bss
	.align 4096
	.globl pml4, pdpt, pd
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096
	.align 16
stack:	.skip 65536
	.globl stack_top
stack_top:

	.section .data
	.align 16
	.globl gdt64
gdt64:
	.quad 0
	.quad 0x00AF9B000000FFFF	/* 0x08: 64-bit code */
	.quad 0x00CF93000000FFFF	/* 0x10: data */
	.quad 0x00CF9B000000FFFF	/* 0x18: 32-bit code */
	.quad 0x008F9B000000FFFF	/* 0x20: 16-bit code, 4 GiB limit */
	.quad 0x008F93000000FFFF	/* 0x28: 16-bit data */
	.quad 0x00009B000000FFFF	/* 0x30: 16-bit code, 64 KiB limit (real-mode style) */
	.quad 0x000093000000FFFF	/* 0x38: 16-bit data, 64 KiB limit */
	.quad 0, 0			/* 0x40: a 64-bit TSS, filled in by the guests that use one */
	.quad 0x00CFF3000000FFFF	/* 0x50: user data */
	.quad 0x00AFFB000000FFFF	/* 0x58: user 64-bit code */
	.quad 0x00CFFB000000FFFF	/* 0x60: user 32-bit code */
	.quad 0, 0, 0, 0, 0, 0, 0, 0	/* 0x68-0xA0: gates, filled in by the guests that use them */
	.quad 0, 0, 0, 0		/* 0xA8-0xC0: more descriptors for the guests that want them */
gdt64_end:
	.globl gdt64_ptr
gdt64_ptr:
	.word gdt64_end - gdt64 - 1
	.quad gdt64
	.globl mb_magic, mb_info
mb_magic: .long 0
mb_info:  .long 0

	.section .text
	.code32
	.globl _start
_start:
	cli
	movl %eax, mb_magic
	movl %ebx, mb_info
	movl $stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> PD[0..3]; PD: 2048 large pages of 2 MiB. */
	movl $pdpt, %eax
	orl $3, %eax
	movl %eax, pml4
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $12, %eax
	addl $pd, %eax
	orl $3, %eax
	movl %eax, pdpt(,%ecx,8)
	incl %ecx
	cmpl $4, %ecx
	jb 1b
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax
	movl %eax, pd(,%ecx,8)
	movl %ecx, %eax
	shrl $11, %eax
	movl %eax, pd+4(,%ecx,8)
	incl %ecx
	cmpl $2048, %ecx
	jb 2b

	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80010000, %eax		/* PG, WP */
	movl %eax, %cr0
	lgdt gdt64_ptr
	ljmp $0x08, $long_entry

	.code64
long_entry:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movq $stack_top, %rsp
	call idt_init
	movl mb_info, %edi
	call main
	movl %eax, %edi
	call guest_exit
3:	cli
	hlt
	jmp 3b

/* Entry points for all 256 vectors, 16 bytes apart from isr_base: each pushes a zero error
 * code where the CPU does not, then its vector, and joins isr_common, which saves the general
 * registers and calls exception_entry(struct trap_frame *) in runtime.c. */
	.text
	.code64
	.align 16
	.globl isr_base
isr_base:
	.set vec, 0
	.rept 256
	.align 16
	.if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	cld
	call exception_entry
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp
	iretq

