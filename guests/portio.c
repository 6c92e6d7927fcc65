/* Port I/O: IN and OUT in every form and size, INS and OUTS with and without REP, both
 * directions, 64- and 32-bit address sizes, a segment override on OUTS, elements that cross a
 * page, device memory as the memory side. Ports: the pc-testdev latch (0xE0, 0xE8), the UART in
 * loopback (each element stays distinct through its FIFO) and fw_cfg's data stream. */
#include "guest.h"

#define COM1 0x3F8

static u8 page_pair[8192] __attribute__((aligned(4096)));

/* While the UART loops back, output would land in its own FIFO: results wait until it is off. */
static struct { int ok; const char *name; } pending[48];
static int npending;

static void later(int ok, const char *name)
{
	pending[npending].ok = ok;
	pending[npending++].name = name;
}

static void report(void)
{
	for (int i = 0; i < npending; i++)
		check(pending[i].ok, pending[i].name);
	npending = 0;
}

static void loopback(int on)
{
	outb(COM1 + 4, on ? 0x1B : 0x0B);
	outb(COM1 + 2, 0x07);	/* FIFOs on, both cleared */
}

static void simple_forms(void)
{
	u32 v;
	outl(TESTDEV_LATCH, 0);
	__asm__ volatile("outb %%al, $0xE0" : : "a"(0x11));
	__asm__ volatile("inl $0xE0, %%eax" : "=a"(v));
	check_eq(v, 0x11, "out imm8, al then in eax, imm8");
	__asm__ volatile("outw %%ax, $0xE2" : : "a"(0x3344));
	__asm__ volatile("inl $0xE0, %%eax" : "=a"(v));
	check_eq(v, 0x33440011, "out imm8, ax at the latch's upper half");
	outl(TESTDEV_LATCH, 0xA1B2C3D4);
	check_eq(inb(TESTDEV_LATCH + 1), 0xC3, "in al, dx at latch byte 1");
	check_eq(inw(TESTDEV_LATCH + 2), 0xA1B2, "in ax, dx at latch bytes 2-3");
	check_eq(inl(TESTDEV_BYTE_LATCH), 0xA1B2C3D4, "in eax, dx through the byte view");
	outl(TESTDEV_BYTE_LATCH, 0x01020304);
	check_eq(inl(TESTDEV_LATCH), 0x01020304, "out dx, eax through the byte view");

	/* IN to AL and AX merge into RAX; IN to EAX zero-extends. */
	u64 r = 0xFFFFFFFFFFFFFFFFUL;
	__asm__ volatile("inb %%dx, %%al" : "+a"(r) : "d"(TESTDEV_LATCH));
	check_eq(r, 0xFFFFFFFFFFFFFF04UL, "in al merges into rax");
	r = 0xFFFFFFFFFFFFFFFFUL;
	__asm__ volatile("inw %%dx, %%ax" : "+a"(r) : "d"(TESTDEV_LATCH));
	check_eq(r, 0xFFFFFFFFFFFF0304UL, "in ax merges into rax");
	r = 0xFFFFFFFFFFFFFFFFUL;
	__asm__ volatile("inl %%dx, %%eax" : "+a"(r) : "d"(TESTDEV_LATCH));
	check_eq(r, 0x01020304UL, "in eax zero-extends into rax");

	/* A port nobody decodes reads all ones. */
	check_eq(inb(0x2F0), 0xFF, "unclaimed port reads 0xff");
	check_eq(inl(0x2F0), 0xFFFFFFFF, "unclaimed port reads all ones (32-bit)");
}

static void string_forms(void)
{
	u8 *buf = page_pair + 4096 - 5;		/* elements cross the page boundary */
	u64 n, si, di;

	/* REP OUTSB into the UART in loopback, REP INSB back: every element distinct. */
	for (int i = 0; i < 12; i++)
		buf[i] = (u8)(0x41 + i);
	loopback(1);
	si = (u64)buf, n = 12;
	__asm__ volatile("cld; rep outsb" : "+S"(si), "+c"(n) : "d"(COM1) : "memory");
	later(n == 0 && si == (u64)buf + 12, "rep outsb: rcx 0, rsi advanced by 12");
	u8 back[16] = {0};
	di = (u64)back, n = 12;
	__asm__ volatile("cld; rep insb" : "+D"(di), "+c"(n) : "d"(COM1) : "memory");
	later(n == 0 && di == (u64)back + 12 && memcmp(back, buf, 12) == 0, "rep insb reads the 12 bytes back in order");

	/* DF set: OUTS walks down. */
	si = (u64)(buf + 11), n = 12;
	__asm__ volatile("std; rep outsb; cld" : "+S"(si), "+c"(n) : "d"(COM1) : "memory");
	memset(back, 0, sizeof back);
	di = (u64)back, n = 12;
	__asm__ volatile("cld; rep insb" : "+D"(di), "+c"(n) : "d"(COM1) : "memory");
	int reversed = 1;
	for (int i = 0; i < 12; i++)
		reversed &= back[i] == buf[11 - i];
	later(reversed && si == (u64)buf - 1, "std; rep outsb sends the buffer backwards");

	/* REP INSB with DF set: the stream fills the buffer from its end. */
	di = (u64)(back + 3), n = 4;
	u8 sig[4];
	outw(0x510, 0);
	__asm__ volatile("std; rep insb; cld" : "+D"(di), "+c"(n) : "d"(0x511) : "memory");
	for (int i = 0; i < 4; i++)
		sig[i] = back[3 - i];
	later(memcmp(sig, "QEMU", 4) == 0 && di == (u64)back - 1, "std; rep insb from fw_cfg stores downwards");

	/* Word and dword elements across the page (the latch keeps the last one). */
	u16 *w = (u16 *)(page_pair + 4096 - 3);
	w[0] = 0x3130, w[1] = 0x3332, w[2] = 0x3534;
	si = (u64)w, n = 3;
	outl(TESTDEV_LATCH, 0);
	__asm__ volatile("cld; rep outsw" : "+S"(si), "+c"(n) : "d"(TESTDEV_LATCH) : "memory");
	later(n == 0 && si == (u64)(w + 3) && inl(TESTDEV_LATCH) == 0x3534, "rep outsw across a page boundary");
	u32 *dw = (u32 *)(page_pair + 4096 - 6);
	outl(TESTDEV_LATCH, 0xCAFEF00D);
	di = (u64)dw, n = 3;
	__asm__ volatile("cld; rep insl" : "+D"(di), "+c"(n) : "d"(TESTDEV_LATCH) : "memory");
	later(dw[0] == 0xCAFEF00D && dw[1] == 0xCAFEF00D && dw[2] == 0xCAFEF00D && di == (u64)(dw + 3),
	      "rep insl across a page boundary");

	/* Count 0: nothing moves. */
	si = (u64)buf, n = 0;
	outl(TESTDEV_LATCH, 0x77);
	__asm__ volatile("rep outsb" : "+S"(si), "+c"(n) : "d"(TESTDEV_LATCH) : "memory");
	later(si == (u64)buf && inl(TESTDEV_LATCH) == 0x77, "rep outsb with rcx 0 does nothing");

	/* Count 1, and a large count across two pages (the latch keeps the last byte). */
	si = (u64)buf, n = 1;
	buf[0] = 0x31;
	__asm__ volatile("cld; rep outsb" : "+S"(si), "+c"(n) : "d"(TESTDEV_LATCH) : "memory");
	later(n == 0 && si == (u64)buf + 1 && (inl(TESTDEV_LATCH) & 0xFF) == 0x31, "rep outsb with rcx 1 moves one byte");
	for (int i = 0; i < 5000; i++)
		page_pair[i] = (u8)i;
	si = (u64)page_pair, n = 5000;
	__asm__ volatile("cld; rep outsb" : "+S"(si), "+c"(n) : "d"(TESTDEV_LATCH) : "memory");
	later(n == 0 && si == (u64)page_pair + 5000 && (inl(TESTDEV_LATCH) & 0xFF) == (u8)4999, "rep outsb of 5000 bytes across pages");
	outw(0x510, 0);
	di = (u64)page_pair, n = 4096;
	__asm__ volatile("cld; rep insb" : "+D"(di), "+c"(n) : "d"(0x511) : "memory");
	later(n == 0 && di == (u64)page_pair + 4096 && memcmp(page_pair, "QEMU", 4) == 0 && page_pair[4] == 0 && page_pair[4095] == 0,
	      "rep insb of 4096 bytes from fw_cfg (zeros past the item)");

	/* Without REP: one element, RCX untouched. */
	n = 5;
	buf[0] = 0x9C;
	si = (u64)buf;
	__asm__ volatile("outsb" : "+S"(si) : "d"(TESTDEV_LATCH), "c"(n) : "memory");
	later(si == (u64)buf + 1 && (inl(TESTDEV_LATCH) & 0xFF) == 0x9C, "outsb without rep moves one byte");

	/* 32-bit address size (0x67): ESI/ECX wrap at 32 bits, the upper halves are cleared. */
	u64 rsi = (u64)buf, rcx = 0xFFFFFFFF00000002UL;
	__asm__ volatile(".byte 0x67; rep outsb" : "+S"(rsi), "+c"(rcx) : "d"(TESTDEV_LATCH) : "memory");
	later(rcx == 0 && rsi == (u64)buf + 2, "a32 rep outsb counts in ecx (a 32-bit write: rcx's upper half cleared)");

	/* Segment override on OUTS: FS with a base (INS always stores through ES). */
	wrmsr(0xC0000100, (u64)buf - 0x100);
	buf[0] = 0x5E;
	rsi = 0x100;
	__asm__ volatile("fs outsb" : "+S"(rsi) : "d"(TESTDEV_LATCH) : "memory");
	later((inl(TESTDEV_LATCH) & 0xFF) == 0x5E && rsi == 0x101, "fs: outsb reads through fs's base");
	wrmsr(0xC0000100, 0);

	/* Device memory as the memory side: OUTS from and INS into pc-testdev memory. */
	volatile u8 *mem = TESTDEV_MEM;
	for (int i = 0; i < 8; i++)
		mem[i] = (u8)(0x61 + i);
	si = (u64)mem, n = 8;
	__asm__ volatile("cld; rep outsb" : "+S"(si), "+c"(n) : "d"(COM1) : "memory");
	memset(back, 0, sizeof back);
	di = (u64)(mem + 0x100), n = 8;
	__asm__ volatile("rep insb" : "+D"(di), "+c"(n) : "d"(COM1) : "memory");
	int same = 1;
	for (int i = 0; i < 8; i++)
		same &= mem[0x100 + i] == (u8)(0x61 + i);
	later(same, "rep outsb from device memory, rep insb into device memory");
	loopback(0);
	report();
}

int main(void)
{
	serial_init();
	printf("# port i/o guest\n");
	simple_forms();
	string_forms();
	printf("# %d failed\n", failures());
	return failures();
}
