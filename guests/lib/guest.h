/* The test guests' small runtime: port I/O, COM1, formatted output, TAP-style checks and the
 * ways a guest ends its run (isa-debug-exit, ACPI soft-off). */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}

static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

void serial_init(void);
void putc(char c);
void puts(const char *s);
void printf(const char *fmt, ...);
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
int memcmp(const void *a, const void *b, u64 n);

/* TAP-style checks: each prints "ok N - name" or "not ok N - name". */
void check(int cond, const char *name);
void check_eq(u64 got, u64 want, const char *name);
int failures(void);
/* A check QEMU's TCG is known to get wrong: printed with "# qemu-deviation", not counted. */
void check_qemu_deviation(int cond, const char *name);
/* A check that cannot run here: "ok N - name # SKIP why". */
void skip(const char *name, const char *why);

/* Ends the run with isa-debug-exit: status (code << 1) | 1 on QEMU and Hyve. */
void guest_exit(int code) __attribute__((noreturn));
/* ACPI soft-off through PM1a_CNT (status 0). */
void power_off(void) __attribute__((noreturn));

/* Interrupts and exceptions: every vector has a gate (an interrupt gate to isr_entry(v)); a handler set here gets the frame (and may change
 * its rip to resume elsewhere); without one the guest reports the exception and exits. */
struct trap_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error, rip, cs, rflags, rsp, ss;
};
typedef void (*trap_handler)(struct trap_frame *f);
void set_trap_handler(int vector, trap_handler h);
void set_gate(int vector, void *entry, int type_attr, int ist);
void *isr_entry(int vector);

/* The 64-bit task-state segment. load_tss puts a TSS of size bytes (this header, maybe followed
 * by an I/O bitmap) in GDT slots 8-9 (selector 0x40) and loads TR with it. */
struct tss64 {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3, iomap;
} __attribute__((packed));
extern u64 gdt64[];
void load_tss(void *tss, u64 size);

/* The local APIC and the APs. start_aps sends INIT-SIPI-SIPI to all but self and waits until
 * cpus - 1 APs have run ap_main (a guest may define its own; the default checks in and halts);
 * an ap_main must call load_bsp_idt and count itself in aps_started. */
#define MAX_CPUS 256 /* as many as Hyve offers (255) and the xAPIC can name */
u32 apic_read(u32 reg);
void apic_write(u32 reg, u32 v);
void apic_icr(u32 dest, u32 low);
void spin(long n);
int wait_until(volatile int *p, int want);
int start_aps(int cpus);
void load_bsp_idt(void);
void ap_main(void);
extern volatile int aps_started;
extern volatile u32 ap_ids[MAX_CPUS];

/* fw_cfg items. */
void fw_cfg_read(u16 key, void *buf, u32 len);

/* pc-testdev. */
#define TESTDEV_LATCH 0xE0
#define TESTDEV_BYTE_LATCH 0xE8
#define TESTDEV_MEM ((volatile u8 *)0xFF000000UL)

#endif
