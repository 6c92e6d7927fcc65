/* SMP: the CPU count from fw_cfg; the BSP starts every AP with INIT-SIPI-SIPI into a real-mode
 * trampoline that reaches long mode; each AP checks in with its APIC ID, takes fixed IPIs and
 * NMIs, and the BSP sees them all; INIT parks a running AP and a new SIPI starts it again. */
#include "guest.h"

static volatile int checkins[MAX_CPUS], ipis[MAX_CPUS], nmis[MAX_CPUS];

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
	load_bsp_idt();
	apic_write(0xF0, 0x1FF);
	apic_write(0x80, 0);
	int id = my_index();
	ap_ids[id % MAX_CPUS] = (u32)id;
	__atomic_add_fetch(&checkins[id % MAX_CPUS], 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&aps_started, 1, __ATOMIC_SEQ_CST);
	for (;;)
		__asm__ volatile("sti; hlt");
}

int main(void)
{
	serial_init();
	printf("# smp guest\n");
	u16 cpus = 0;
	fw_cfg_read(0x05, &cpus, 2);
	check(cpus >= 2 && cpus <= MAX_CPUS, "fw_cfg reports 2 to 256 CPUs");
	if (cpus > MAX_CPUS)
		cpus = MAX_CPUS;
	apic_write(0xF0, 0x1FF);
	set_trap_handler(0x60, on_ipi);
	set_trap_handler(2, on_nmi);
	check(my_index() == 0, "the BSP is APIC 0");

	int up = start_aps(cpus);
	check(up == cpus - 1, "every AP reached long mode and checked in");
	int distinct = 1;
	for (int i = 1; i < cpus; i++)
		distinct &= checkins[i] == 1 && ap_ids[i] == (u32)i;
	check(distinct, "each AP checked in once, with its own APIC ID");

	/* A fixed IPI to each AP, then an NMI to each. */
	for (int i = 1; i < cpus; i++)
		apic_icr((u32)i, 0x60);
	int got = 1;
	for (int i = 1; i < cpus; i++)
		got &= wait_until(&ipis[i], 1) == 1;
	check(got, "each AP took a fixed IPI");
	for (int i = 1; i < cpus; i++)
		apic_icr((u32)i, 0x400 | 2);
	got = 1;
	for (int i = 1; i < cpus; i++)
		got &= wait_until(&nmis[i], 1) == 1;
	check(got, "each AP took an NMI");
	apic_icr(0, (3 << 18) | 0x60);	/* all but self */
	got = 1;
	for (int i = 1; i < cpus; i++)
		got &= wait_until(&ipis[i], 2) == 2;
	check(got && ipis[0] == 0, "an all-but-self IPI reaches every AP and not the BSP");

	/* INIT parks the last AP; it no longer takes IPIs; a SIPI starts it again. */
	int last = cpus - 1;
	apic_icr((u32)last, (1 << 14) | 0x500);
	spin(10000);
	apic_icr((u32)last, 0x60);
	spin(200000);
	check(ipis[last] == 2, "an AP parked by INIT does not take a fixed IPI");
	apic_icr((u32)last, 0x600 | 0x08);
	check(wait_until(&checkins[last], 2) == 2, "a new SIPI starts the parked AP again");
	check(wait_until(&aps_started, cpus) == cpus, "it runs the trampoline to long mode once more");

	printf("# %d failed\n", failures());
	return failures();
}
