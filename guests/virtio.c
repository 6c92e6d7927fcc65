/* virtio-mmio: the block device (feature negotiation, a queue, write, flush, read back, a read
 * past the end, the device ID, its interrupt through the I/O APIC) and the entropy device, at
 * Hyve's virtio-mmio slots. A machine without them (QEMU's pc) skips every check. The test
 * suite runs this guest with a disk and then checks the file holds exactly what was written. */
#include "guest.h"

#define VIRTIO_BASE 0xD0000000UL
#define IOAPIC 0xFEC00000UL
#define QSIZE 8
#define CHECKS_BLK 9
#define CHECKS_RNG 2
#define CHECKS_CON 2

struct desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

struct queue {
	struct desc desc[QSIZE];
	u16 avail_flags, avail_idx, avail_ring[QSIZE], used_event;
	u8 pad[4096 - QSIZE * 16 - 6 - 2 * QSIZE];
	u16 used_flags, used_idx;
	struct {
		u32 id, len;
	} used_ring[QSIZE];
} __attribute__((aligned(4096)));

static struct queue blkq, rngq, conq;
static volatile int irqs;

static u32 rd(u64 base, u32 off) { return *(volatile u32 *)(base + off); }
static void wr(u64 base, u32 off, u32 v) { *(volatile u32 *)(base + off) = v; }

static void on_irq(struct trap_frame *f)
{
	irqs++;
	wr(VIRTIO_BASE, 0x64, rd(VIRTIO_BASE, 0x60));	/* acknowledge: the level line drops */
	apic_write(0xB0, 0);
	(void)f;
}

static int present(u64 base, u32 id)
{
	return rd(base, 0x000) == 0x74726976 && rd(base, 0x004) == 2 && rd(base, 0x008) == id;
}

/* Reset, negotiate VERSION_1 plus `want`, set up queue `index`; the status the device kept. */
static u32 init_queue(u64 base, struct queue *q, u32 want_low, u32 index)
{
	wr(base, 0x070, 0);
	wr(base, 0x070, 1);
	wr(base, 0x070, 3);
	wr(base, 0x014, 0);
	u32 low = rd(base, 0x010);
	wr(base, 0x014, 1);
	u32 high = rd(base, 0x010);
	wr(base, 0x024, 0);
	wr(base, 0x020, low & want_low);
	wr(base, 0x024, 1);
	wr(base, 0x020, high & 1);	/* VERSION_1 */
	wr(base, 0x070, 3 | 8);
	memset(q, 0, sizeof *q);
	wr(base, 0x030, index);
	wr(base, 0x038, QSIZE);
	wr(base, 0x080, (u32)(u64)q->desc);
	wr(base, 0x084, 0);
	wr(base, 0x090, (u32)(u64)&q->avail_flags);
	wr(base, 0x094, 0);
	wr(base, 0x0A0, (u32)(u64)&q->used_flags);
	wr(base, 0x0A4, 0);
	wr(base, 0x044, 1);
	wr(base, 0x070, 3 | 8 | 4);
	return rd(base, 0x070);
}

static u32 init(u64 base, struct queue *q, u32 want_low)
{
	return init_queue(base, q, want_low, 0);
}

/* Makes chain `head` available, notifies queue `index` and waits for the device to use it: its
 * used length. */
static u32 submit_to(u64 base, struct queue *q, u16 head, u32 index)
{
	u16 before = q->used_idx;
	q->avail_ring[q->avail_idx % QSIZE] = head;
	__asm__ volatile("" : : : "memory");
	q->avail_idx++;
	__asm__ volatile("mfence" : : : "memory");
	wr(base, 0x050, index);
	for (long i = 0; i < 1000000 && *(volatile u16 *)&q->used_idx == before; i++)
		__asm__ volatile("pause");
	return q->used_ring[before % QSIZE].len;
}

static u32 submit(u64 base, struct queue *q, u16 head)
{
	return submit_to(base, q, head, 0);
}

struct blk_req {
	u32 type, reserved;
	u64 sector;
};

static struct blk_req req;
static u8 data[1024], status;

static u32 blk(u32 type, u64 sector, u32 len, int device_writes)
{
	req.type = type, req.reserved = 0, req.sector = sector;
	status = 0xFF;
	blkq.desc[0] = (struct desc){ (u64)&req, sizeof req, 1, 1 };
	if (len) {
		blkq.desc[1] = (struct desc){ (u64)data, len, (u16)(1 | (device_writes ? 2 : 0)), 2 };
		blkq.desc[2] = (struct desc){ (u64)&status, 1, 2, 0 };
	} else {
		blkq.desc[1] = (struct desc){ (u64)&status, 1, 2, 0 };
	}
	return submit(VIRTIO_BASE, &blkq, 0);
}

static void block_checks(void)
{
	const char *names[CHECKS_BLK] = {
		"virtio-blk: magic, version 2, device ID 2",
		"virtio-blk: FEATURES_OK and DRIVER_OK stay set with VERSION_1 and FLUSH",
		"virtio-blk: the capacity is at least 8 sectors",
		"virtio-blk: write of sectors 2-3 completes with status OK",
		"virtio-blk: flush completes with status OK",
		"virtio-blk: sectors 2-3 read back as written (1024 bytes and the status)",
		"virtio-blk: a read past the end completes with an I/O error",
		"virtio-blk: the device ID",
		"virtio-blk: its interrupt arrives through the I/O APIC (pin 5)",
	};
	u64 b = VIRTIO_BASE;
	if (!present(b, 2)) {
		for (int i = 0; i < CHECKS_BLK; i++)
			skip(names[i], "no virtio-mmio block device here");
		return;
	}
	check(present(b, 2), names[0]);
	set_trap_handler(0x65, on_irq);
	*(volatile u32 *)IOAPIC = 0x10 + 2 * 5 + 1;
	*(volatile u32 *)(IOAPIC + 0x10) = 0;
	*(volatile u32 *)IOAPIC = 0x10 + 2 * 5;
	*(volatile u32 *)(IOAPIC + 0x10) = 0x65 | (1 << 15);	/* level */
	apic_write(0xF0, 0x1FF);
	u32 st = init(b, &blkq, 1 << 9);
	check((st & 0xC) == 0xC, names[1]);
	u64 capacity = rd(b, 0x100) | ((u64)rd(b, 0x104) << 32);
	check(capacity >= 8, names[2]);
	for (int i = 0; i < 1024; i++)
		data[i] = (u8)(i * 7 + 1);
	u32 len = blk(1, 2, 1024, 0);
	check(status == 0 && len == 1, names[3]);
	len = blk(4, 0, 0, 0);
	check(status == 0 && len == 1, names[4]);
	memset(data, 0, sizeof data);
	len = blk(0, 2, 1024, 1);
	int same = 1;
	for (int i = 0; i < 1024; i++)
		same &= data[i] == (u8)(i * 7 + 1);
	check(status == 0 && len == 1025 && same, names[5]);
	len = blk(0, capacity - 1, 1024, 1);
	check(status == 1, names[6]);
	memset(data, 0, sizeof data);
	len = blk(8, 0, 20, 1);
	check(status == 0 && memcmp(data, "hyve-virtio-blk", 15) == 0, names[7]);
	__asm__ volatile("sti; nop; cli");
	check(irqs > 0, names[8]);
}

static void rng_checks(void)
{
	const char *names[CHECKS_RNG] = {
		"virtio-rng: magic, version 2, device ID 4",
		"virtio-rng: 64 random bytes (not all zero, used length 64)",
	};
	u64 b = VIRTIO_BASE + 0x1000;
	if (!present(b, 4)) {
		for (int i = 0; i < CHECKS_RNG; i++)
			skip(names[i], "no virtio-mmio entropy device here");
		return;
	}
	check(present(b, 4), names[0]);
	init(b, &rngq, 0);
	static u8 pool[64];
	rngq.desc[0] = (struct desc){ (u64)pool, sizeof pool, 2, 0 };
	u32 len = submit(b, &rngq, 0);
	int nonzero = 0;
	for (int i = 0; i < 64; i++)
		nonzero |= pool[i];
	check(len == 64 && nonzero, names[1]);
}

static void console_checks(void)
{
	const char *names[CHECKS_CON] = {
		"virtio-console: magic, version 2, device ID 3",
		"virtio-console: a line on the transmit queue comes back used",
	};
	u64 b = VIRTIO_BASE + 0x2000;
	if (!present(b, 3)) {
		for (int i = 0; i < CHECKS_CON; i++)
			skip(names[i], "no virtio-mmio console here");
		return;
	}
	check(present(b, 3), names[0]);
	init_queue(b, &conq, 0, 1);
	static char line[] = "# hello from the virtio console\n";
	conq.desc[0] = (struct desc){ (u64)line, sizeof line - 1, 0, 0 };
	u16 before = conq.used_idx;
	submit_to(b, &conq, 0, 1);
	check(conq.used_idx == (u16)(before + 1), names[1]);
}

int main(void)
{
	serial_init();
	printf("# virtio guest\n");
	outb(0x21, 0xFF);
	outb(0xA1, 0xFF);
	block_checks();
	rng_checks();
	console_checks();
	printf("# %d failed\n", failures());
	return failures();
}
