/* The processor as configured: CPUID and MSRs, RDTSC, SWAPGS, SYSCALL/SYSRET and
 * SYSENTER/SYSEXIT round trips to CPL 3, and CPL 3's limits: the I/O permission bitmap, CLI and
 * HLT (#GP), alignment checks (#AC). */
#include "guest.h"

extern void user_call(void *fn, void *stack), sysexit_call(void *fn, void *stack);
extern char syscall_entry[], sysenter_entry[];
extern char u_segments[], u_segments_ret[], u_port_allowed[], u_port_denied[], u_port_denied_end[];
extern char u_movss[], u_movss_end[], u_movds[], u_movds_end[];
extern char u_cli[], u_cli_end[], u_hlt[], u_hlt_end[], u_ac[], u_ac_end[], u_rdtsc[], u_sysenter[];
extern char u_gate[], u_gate_ret[], u_gate_dpl[], u_gate_dpl_end[], u_gate_np[], u_gate_np_end[], u_gate_jmp[], u_gate_jmp_end[];
extern char gate_handler[], k_gate16_end[], k_tss_jump_end[];
extern void k_gate_call(void), k_gate16(void), k_tss_jump(void);
extern volatile u64 gate_seen[7];
extern char compat_resume[];
extern void k_compat_probe(u64 selector, u64 offset, u64 how);
extern volatile u64 sys_rcx, sys_r11, sys_cs, sys_ss, user_cs, user_ss, user_value;
extern u64 pml4[], pdpt[], pd[];

static void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

/* The TSS with an I/O permission bitmap (and the byte of ones that must follow it). */
struct io_tss {
	struct tss64 t;
	u8 bitmap[8193];
} __attribute__((packed));

static struct io_tss tss __attribute__((aligned(16)));
static u8 kstack[16384] __attribute__((aligned(16)));
static u8 ustack[16384] __attribute__((aligned(16)));

static volatile u64 seen_vector, seen_error, seen_cs;
static volatile int hits;
static volatile u64 resume_at;

static void record(struct trap_frame *f)
{
	seen_vector = f->vector, seen_error = f->error, seen_cs = f->cs;
	hits++;
	if (resume_at)
		f->rip = resume_at;
}

static void user(char *fn, char *resume)
{
	hits = 0, seen_vector = 0xFF;
	resume_at = (u64)resume;
	user_call(fn, ustack + sizeof ustack);
	resume_at = 0;
}

/* A 64-bit call gate (16 bytes) in GDT slot n to 0x08:handler. */
static void call_gate(int n, void *handler, int dpl, int present)
{
	u64 h = (u64)handler;
	gdt64[n] = (h & 0xFFFF) | (0x08UL << 16) | ((u64)(0xC | (dpl << 5) | (present ? 0x80 : 0)) << 40) | (((h >> 16) & 0xFFFF) << 48);
	gdt64[n + 1] = h >> 32;
}

static void kernel_probe(void (*probe)(void), char *resume)
{
	hits = 0, seen_vector = 0xFF;
	resume_at = (u64)resume;
	probe();
	resume_at = 0;
}

/* One access in compatibility mode through a segment (see k_compat_probe). */
static void compat_probe(u16 selector, u32 offset, int how)
{
	hits = 0, seen_vector = 0xFF;
	resume_at = (u64)compat_resume;
	k_compat_probe(selector, offset, how);
	resume_at = 0;
}

int main(void)
{
	serial_init();
	printf("# cpu guest\n");
	/* The 8259 pair masked: nothing but what the checks raise. */
	outb(0x21, 0xFF);
	outb(0xA1, 0xFF);
	for (int v = 0; v < 32; v++)
		set_trap_handler(v, record);

	u32 a, b, c, d;
	cpuid(0, &a, &b, &c, &d);
	check(a >= 1, "CPUID leaf 0 reports basic leaves");
	cpuid(1, &a, &b, &c, &d);
	check((b >> 24) == 0, "CPUID 1: the BSP's initial APIC ID is 0");
	check((d & (1 << 9)) && (d & (1 << 5)) && (d & (1 << 4)), "CPUID 1: APIC, MSR and TSC");
	cpuid(0x80000000, &a, &b, &c, &d);
	check(a >= 0x80000008, "CPUID 0x80000000 reports leaf 0x80000008");
	cpuid(0x80000001, &a, &b, &c, &d);
	check((d & (1u << 29)) && (d & (1u << 11)) && (d & (1u << 20)), "CPUID 0x80000001: long mode, SYSCALL, NX");
	cpuid(0x80000008, &a, &b, &c, &d);
	check((a & 0xFF) >= 36 && (a & 0xFF) <= 52 && ((a >> 8) & 0xFF) == 48, "CPUID 0x80000008: 36-52 physical, 48 linear address bits");

	check_eq(rdmsr(0x1B), 0xFEE00900, "IA32_APIC_BASE: 0xFEE00000, enabled, BSP");
	check_eq(rdmsr(0xC0000080) & 0x500, 0x500, "EFER: LME and LMA");
	check_eq(rdmsr(0x277), 0x0007040600070406UL, "IA32_PAT at its reset value");
	wrmsr(0xC0000100, 0x123456789000UL);
	check_eq(rdmsr(0xC0000100), 0x123456789000UL, "FS_BASE round trip");
	wrmsr(0xC0000100, 0);
	wrmsr(0xC0000102, 0xABCD000UL);
	wrmsr(0xC0000101, 0x1000UL);
	__asm__ volatile("swapgs");
	check(rdmsr(0xC0000101) == 0xABCD000UL && rdmsr(0xC0000102) == 0x1000UL, "SWAPGS exchanges GS_BASE and KERNEL_GS_BASE");
	__asm__ volatile("swapgs");
	wrmsr(0xC0000101, 0);
	u32 lo, hi;
	u64 t0, t1;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	t0 = ((u64)hi << 32) | lo;
	for (volatile int i = 0; i < 1000; i++)
		;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	t1 = ((u64)hi << 32) | lo;
	check(t1 > t0, "RDTSC moves forward");

	/* User pages: the U bit on every level of the identity map. */
	pml4[0] |= 4;
	for (int i = 0; i < 4; i++)
		pdpt[i] |= 4;
	for (int i = 0; i < 2048; i++)
		pd[i] |= 4;
	u64 cr3;
	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");

	/* A TSS: RSP0 for traps from CPL 3, and an I/O bitmap allowing ports 0xE0-0xE3 only. */
	tss.t.rsp[0] = (u64)(kstack + sizeof kstack);
	tss.t.iomap = __builtin_offsetof(struct io_tss, bitmap);
	memset(tss.bitmap, 0xFF, sizeof tss.bitmap);
	tss.bitmap[0xE0 / 8] = 0xF0;
	load_tss(&tss, sizeof tss);

	/* SYSCALL/SYSRET: STAR puts the kernel at 0x08/0x10 and the user at 0x5B/0x53. */
	wrmsr(0xC0000081, (0x48UL << 48) | (0x08UL << 32));
	wrmsr(0xC0000082, (u64)syscall_entry);
	wrmsr(0xC0000084, 0x200);
	wrmsr(0xC0000080, rdmsr(0xC0000080) | 1);
	user(u_segments, 0);
	check(user_cs == 0x5B && user_ss == 0x53, "SYSRET enters CPL 3 with CS 0x5B and SS 0x53");
	check(sys_cs == 0x08 && sys_ss == 0x10, "SYSCALL enters CPL 0 with CS 0x08 and SS 0x10");
	check(sys_rcx == (u64)u_segments_ret && (sys_r11 & 0x3C7FD7) == 0x2, "SYSCALL saves RIP in RCX and RFLAGS in R11");

	outl(0xE0, 0xFEEDF00D);
	user(u_port_allowed, 0);
	check(hits == 0 && user_value == 0xFEEDF00D, "CPL 3 reads a port the I/O bitmap allows");
	user(u_port_denied, u_port_denied_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0 && (seen_cs & 3) == 3, "CPL 3 gets #GP(0) for a port the bitmap denies");
	user(u_movss, u_movss_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0x10, "MOV SS of a DPL 0 selector at CPL 3: #GP(0x10)");
	user(u_movds, u_movds_end);
	check(user_value == 0x53 && hits == 1 && seen_vector == 13 && seen_error == 0x10,
	      "CPL 3 loads DS with its own data segment, and gets #GP(0x10) for a DPL 0 one");
	user(u_cli, u_cli_end);
	check(hits == 1 && seen_vector == 13, "CLI at CPL 3 with IOPL 0: #GP");
	user(u_hlt, u_hlt_end);
	check(hits == 1 && seen_vector == 13, "HLT at CPL 3: #GP");
	u64 cr0;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | (1 << 18)));
	user(u_ac, u_ac_end);
	check_qemu_deviation(hits == 1 && seen_vector == 17 && seen_error == 0, "a misaligned load at CPL 3 with AM and AC: #AC(0)");
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	user(u_ac, u_ac_end);
	check(hits == 0, "without CR0.AM the same load is fine");
	user(u_rdtsc, 0);
	check(hits == 0 && user_value > t1, "RDTSC at CPL 3");

	/* SYSENTER/SYSEXIT with SYSENTER_CS 0x08: user CS 0x2B and SS 0x33 (fixed, not from the GDT).
	 * AMD processors (QEMU's default model says AuthenticAMD) raise #UD for them in long mode. */
	cpuid(0, &a, &b, &c, &d);
	if (b == 0x756E6547 && d == 0x49656E69 && c == 0x6C65746E) {	/* GenuineIntel */
		wrmsr(0x174, 0x08);
		wrmsr(0x175, (u64)(kstack + sizeof kstack));
		wrmsr(0x176, (u64)sysenter_entry);
		hits = 0;
		sysexit_call(u_sysenter, ustack + sizeof ustack);
		check(hits == 0 && user_cs == 0x2B, "SYSEXIT enters CPL 3 with CS 0x2B");
		check(sys_cs == 0x08 && sys_ss == 0x10, "SYSENTER enters CPL 0 with CS 0x08 and SS 0x10");
	} else {
		skip("SYSEXIT enters CPL 3 with CS 0x2B", "not an Intel processor: SYSENTER/SYSEXIT are #UD in long mode");
		skip("SYSENTER enters CPL 0 with CS 0x08 and SS 0x10", "not an Intel processor: SYSENTER/SYSEXIT are #UD in long mode");
	}

	/* Call gates and far returns across privilege levels. */
	call_gate(13, gate_handler, 3, 1);	/* 0x68 */
	call_gate(15, gate_handler, 0, 1);	/* 0x78 */
	call_gate(17, gate_handler, 3, 0);	/* 0x88 */
	gdt64[19] = (0x08UL << 16) | (0xE4UL << 40);	/* 0x98: a 16-bit call gate, DPL 3 */
	gdt64[20] = 0;
	__asm__ volatile("mov %0, %%ds" : : "r"(0x10) : "memory");
	user(u_gate, 0);
	check(hits == 0 && gate_seen[0] == 0x08 && gate_seen[1] == 0,
	      "a call gate from CPL 3 enters CPL 0 with CS 0x08 and a null SS");
	check(gate_seen[2] == (u64)(kstack + sizeof kstack) - 32, "the gate switches to the TSS's RSP0 and pushes four quadwords");
	check(gate_seen[3] == (u64)u_gate_ret && gate_seen[4] == 0x5B && gate_seen[5] == (u64)(ustack + sizeof ustack) && gate_seen[6] == 0x53,
	      "the frame: return RIP, CS, the caller's RSP and SS");
	check(user_cs == 0x5B && user_ss == 0x53, "a far RET outward returns to CPL 3 with the caller's SS");
	check(user_value == 0, "the far RET outward makes a DPL 0 DS null");
	user(u_gate_dpl, u_gate_dpl_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0x78, "a DPL 0 call gate from CPL 3: #GP(gate)");
	user(u_gate_np, u_gate_np_end);
	check(hits == 1 && seen_vector == 11 && seen_error == 0x88, "a call gate marked not present: #NP(gate)");
	user(u_gate_jmp, u_gate_jmp_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0x08, "a JMP through a call gate cannot raise the privilege: #GP(target)");
	__asm__ volatile("mov %0, %%ds" : : "r"(0x10) : "memory");
	gate_seen[0] = gate_seen[1] = 0xFF;
	u64 rsp;
	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
	k_gate_call();
	check(gate_seen[0] == 0x08 && gate_seen[1] == 0x10 && gate_seen[4] == 0x08 && gate_seen[2] > rsp - 64 && gate_seen[2] < rsp,
	      "a call gate at the same privilege keeps the stack and pushes CS and RIP");
	kernel_probe(k_gate16, k_gate16_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0x98, "a 16-bit call gate in IA-32e mode: #GP(gate)");
	kernel_probe(k_tss_jump, k_tss_jump_end);
	check(hits == 1 && seen_vector == 13 && seen_error == 0x40, "a JMP to a TSS in IA-32e mode (no task switches): #GP(TSS)");

	/* Segment limits and rights, which compatibility mode checks as protected mode does. QEMU's
	 * TCG does not check data-segment limits, rights or null selectors (docs/guests.md): the
	 * faults are Hyve's against the SDM; the accesses that must succeed are compared. */
	static volatile u32 scratch;
	gdt64[21] = 0x0040930000000FFFUL;	/* 0xA8: data, limit 0xFFF (bytes), expand-up */
	gdt64[22] = 0x0040970000000FFFUL;	/* 0xB0: data, limit 0xFFF, expand-down, 32-bit */
	gdt64[23] = 0x00CF91000000FFFFUL;	/* 0xB8: read-only data, 4 GiB */
	compat_probe(0xA8, 0xFFC, 0);
	check(hits == 0, "compatibility mode: a read that ends at the limit");
	compat_probe(0xA8, 0xFFD, 0);
	check_qemu_deviation(hits == 1 && seen_vector == 13 && seen_error == 0, "compatibility mode: a read past the limit: #GP(0)");
	compat_probe(0xB0, 0x1000, 0);
	check(hits == 0, "an expand-down segment: a read above the limit");
	compat_probe(0xB0, 0xFFF, 0);
	check_qemu_deviation(hits == 1 && seen_vector == 13 && seen_error == 0, "an expand-down segment: a read at the limit: #GP(0)");
	compat_probe(0xB8, (u32)(u64)&scratch, 0);
	check(hits == 0, "a read-only segment: a read");
	compat_probe(0xB8, (u32)(u64)&scratch, 2);
	check_qemu_deviation(hits == 1 && seen_vector == 13 && seen_error == 0, "a read-only segment: a write: #GP(0)");
	compat_probe(0, 0x1000, 0);
	check_qemu_deviation(hits == 1 && seen_vector == 13 && seen_error == 0, "a null DS in compatibility mode: #GP(0)");
	compat_probe(0xA8, 0xFFC, 1);
	check(hits == 0, "a stack segment: a read that ends at the limit");
	compat_probe(0xA8, 0xFFE, 1);
	check_qemu_deviation(hits == 1 && seen_vector == 12 && seen_error == 0, "a stack segment: a read past the limit: #SS(0)");

	printf("# %d failed\n", failures());
	return failures();
}
