/* The application processors' way in: a real-mode trampoline start_aps (runtime.c) copies to
 * 0x8000 (SIPI vector 0x08), which loads the kernel's GDT, enters 32-bit protected mode, turns
 * on PAE, long mode and paging with the BSP's page tables, and jumps to ap_entry in 64-bit
 * mode, which gives each AP its own stack and calls ap_main. start_aps patches the GDT
 * pointer, CR3 and the far pointer before sending the SIPIs. */
#define TRAMP 0x8000
#define MAX_CPUS 256 /* guest.h's limit: one stack per AP */
#define AT(label) (TRAMP + (label) - trampoline)

	.section .rodata
	.globl trampoline, trampoline_end, tramp_gdt, tramp_cr3, tramp_far64
	.code16
trampoline:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt - trampoline
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x18, $AT(pm32)

	.code32
pm32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %cr4, %eax
	or $0x20, %eax
	mov %eax, %cr4
	mov AT(tramp_cr3), %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80010000, %eax
	mov %eax, %cr0
	ljmpl *AT(tramp_far64)

	.align 8
tramp_gdt:	.word 0
		.long 0
tramp_cr3:	.long 0
tramp_far64:	.long 0
		.word 0x08
trampoline_end:

	.text
	.code64
	.globl ap_entry
ap_entry:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $1, %eax
	lock xadd %eax, ap_next(%rip)
	and $(MAX_CPUS - 1), %eax
	inc %eax
	shl $14, %rax
	lea ap_stacks(%rip), %rsp
	add %rax, %rsp
	call ap_main
1:	cli
	hlt
	jmp 1b

	.bss
	.align 16
ap_stacks:	.skip (MAX_CPUS + 1) * 16384
	.data
	.globl ap_next
ap_next:	.long 0
