/* Device memory: every form in mmio.S runs with its operand in RAM and then in pc-testdev's
 * device memory (0xFF000000, which reads back what was written and leaves the guest on every
 * access), from the same registers, flags and memory contents; registers, the flags the form
 * defines and the memory window must come out equal. Each form runs 16 times with its window
 * aligned and 16 times with it straddling a page boundary. */
#include "guest.h"
#include "mmio.h"

struct regs {
	u64 rax, rbx, rcx, rdx, rsi, rdi, r8, r9, flags;
};

struct form {
	const char *name;
	void *code;
	u64 mask, kind;
};

extern const struct form __forms_start[], __forms_end[];
extern void ret_stub(void);
void run_form(const struct form *f, struct regs *r);

#define WINDOW 128
#define ROUNDS 16

static u8 ram[3 * 4096] __attribute__((aligned(4096)));
static u8 template[WINDOW];
static u64 state = 0x243F6A8885A308D3UL;

static u64 rnd(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static void prepare(const struct form *f, struct regs *r)
{
	for (int i = 0; i < WINDOW; i++)
		template[i] = (u8)rnd();
	r->rax = rnd(), r->rcx = rnd(), r->rdx = rnd(), r->rsi = rnd(), r->rdi = rnd();
	r->r8 = rnd() & 1, r->r9 = rnd();
	r->flags = 0x2 | (rnd() & (CF | PF | AF | ZF | SF | OF));
	u64 *q = (u64 *)template;
	switch (f->kind) {
	case K_DIV:
		r->rdx = 0;
		q[0] |= 1;
		break;
	case K_IDIV:
		r->rax = rnd() & 0x7FFFFFFF, r->rdx = 0;
		q[0] = (q[0] & 0xFFFF) | 1;
		break;
	case K_BITREG:
		r->rcx &= 255;
		break;
	case K_NONZERO:
		q[0] |= 1UL << (rnd() & 63);
		break;
	case K_CMPXCHG_EQ:
		r->rax = template[0];
		break;
	case K_ALIGNED:
		if (rnd() & 1)
			r->rax = q[0], r->rdx = q[1];
		break;
	case K_BRANCH:
		q[0] = (u64)ret_stub;
		break;
	case K_STRING:
	case K_STRING_DOWN:
		r->rcx &= 7;
		for (int i = 0; i < 64; i++)
			template[64 + i] = template[i];
		if (rnd() & 1)
			template[64 + (rnd() & 63)] ^= 0x10;
		r->rax = q[rnd() & 15];
		break;
	case K_XLAT:
		r->rax = (r->rax & ~0xFFUL) | (rnd() & 0x7F);
		break;
	}
}

/* Points the address registers of r at base. */
static void place(const struct form *f, struct regs *r, u64 base)
{
	r->rbx = base;
	if (f->kind == K_ALIGNED)
		r->rdi = base, r->rbx = r->r9;
	if (f->kind == K_STRING)
		r->rsi = base, r->rdi = base + 64;
	if (f->kind == K_STRING_DOWN)
		r->rsi = base + 56, r->rdi = base + 120;
}

static u64 rel(u64 v, u64 base)
{
	return v - base < 4 * WINDOW ? v - base : v;
}

static int same(const struct form *f, const struct regs *a, u64 abase, const struct regs *b, u64 bbase)
{
	return a->rax == b->rax && rel(a->rbx, abase) == rel(b->rbx, bbase) && a->rcx == b->rcx && a->rdx == b->rdx
		&& rel(a->rsi, abase) == rel(b->rsi, bbase) && rel(a->rdi, abase) == rel(b->rdi, bbase)
		&& a->r8 == b->r8 && a->r9 == b->r9 && ((a->flags ^ b->flags) & f->mask) == 0;
}

static void show(const char *what, const struct regs *r, u64 base)
{
	printf("#   %s: rax %lx rbx %lx rcx %lx rdx %lx rsi %lx rdi %lx r9 %lx flags %lx\n", what, r->rax, rel(r->rbx, base),
	       r->rcx, r->rdx, rel(r->rsi, base), rel(r->rdi, base), r->r9, r->flags);
}

int main(void)
{
	serial_init();
	printf("# device memory guest: %d forms, RAM against pc-testdev memory\n", (int)(__forms_end - __forms_start));
	u32 a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	int has_popcnt = (c >> 23) & 1;
	for (const struct form *f = __forms_start; f < __forms_end; f++) {
		int ok = 1;
		if (f->kind == K_POPCNT && !has_popcnt) {
			skip(f->name, "no POPCNT on this CPU");
			continue;
		}
		for (int round = 0; round < 2 * ROUNDS && ok; round++) {
			int split = round >= ROUNDS;
			if (split && f->kind == K_ALIGNED)
				break;
			u64 offset = split ? 4096 - 13 : 0x100;
			u64 rbase = (u64)ram + offset, mbase = (u64)TESTDEV_MEM + offset;
			struct regs in, r, m;
			prepare(f, &in);
			r = in, m = in;
			place(f, &r, rbase);
			place(f, &m, mbase);
			memcpy((void *)rbase, template, WINDOW);
			for (int i = 0; i < WINDOW; i++)
				TESTDEV_MEM[offset + i] = template[i];
			run_form(f, &r);
			run_form(f, &m);
			u8 after[WINDOW];
			for (int i = 0; i < WINDOW; i++)
				after[i] = TESTDEV_MEM[offset + i];
			int mem_ok = memcmp(after, (void *)rbase, WINDOW) == 0;
			if (!same(f, &r, rbase, &m, mbase) || !mem_ok) {
				ok = 0;
				printf("# %s, round %d%s%s\n", f->name, round, split ? " (split)" : "", mem_ok ? "" : ", memory differs");
				show("ram ", &r, rbase);
				show("mmio", &m, mbase);
			}
		}
		check(ok, f->name);
	}
	extern u64 stack_in_device_memory(u64 rsp);
	u64 top = (u64)TESTDEV_MEM + 0x8000;
	u64 sum = stack_in_device_memory(top);
	check(sum == 0x5678 + 2 * 0x1234 && *(volatile u64 *)(top - 8) == 0x1234 && *(volatile u64 *)(top - 16) == 0x5678,
	      "the stack in device memory: push, call, ret, pop");
	printf("# %d failed\n", failures());
	return failures();
}
