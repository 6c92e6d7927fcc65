/* SMP: the CPU count from fw_cfg; the BSP starts every AP with INIT-SIPI-SIPI into a real-mode
 * trampoline that reaches long mode; each AP checks in with its APIC ID, takes fixed IPIs and
 * NMIs, and the BSP sees them all; INIT parks a running AP and a new SIPI starts it again. */
#include "guest.h"

#define APIC 0xFEE00000UL
#define MAX_CPUS 8

extern char trampoline[], trampoline_end[], tramp_gdt[], tramp_cr3[], tramp_far64[];
extern void ap_entry(void);
extern u64 gdt64[], pml4[];
extern char gdt64_ptr[];

static u32 apic_read(u32 reg) { return *(volatile u32 *)(APIC + reg); }
static void apic_write(u32 reg, u32 v) { *(volatile u32 *)(APIC + reg) = v; }

static volatile int checkins[MAX_CPUS], ipis[MAX_CPUS], nmis[MAX_CPUS];
static volatile int started;
static volatile u32 apic_ids[MAX_CPUS];
static volatile int nmi_on_bsp;

static int my_index(void)
{
	return (int)(apic_read(0x20) >> 24);
}

static void on_ipi(struct trap_frame *f)
{
	ipis[my_index() % MAX_CPUS]++;
	apic_write(0xB0, 0);
	(void)f;
}

static void on_nmi(struct trap_frame *f)
{
	nmis[my_index() % MAX_CPUS]++;
	(void)f;
}

void ap_main(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) idtr;
	/* The BSP's IDT: read it from where the BSP keeps it (SIDT on the BSP stored it). */
	extern u8 bsp_idtr[10];
	memcpy(&idtr, bsp_idtr, sizeof idtr);
	__asm__ volatile("lidt %0" : : "m"(idtr));
	apic_write(0xF0, 0x1FF);
	apic_write(0x80, 0);
	int id = my_index();
	apic_ids[id % MAX_CPUS] = (u32)id;
	__atomic_add_fetch(&checkins[id % MAX_CPUS], 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	for (;;)
		__asm__ volatile("sti; hlt");
}

u8 bsp_idtr[10];

static void icr(u32 dest, u32 low)
{
	apic_write(0x310, dest << 24);
	apic_write(0x300, low);
	for (int i = 0; i < 100000 && (apic_read(0x300) & (1 << 12)); i++)
		__asm__ volatile("pause");
}

static void delay(int n)
{
	for (volatile int i = 0; i < n; i++)
		__asm__ volatile("pause");
}

/* Waits until *p reaches want (or gives up after a long spin). */
static int wait_until(volatile int *p, int want)
{
	for (long i = 0; i < 20000000 && *p < want; i++)
		__asm__ volatile("pause");
	return *p;
}

int main(void)
{
	serial_init();
	printf("# smp guest\n");
	u16 cpus = 0;
	fw_cfg_read(0x05, &cpus, 2);
	check(cpus >= 2 && cpus <= MAX_CPUS, "fw_cfg reports 2 to 8 CPUs");
	if (cpus > MAX_CPUS)
		cpus = MAX_CPUS;
	apic_write(0xF0, 0x1FF);
	set_trap_handler(0x60, on_ipi);
	set_trap_handler(2, on_nmi);
	__asm__ volatile("sidt %0" : "=m"(bsp_idtr));
	check(my_index() == 0, "the BSP is APIC 0");

	/* The trampoline at 0x8000, patched with the GDT, CR3 and the 64-bit entry. */
	u8 *t = (u8 *)0x8000;
	memcpy(t, trampoline, (u64)(trampoline_end - trampoline));
	memcpy(t + (tramp_gdt - trampoline), gdt64_ptr, 6);
	*(u32 *)(t + (tramp_cr3 - trampoline)) = (u32)(u64)pml4;
	*(u32 *)(t + (tramp_far64 - trampoline)) = (u32)(u64)ap_entry;

	/* INIT, then two SIPIs, to all but self. */
	icr(0, (3 << 18) | (1 << 14) | 0x500);
	delay(10000);
	icr(0, (3 << 18) | 0x600 | 0x08);
	delay(2000);
	icr(0, (3 << 18) | 0x600 | 0x08);
	int up = wait_until(&started, cpus - 1);
	check(up == cpus - 1, "every AP reached long mode and checked in");
	int distinct = 1;
	for (int i = 1; i < cpus; i++)
		distinct &= checkins[i] == 1 && apic_ids[i] == (u32)i;
	check(distinct, "each AP checked in once, with its own APIC ID");

	/* A fixed IPI to each AP, then an NMI to each. */
	for (int i = 1; i < cpus; i++)
		icr((u32)i, 0x60);
	int got = 1;
	for (int i = 1; i < cpus; i++)
		got &= wait_until(&ipis[i], 1) == 1;
	check(got, "each AP took a fixed IPI");
	for (int i = 1; i < cpus; i++)
		icr((u32)i, 0x400 | 2);
	got = 1;
	for (int i = 1; i < cpus; i++)
		got &= wait_until(&nmis[i], 1) == 1;
	check(got, "each AP took an NMI");
	icr(0, (3 << 18) | 0x60);	/* all but self */
	got = 1;
	for (int i = 1; i < cpus; i++)
		got &= wait_until(&ipis[i], 2) == 2;
	check(got && ipis[0] == 0, "an all-but-self IPI reaches every AP and not the BSP");

	/* INIT parks the last AP; it no longer takes IPIs; a SIPI starts it again. */
	int last = cpus - 1;
	icr((u32)last, (1 << 14) | 0x500);
	delay(10000);
	icr((u32)last, 0x60);
	delay(200000);
	check(ipis[last] == 2, "an AP parked by INIT does not take a fixed IPI");
	icr((u32)last, 0x600 | 0x08);
	check(wait_until(&checkins[last], 2) == 2, "a new SIPI starts the parked AP again");
	check(wait_until(&started, cpus) == cpus, "it runs the trampoline to long mode once more");

	printf("# %d failed\n", failures());
	return failures();
}
