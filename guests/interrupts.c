/* Interrupts: the local APIC timer (one-shot, periodic, TSC-deadline), self IPIs with the
 * task-priority register and in-service order, the PIT on IRQ 0 through the I/O APIC, the 8259
 * pair in legacy mode through LINT0, the RTC's periodic interrupt on IRQ 8, and a pc-testdev
 * interrupt line through the I/O APIC. */
#include "guest.h"

#define APIC 0xFEE00000UL
#define IOAPIC 0xFEC00000UL


static void ioapic_route(int pin, u8 vector, int masked, int level)
{
	*(volatile u32 *)IOAPIC = 0x10 + 2 * pin + 1;
	*(volatile u32 *)(IOAPIC + 0x10) = 0;	/* destination: APIC 0 */
	*(volatile u32 *)IOAPIC = 0x10 + 2 * pin;
	*(volatile u32 *)(IOAPIC + 0x10) = vector | (level ? 1 << 15 : 0) | (masked ? 1 << 16 : 0);
}

static volatile int count[256];
static volatile u8 order[8];
static volatile int norder;

static void counted(struct trap_frame *f)
{
	count[f->vector]++;
	if (norder < 8)
		order[norder++] = (u8)f->vector;
	apic_write(0xB0, 0);	/* EOI */
}

static void pic_irq(struct trap_frame *f)
{
	count[f->vector]++;
	outb(0x20, 0x20);	/* EOI to the master 8259 */
}

static void rtc_irq(struct trap_frame *f)
{
	count[f->vector]++;
	outb(0x70, 0x0C);
	(void)inb(0x71);	/* reading register C acknowledges the interrupt */
	apic_write(0xB0, 0);
}

static void testdev_irq(struct trap_frame *f)
{
	count[f->vector]++;
	outb(0x2000 + 10, 0);	/* lower the line */
	apic_write(0xB0, 0);
}

/* Waits (halting) until count[vector] reaches n or about a second of PIT-sized waits passes. */
static int wait_for(int vector, int n)
{
	for (int i = 0; i < 100000 && count[vector] < n; i++)
		__asm__ volatile("sti; hlt; cli");
	return count[vector];
}

static void pic_init(void)
{
	/* ICW1-4: vectors 0x20 and 0x28, cascade on IRQ 2, 8086 mode; then everything masked. */
	outb(0x20, 0x11); outb(0xA0, 0x11);
	outb(0x21, 0x20); outb(0xA1, 0x28);
	outb(0x21, 0x04); outb(0xA1, 0x02);
	outb(0x21, 0x01); outb(0xA1, 0x01);
	outb(0x21, 0xFF); outb(0xA1, 0xFF);
}

static void pit_periodic(u16 divisor)
{
	outb(0x43, 0x34);	/* channel 0, lobyte/hibyte, mode 2 */
	outb(0x40, (u8)divisor);
	outb(0x40, (u8)(divisor >> 8));
}

int main(void)
{
	serial_init();
	printf("# interrupts guest\n");
	pic_init();
	for (int v = 0x20; v < 0x100; v++)
		set_trap_handler(v, counted);
	apic_write(0xF0, 0x1FF);	/* software enable, spurious vector 0xFF */
	apic_write(0x350, 1 << 16);	/* LINT0 masked */
	apic_write(0x80, 0);		/* TPR 0 */

	/* The timer, one-shot: divide by 1, vector 0x40. */
	apic_write(0x3E0, 0xB);
	apic_write(0x320, 0x40);
	apic_write(0x380, 200000);
	check(wait_for(0x40, 1) == 1, "APIC timer one-shot fires once");
	check(apic_read(0x390) == 0, "APIC timer current count is 0 after one-shot");
	/* Periodic, vector 0x41, three periods. */
	apic_write(0x320, 0x41 | (1 << 17));
	apic_write(0x380, 100000);
	check(wait_for(0x41, 3) >= 3, "APIC timer periodic fires again and again");
	apic_write(0x320, 1 << 16);
	/* TSC deadline, when the CPU has it. */
	u32 a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	if (c & (1 << 24)) {
		apic_write(0x320, 0x42 | (2 << 17));
		u32 lo, hi;
		__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
		wrmsr(0x6E0, (((u64)hi << 32) | lo) + 500000);
		check(wait_for(0x42, 1) == 1, "APIC timer TSC-deadline fires");
		check(rdmsr(0x6E0) == 0, "the deadline MSR reads 0 once it fired");
		apic_write(0x320, 1 << 16);
	} else {
		skip("APIC timer TSC-deadline fires", "no TSC-deadline timer on this CPU");
		skip("the deadline MSR reads 0 once it fired", "no TSC-deadline timer on this CPU");
	}

	/* Self IPIs: the task priority holds back a lower class; pending ones arrive highest first. */
	norder = 0;
	apic_write(0x80, 0x50);
	apic_write(0x300, (1 << 18) | 0x45);	/* fixed, to self */
	__asm__ volatile("sti; nop; nop; cli");
	check(count[0x45] == 0, "TPR 0x50 holds back vector 0x45");
	apic_write(0x80, 0);
	__asm__ volatile("sti; nop; nop; cli");
	check(count[0x45] == 1, "lowering TPR lets vector 0x45 in");
	norder = 0;
	apic_write(0x300, (1 << 18) | 0x61);
	apic_write(0x300, (1 << 18) | 0x72);
	apic_write(0x300, (1 << 18) | 0x53);
	__asm__ volatile("sti; nop; nop; nop; cli");
	check(norder == 3 && order[0] == 0x72 && order[1] == 0x61 && order[2] == 0x53, "pending self IPIs arrive highest first");

	/* The PIT on IRQ 0, through I/O APIC pin 2. */
	ioapic_route(2, 0x50, 0, 0);
	pit_periodic(11932);	/* 100 Hz */
	check(wait_for(0x50, 3) >= 3, "PIT IRQ 0 through the I/O APIC (pin 2)");
	ioapic_route(2, 0x50, 1, 0);

	/* The 8259 in legacy mode: IRQ 0 through LINT0 as ExtINT, vector 0x20 from ICW2. */
	set_trap_handler(0x20, pic_irq);
	apic_write(0x350, 0x700);	/* LINT0: ExtINT */
	outb(0x21, 0xFE);		/* unmask IRQ 0 */
	check(wait_for(0x20, 3) >= 3, "8259 IRQ 0 through LINT0 (ExtINT)");
	outb(0x21, 0xFF);
	apic_write(0x350, 1 << 16);
	pit_periodic(0);

	/* The RTC's periodic interrupt (1024 Hz) on IRQ 8, pin 8. */
	set_trap_handler(0x58, rtc_irq);
	ioapic_route(8, 0x58, 0, 0);
	outb(0x70, 0x0A); outb(0x71, 0x26);
	outb(0x70, 0x0B); u8 regb = inb(0x71);
	outb(0x70, 0x0B); outb(0x71, regb | 0x40);
	outb(0x70, 0x0C); (void)inb(0x71);
	check(wait_for(0x58, 3) >= 3, "RTC periodic interrupt on IRQ 8");
	outb(0x70, 0x0B); outb(0x71, regb & ~0x40);
	ioapic_route(8, 0x58, 1, 0);

	/* A pc-testdev line: ISA IRQ 10 raised by the guest itself. */
	set_trap_handler(0x5A, testdev_irq);
	ioapic_route(10, 0x5A, 0, 0);
	outb(0x2000 + 10, 1);
	__asm__ volatile("sti; nop; nop; cli");
	check(count[0x5A] == 1, "pc-testdev raises ISA IRQ 10 through the I/O APIC");

	check(count[0xFF] == 0, "no spurious interrupts");
	printf("# %d failed\n", failures());
	return failures();
}
