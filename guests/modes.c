/* Modes: a tour from 64-bit mode through compatibility mode, 32-bit protected mode with and
 * without paging (32-bit with 4 MiB pages, then PAE), virtual-8086 mode, 16-bit protected mode
 * and real mode, and back, touching device memory in each; then 1 GiB pages in long mode. */
#include "guest.h"

extern void mode_tour(u32 *results);
extern u32 pd32[1024];
extern u64 pae_pdpt[4], pd[], pml4[];
extern u32 probe_va32;
extern char low16[], low16_end[], msg[], gate32_target[], task_b_entry[], after_task[], v86_gp[], v86_cli[];
extern u64 idt32[14];

/* A 32-bit task-state segment. */
struct tss32 {
	u32 link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags, eax, ecx, edx, ebx, esp, ebp, esi, edi;
	u32 es, cs, ss, ds, fs, gs, ldt, iomap;
};
struct tss32 tss_a __attribute__((aligned(16))), tss_b __attribute__((aligned(16)));
static u8 task_b_stack[4096] __attribute__((aligned(16)));

/* A legacy (8-byte) descriptor: a TSS, or a gate naming selector and offset. */
static u64 tss_descriptor(void *tss)
{
	u64 base = (u64)tss;
	return 0x67 | ((base & 0xFFFFFF) << 16) | (0x89UL << 40) | (((base >> 24) & 0xFF) << 56);
}

static u64 gate_descriptor(u16 selector, u32 offset, u8 access, u8 params)
{
	return (offset & 0xFFFF) | ((u64)selector << 16) | ((u64)params << 32) | ((u64)access << 40) | ((u64)(offset >> 16) << 48);
}

static u32 results[32];
static u8 v86_kernel_stack[4096] __attribute__((aligned(16)));
static u32 probe = 0x600DF00D;
static u64 pdpt_1g[512] __attribute__((aligned(4096)));

int main(void)
{
	serial_init();
	printf("# modes guest\n");

	for (u32 i = 0; i < 1024; i++)
		pd32[i] = (i << 22) | 0x83;
	/* 0x40000000-0x403FFFFF onto the 4 MiB that holds `probe`. */
	u32 phys = (u32)(u64)&probe;
	pd32[0x100] = (phys & ~0x3FFFFFu) | 0x83;
	probe_va32 = 0x40000000u | (phys & 0x3FFFFF);
	for (int i = 0; i < 4; i++)
		pae_pdpt[i] = ((u64)pd + 4096UL * i) | 1;
	memcpy((void *)0x7000, low16, (u64)(low16_end - low16));

	/* For the 32-bit part: a call gate (0x68, one parameter), TSS A (0x70, loaded by LTR),
	 * TSS B (0x78) and a task gate to it (0x80). */
	gdt64[13] = gate_descriptor(0x18, (u32)(u64)gate32_target, 0x8C, 1);
	gdt64[14] = tss_descriptor(&tss_a);
	gdt64[15] = tss_descriptor(&tss_b);
	gdt64[16] = gate_descriptor(0x78, 0, 0x85, 0);
	tss_b.eip = (u32)(u64)task_b_entry;
	tss_b.eflags = 2;
	tss_b.esp = (u32)(u64)(task_b_stack + sizeof task_b_stack);
	tss_b.ebx = (u32)(u64)results;
	tss_b.cs = 0x18;
	tss_b.es = tss_b.ss = tss_b.ds = tss_b.fs = tss_b.gs = 0x10;
	/* Virtual-8086 mode leaves for TSS A's CPL 0 stack, through #GP's 32-bit interrupt gate. */
	tss_a.ss0 = 0x10;
	tss_a.esp0 = (u32)(u64)(v86_kernel_stack + sizeof v86_kernel_stack);
	idt32[13] = gate_descriptor(0x18, (u32)(u64)v86_gp, 0x8E, 0);
	mode_tour(results);
	check_eq(results[0], 0xC0A1C0A1, "compatibility mode: device memory");
	check((results[1] & 0x500) == 0x500, "compatibility mode: EFER.LMA and LME");
	check((results[2] & 0x400) == 0, "paging off leaves long mode (EFER.LMA clear)");
	check_eq(results[3], 0xB0B0B0B0, "32-bit protected mode without paging: device memory");
	check_eq(results[4], 0x32323232, "32-bit paging (4 MiB pages): device memory");
	check_eq(results[5], 0x600DF00D, "32-bit paging: a 4 MiB page mapped elsewhere");
	check_eq(results[6], 0xAEAEAEAE, "PAE paging: device memory");
	check_eq(results[7], 0x16161616, "16-bit protected mode: device memory with 32-bit addresses");
	check_eq(results[8], 0x7000 + (u32)(msg - low16) + 4, "16-bit protected mode: rep outsb counts in CX and steps SI");
	check_eq(results[9], 0x0700, "real mode: CS 0x0700");
	check_eq(results[10], 0x80868086, "real mode: device memory through a 4 GiB data limit");
	check_eq(results[11] & 0xFF, 0x5A, "real mode: port I/O");
	check_eq(results[12], 0x6A7E6A7E, "a 32-bit call gate: the target reads the caller's parameter");
	check_eq(results[13] & 0xFFFF, 0x18, "a 32-bit call gate: the target runs in the gate's code segment");
	check_eq(results[14], (0x70 << 16) | 0x4000, "a CALL through a task gate: NT set, linked to the caller's TSS");
	check_eq(results[15], (u32)(u64)after_task, "IRET goes back along the link; the caller's EIP was saved in its TSS");
	check_eq(results[20], 0x01020047, "virtual-8086 mode: DAA, PUSHA/POPA and a store through ES (0x0900)");
	check_eq(results[16], 0, "virtual-8086 mode: CLI at IOPL 0 raises #GP(0)");
	check_eq(results[17], (u32)(v86_cli - low16), "virtual-8086 mode: the #GP frame holds the CLI's IP");
	check_eq(results[18], 0x07000900, "virtual-8086 mode: the #GP frame holds the program's CS and ES");
	check_eq(results[19], 0x20700, "virtual-8086 mode: the #GP frame holds EFLAGS with VM set and DS");
	check_eq(results[21], 0, "virtual-8086 mode: the handler starts with DS null");
	/* The legacy set (sums of results derived by hand from the SDM; see modes.S). */
	check_eq(results[28], 0x3BA2, "32-bit protected mode: DAA, DAS, AAA, AAS, AAM, AAD, AAM 16, SALC");
	check_eq(results[29], 0x01020304 + 32 + 24 + 0x22222222 + 0x11111111 + 12, "32-bit protected mode: PUSHAD/POPAD, ENTER 8,3 and LEAVE");
	check_eq(results[30], 0x12345688 + 0x100 + 0x2B + 0x40, "32-bit protected mode: LES, BOUND, ARPL");
	check_eq(results[22], 0x3BA2, "16-bit protected mode: DAA, DAS, AAA, AAS, AAM, AAD, AAM 16, SALC");
	check_eq(results[23], 0x01020000 + 0x6EFC + 0x6EFC + 0x6EF2 + 0xBEEF + 0x6EFA + 0x6F10 + 0x6EFC, "16-bit protected mode: PUSHA/POPA, ENTER 4,2 and LEAVE");
	check_eq(results[24], 0x00281234 + 0x100 + 0x2B + 0x40, "16-bit protected mode: LES, BOUND, ARPL");
	check_eq(results[25], 0x3BA2, "real mode: DAA, DAS, AAA, AAS, AAM, AAD, AAM 16, SALC");
	check_eq(results[26], 0x01020000 + 0x6EFC + 0x6EFC + 0x6EF2 + 0xBEEF + 0x6EFA + 0x6F10 + 0x6EFC, "real mode: PUSHA/POPA, ENTER 4,2 and LEAVE");
	check_eq(results[27], 0x09001234 + 0x100, "real mode: LES and BOUND");

	/* 1 GiB pages, where the CPU has them: linear 1 TiB + x onto physical x. */
	u32 a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000001), "c"(0));
	if (d & (1u << 26)) {
		pdpt_1g[0] = 0x83;
		pml4[2] = (u64)pdpt_1g | 3;
		u64 cr3;
		__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
		volatile u32 *alias = (volatile u32 *)(0x10000000000UL + (u64)&probe);
		check_eq(*alias, 0x600DF00D, "a 1 GiB page maps linear 1 TiB + x onto x");
		*alias = 0x1A1A1A1A;
		check_eq(probe, 0x1A1A1A1A, "writes through the 1 GiB page land in the same RAM");
	} else {
		skip("a 1 GiB page maps linear 1 TiB + x onto x", "no 1 GiB pages on this CPU");
		skip("writes through the 1 GiB page land in the same RAM", "no 1 GiB pages on this CPU");
	}
	printf("# %d failed\n", failures());
	return failures();
}
