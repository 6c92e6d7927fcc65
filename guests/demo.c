/* Hyve's built-in demo guest: reports what it finds (loader, memory, CPUs, devices), brings up
 * every vCPU, exercises device memory and port I/O, and powers the machine off. */
#include "guest.h"

struct mb_info {
	u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	u32 syms[4];
	u32 mmap_length, mmap_addr;
	u32 drives_length, drives_addr, config_table, boot_loader_name;
};

struct mb_mmap {
	u32 size;
	u64 addr, len;
	u32 type;
} __attribute__((packed));

extern u32 mb_magic;

int main(u32 info_addr)
{
	struct mb_info *mb = (struct mb_info *)(u64)info_addr;
	serial_init();
	printf("hyve demo guest: hello from 64-bit mode\n");
	printf("loader: %s (magic 0x%x)\n", (mb->flags & (1 << 9)) ? (const char *)(u64)mb->boot_loader_name : "?", mb_magic);
	if (mb->flags & 4)
		printf("command line: \"%s\"\n", (const char *)(u64)mb->cmdline);

	u64 total = 0;
	if (mb->flags & (1 << 6)) {
		u64 p = mb->mmap_addr, end = p + mb->mmap_length;
		printf("memory map:\n");
		while (p < end) {
			struct mb_mmap *e = (struct mb_mmap *)p;
			printf("  %016lx-%016lx %s\n", e->addr, e->addr + e->len - 1, e->type == 1 ? "ram" : "reserved");
			if (e->type == 1)
				total += e->len;
			p += e->size + 4;
		}
	}
	printf("memory: %lu KiB usable\n", total >> 10);

	char sig[5] = {0};
	fw_cfg_read(0x0000, sig, 4);
	u16 cpus = 0;
	u64 ram = 0;
	fw_cfg_read(0x0005, &cpus, 2);
	fw_cfg_read(0x0003, &ram, 8);
	printf("fw_cfg: signature \"%s\", %u CPU(s), %lu MiB of RAM\n", sig, cpus, ram >> 20);
	if (cpus > MAX_CPUS)
		cpus = MAX_CPUS;
	int up = cpus > 1 ? start_aps(cpus) : 0;
	printf("cpus: %d of %u online (APIC IDs 0", up + 1, cpus);
	for (int i = 1; i < MAX_CPUS; i++)
		if (ap_ids[i])
			printf(" %u", ap_ids[i]);
	printf(")\n");

	u32 a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
	char vendor[13];
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	vendor[12] = 0;
	printf("cpu: vendor \"%s\", max leaf %u, APIC base 0x%lx\n", vendor, a, rdmsr(0x1B) & ~0xFFFUL);

	/* The UART's scratch register: a register that holds what it is given. */
	outb(0x3FF, 0x5A);
	printf("devices: COM1 %s", inb(0x3FF) == 0x5A ? "present" : "absent");
	outl(TESTDEV_LATCH, 0x12345678);
	printf(", pc-testdev latch %s", inl(TESTDEV_LATCH) == 0x12345678 ? "present" : "absent");
	printf(", I/O APIC version 0x%x\n", ({ *(volatile u32 *)0xFEC00000UL = 1; *(volatile u32 *)0xFEC00010UL; }) & 0xFF);

	/* Device memory: every access below leaves the guest and comes back through the vmm. */
	volatile u32 *mmio = (volatile u32 *)TESTDEV_MEM;
	for (u32 i = 0; i < 16; i++)
		mmio[i] = i * 0x01010101u;
	u32 sum = 0;
	for (u32 i = 0; i < 16; i++)
		sum += mmio[i];
	printf("mmio: 16 writes and 16 reads of pc-testdev memory, sum 0x%x (%s)\n", sum, sum == 0x78787878u ? "ok" : "wrong");

	/* String port I/O: REP OUTSB through the byte view of the latch. */
	static const char msg[] = "port";
	const char *src = msg;
	u64 count = 4;
	__asm__ volatile("cld; rep outsb" : "+S"(src), "+c"(count) : "d"(TESTDEV_BYTE_LATCH) : "memory");
	printf("port i/o: rep outsb left 0x%x in the latch\n", inl(TESTDEV_LATCH));

	printf("powering off\n");
	power_off();
}
