/* The test guests' runtime: COM1 output, a small printf, the check counters and the exits. */
#include "guest.h"
#include <stdarg.h>

#define COM1 0x3F8

void serial_init(void)
{
	outb(COM1 + 1, 0x00);	/* no interrupts */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0x07);	/* FIFOs on and cleared */
	outb(COM1 + 4, 0x0B);	/* DTR, RTS, OUT2 */
}

void putc(char c)
{
	if (c == '\n')
		putc('\r');
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

static void put_unsigned(u64 v, int base, int width, char pad)
{
	char buf[24];
	int n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n < width--)
		putc(pad);
	while (n)
		putc(buf[--n]);
}

void printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc(*fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, lng = 0;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng = 1, fmt++;
		switch (*fmt) {
		case 'd': {
			i64 v = lng ? va_arg(ap, i64) : va_arg(ap, int);
			if (v < 0)
				putc('-'), v = -v;
			put_unsigned((u64)v, 10, width, pad);
			break;
		}
		case 'u':
			put_unsigned(lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad);
			break;
		case 'x':
			put_unsigned(lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad);
			break;
		case 's':
			puts(va_arg(ap, const char *));
			break;
		case 'c':
			putc((char)va_arg(ap, int));
			break;
		default:
			putc('%');
			putc(*fmt);
		}
	}
	va_end(ap);
}

void *memset(void *d, int c, u64 n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, u64 n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, u64 n)
{
	const u8 *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

static int checks, failed;

void check(int cond, const char *name)
{
	checks++;
	if (!cond)
		failed++;
	printf("%s %d - %s\n", cond ? "ok" : "not ok", checks, name);
}

void check_eq(u64 got, u64 want, const char *name)
{
	check(got == want, name);
	if (got != want)
		printf("#   got 0x%lx, want 0x%lx\n", got, want);
}

void check_qemu_deviation(int cond, const char *name)
{
	checks++;
	printf("%s %d - %s # qemu-deviation\n", cond ? "ok" : "not ok", checks, name);
}

void skip(const char *name, const char *why)
{
	checks++;
	printf("ok %d - %s # SKIP %s\n", checks, name, why);
}

int failures(void)
{
	return failed;
}

void guest_exit(int code)
{
	outl(0xF4, (u32)code);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void power_off(void)
{
	outw(0x604, 0x2000);	/* PM1a_CNT: SLP_EN, sleep type 0 (S5) */
	for (;;)
		__asm__ volatile("cli; hlt");
}

void fw_cfg_read(u16 key, void *buf, u32 len)
{
	u8 *p = buf;
	outw(0x510, key);
	while (len--)
		*p++ = inb(0x511);
}

struct gate {
	u16 off0, sel;
	u8 ist, type_attr;
	u16 off1;
	u32 off2, zero;
} __attribute__((packed));

static struct gate idt[256] __attribute__((aligned(16)));
static trap_handler handlers[256];
extern char isr_base[];

void *isr_entry(int vector)
{
	return isr_base + 16 * vector;
}

void set_gate(int vector, void *entry, int type_attr, int ist)
{
	u64 a = (u64)entry;
	idt[vector].off0 = (u16)a;
	idt[vector].sel = 0x08;
	idt[vector].ist = (u8)ist;
	idt[vector].type_attr = (u8)type_attr;
	idt[vector].off1 = (u16)(a >> 16);
	idt[vector].off2 = (u32)(a >> 32);
	idt[vector].zero = 0;
}

void idt_init(void)
{
	for (int v = 0; v < 256; v++)
		set_gate(v, isr_entry(v), 0x8E, 0);
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) idtr = { sizeof idt - 1, (u64)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

void set_trap_handler(int vector, trap_handler h)
{
	handlers[vector] = h;
}

void exception_entry(struct trap_frame *f)
{
	if (handlers[f->vector & 0xFF]) {
		handlers[f->vector](f);
		return;
	}
	printf("# unexpected %s %lu (error 0x%lx) at rip 0x%lx\n", f->vector < 32 ? "exception" : "interrupt", f->vector, f->error, f->rip);
	guest_exit(0x7E);
}

/* The APs: INIT-SIPI-SIPI to all but self into the trampoline in ap.S. */
extern char trampoline[], trampoline_end[], tramp_gdt[], tramp_cr3[], tramp_far64[];
extern void ap_entry(void);
extern u64 pml4[];
extern char gdt64_ptr[];
u8 bsp_idtr[10];

#define APIC 0xFEE00000UL

u32 apic_read(u32 reg)
{
	return *(volatile u32 *)(APIC + reg);
}

void apic_write(u32 reg, u32 v)
{
	*(volatile u32 *)(APIC + reg) = v;
}

void apic_icr(u32 dest, u32 low)
{
	apic_write(0x310, dest << 24);
	apic_write(0x300, low);
	for (int i = 0; i < 100000 && (apic_read(0x300) & (1 << 12)); i++)
		__asm__ volatile("pause");
}

void spin(long n)
{
	for (volatile long i = 0; i < n; i++)
		__asm__ volatile("pause");
}

int wait_until(volatile int *p, int want)
{
	for (long i = 0; i < 20000000 && *p < want; i++)
		__asm__ volatile("pause");
	return *p;
}

/* The APs' default: check in by APIC ID and wait for interrupts. */
volatile int aps_started;
volatile u32 ap_ids[MAX_CPUS];

__attribute__((weak)) void ap_main(void)
{
	load_bsp_idt();
	apic_write(0xF0, 0x1FF);
	u32 id = apic_read(0x20) >> 24;
	ap_ids[id % MAX_CPUS] = id;
	__atomic_add_fetch(&aps_started, 1, __ATOMIC_SEQ_CST);
	for (;;)
		__asm__ volatile("sti; hlt");
}

void load_bsp_idt(void)
{
	__asm__ volatile("lidt %0" : : "m"(bsp_idtr));
}

int start_aps(int cpus)
{
	__asm__ volatile("sidt %0" : "=m"(bsp_idtr));
	apic_write(0xF0, 0x1FF);
	u8 *t = (u8 *)0x8000;
	memcpy(t, trampoline, (u64)(trampoline_end - trampoline));
	memcpy(t + (tramp_gdt - trampoline), gdt64_ptr, 6);
	*(u32 *)(t + (tramp_cr3 - trampoline)) = (u32)(u64)pml4;
	*(u32 *)(t + (tramp_far64 - trampoline)) = (u32)(u64)ap_entry;
	apic_icr(0, (3 << 18) | (1 << 14) | 0x500);
	spin(10000);
	apic_icr(0, (3 << 18) | 0x600 | 0x08);
	spin(2000);
	apic_icr(0, (3 << 18) | 0x600 | 0x08);
	return wait_until(&aps_started, cpus - 1);
}

void load_tss(void *tss, u64 size)
{
	u64 base = (u64)tss, limit = size - 1;
	gdt64[8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89UL << 40) | (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
	gdt64[9] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(0x40));
}
