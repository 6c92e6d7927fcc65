/* Exceptions: #DE, #UD, #BP, #DB (single step), #GP, #SS, #NM and #PF (not present, write
 * protection, NX, reserved bits: error codes and CR2) through 64-bit interrupt gates; a double
 * fault on its IST stack when a page fault cannot be delivered; and a trap gate that keeps IF. */
#include "guest.h"

extern char de_div[], de_div_end[], ud_ud2[], ud_ud2_end[], bp_int3[], bp_int3_end[];
extern char gp_noncanonical[], gp_noncanonical_end[], gp_privileged_port_msr[], gp_privileged_port_msr_end[];
extern char ss_noncanonical[], ss_noncanonical_end[], nm_fwait[], nm_fwait_end[];
extern char touch_read[], touch_read_end[], touch_write[], touch_write_end[], touch_call[], touch_call_end[];
extern void single_step(void);
extern u64 pml4[];

static volatile u64 seen_vector, seen_error, seen_rip, seen_rsp, seen_cr2, seen_dr6;
static volatile int hits;
static volatile u64 resume_at;

static void record(struct trap_frame *f)
{
	seen_vector = f->vector, seen_error = f->error, seen_rip = f->rip, seen_rsp = (u64)f;
	__asm__ volatile("mov %%cr2, %0" : "=r"(seen_cr2));
	hits++;
	if (resume_at)
		f->rip = resume_at;
}

static void step(struct trap_frame *f)
{
	u64 dr6;
	__asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
	seen_dr6 = dr6;
	hits++;
	(void)f;
}

/* Runs fn expecting one exception, resumed at end. */
static void expect(void (*fn)(void), char *end)
{
	hits = 0, seen_vector = 0xFF, seen_error = 0xFFFF;
	resume_at = (u64)end;
	fn();
	resume_at = 0;
}

static void expect_at(void (*fn)(u64), u64 arg, char *end)
{
	hits = 0, seen_vector = 0xFF, seen_error = 0xFFFF, seen_cr2 = 0;
	resume_at = (u64)end;
	fn(arg);
	resume_at = 0;
}

/* Page tables for the #PF checks: PML4[1] (linear 512 GiB up) -> pdpt1 -> pd1 -> pt1, four
 * 4 KiB pages onto `target`. */
static u64 pdpt1[512] __attribute__((aligned(4096)));
static u64 pd1[512] __attribute__((aligned(4096)));
static u64 pt1[512] __attribute__((aligned(4096)));
static u8 target[4096] __attribute__((aligned(4096)));
#define PAGED 0x8000000000UL

static void invlpg(u64 a)
{
	__asm__ volatile("invlpg (%0)" : : "r"(a) : "memory");
}

static void page_faults(void)
{
	pml4[1] = (u64)pdpt1 | 3;
	pdpt1[0] = (u64)pd1 | 3;
	pd1[0] = (u64)pt1 | 3;
	pt1[0] = 0;				/* not present */
	pt1[1] = (u64)target | 1;		/* present, read-only */
	pt1[2] = (u64)target | 3 | (1UL << 63);	/* NX */
	pt1[3] = (u64)target | 3 | (1UL << 51);	/* a reserved address bit */
	u64 cr3;
	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
	wrmsr(0xC0000080, rdmsr(0xC0000080) | (1 << 11));	/* EFER.NXE */

	expect_at((void (*)(u64))touch_read, PAGED + 0x10, touch_read_end);
	check(hits == 1 && seen_vector == 14 && seen_error == 0 && seen_cr2 == PAGED + 0x10, "#PF read of a page that is not present: error 0, CR2");
	expect_at((void (*)(u64))touch_write, PAGED + 0x18, touch_write_end);
	check(hits == 1 && seen_error == 2 && seen_cr2 == PAGED + 0x18, "#PF write of a page that is not present: error 2");
	expect_at((void (*)(u64))touch_write, PAGED + 0x1000, touch_write_end);
	check(hits == 1 && seen_error == 3 && seen_cr2 == PAGED + 0x1000, "#PF write of a read-only page with CR0.WP: error 3");
	expect_at((void (*)(u64))touch_call, PAGED + 0x2000, touch_call_end);
	check(hits == 1 && seen_error == 0x11 && seen_cr2 == PAGED + 0x2000, "#PF fetch from an NX page: error 0x11");
	expect_at((void (*)(u64))touch_read, PAGED + 0x3008, touch_read_end);
	check_qemu_deviation(hits == 1 && seen_error == 9 && seen_cr2 == PAGED + 0x3008, "#PF on a reserved bit: error 9 (present and reserved)");
	if (seen_error != 9)
		printf("#   hits %d vector %lu error 0x%lx cr2 0x%lx\n", hits, seen_vector, seen_error, seen_cr2);
	pt1[0] = (u64)target | 3;
	invlpg(PAGED);
	target[0x10] = 0x5A;
	expect_at((void (*)(u64))touch_read, PAGED + 0x10, touch_read_end);
	check(hits == 0, "after the page is mapped (and INVLPG) the read succeeds");
}

/* The double fault: the #PF gate made not present, so delivering a page fault raises #NP,
 * which cannot follow a page fault: #DF, on IST stack 1. */
static struct tss64 tss __attribute__((aligned(16)));
static u8 ist1[8192] __attribute__((aligned(16)));

static void double_fault(void)
{
	tss.ist[0] = (u64)(ist1 + sizeof ist1);
	tss.iomap = sizeof tss;
	load_tss(&tss, sizeof tss);
	u16 tr;
	__asm__ volatile("str %0" : "=r"(tr));
	check_eq(tr, 0x40, "LTR and STR");
	check(((gdt64[8] >> 40) & 0xF) == 0xB, "LTR marks the TSS descriptor busy");

	set_gate(8, isr_entry(8), 0x8E, 1);
	set_trap_handler(8, record);
	set_gate(14, isr_entry(14), 0x0E, 0);		/* not present */
	pt1[0] = 0;
	invlpg(PAGED);
	expect_at((void (*)(u64))touch_read, PAGED, touch_read_end);
	u64 ist_lo = (u64)ist1, ist_hi = (u64)(ist1 + sizeof ist1);
	check(hits == 1 && seen_vector == 8 && seen_error == 0, "#PF with its gate not present becomes #DF (error 0)");
	check(seen_rsp >= ist_lo && seen_rsp < ist_hi, "#DF runs on its IST stack");
	set_gate(14, isr_entry(14), 0x8E, 0);
	set_gate(8, isr_entry(8), 0x8E, 0);
}

int main(void)
{
	serial_init();
	printf("# exceptions guest\n");
	for (int v = 0; v < 32; v++)
		set_trap_handler(v, record);

	expect((void (*)(void))de_div, de_div_end);
	check(hits == 1 && seen_vector == 0 && seen_rip == (u64)de_div + 2, "#DE from div by zero, at the div");
	expect((void (*)(void))ud_ud2, ud_ud2_end);
	check(hits == 1 && seen_vector == 6 && seen_rip == (u64)ud_ud2, "#UD from ud2");
	resume_at = 0, hits = 0;
	((void (*)(void))bp_int3)();
	check(hits == 1 && seen_vector == 3 && seen_rip == (u64)bp_int3_end, "#BP from int3 returns past it");
	expect((void (*)(void))gp_noncanonical, gp_noncanonical_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0, "#GP(0) from a non-canonical address");
	expect((void (*)(void))gp_privileged_port_msr, gp_privileged_port_msr_end);
	check_qemu_deviation(hits == 1 && seen_vector == 13 && seen_error == 0, "#GP(0) from RDMSR of an MSR that does not exist");
	expect((void (*)(void))ss_noncanonical, ss_noncanonical_end);
	check_qemu_deviation(hits == 1 && seen_vector == 12 && seen_error == 0, "#SS(0) from a non-canonical stack reference");

	u64 cr0;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 0xA));	/* MP, TS */
	expect((void (*)(void))nm_fwait, nm_fwait_end);
	check(hits == 1 && seen_vector == 7, "#NM from fwait with CR0.TS and MP");
	__asm__ volatile("clts");
	expect((void (*)(void))nm_fwait, nm_fwait_end);
	check(hits == 0, "fwait runs after clts");
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));

	set_trap_handler(1, step);
	hits = 0, seen_dr6 = 0;
	single_step();
	check(hits == 5, "TF single-steps five instructions after popf sets it");
	check((seen_dr6 & 0x4000) != 0, "DR6.BS is set by single step");

	page_faults();
	double_fault();

	printf("# %d failed\n", failures());
	return failures();
}
