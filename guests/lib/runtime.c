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
