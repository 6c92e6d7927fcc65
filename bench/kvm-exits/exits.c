/* The peer of Hyve's KVM backend in the exit benchmark: the least a VMM can do per exit. One VM,
 * one vCPU in flat 32-bit protected mode, KVM_RUN in a loop; port 0x3F8 goes to stdout, port 0xF4
 * ends the run, every other port and device-memory access is answered and ignored.
 * Usage: exits GUEST.bin (loaded and entered at 0x100000). */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM (4u << 20)
#define LOAD 0x100000

static void die(const char *what) { perror(what); exit(2); }

int main(int argc, char **argv)
{
	if (argc != 2) { fprintf(stderr, "usage: exits GUEST.bin\n"); return 2; }
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("KVM_CREATE_VM");
	unsigned char *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	FILE *f = fopen(argv[1], "rb");
	if (!f) die(argv[1]);
	fread(mem + LOAD, 1, MEM - LOAD, f);
	fclose(f);
	struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM, .userspace_addr = (unsigned long)mem };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
	ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000);
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) die("KVM_CREATE_VCPU");
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	struct kvm_sregs sregs;
	ioctl(vcpu, KVM_GET_SREGS, &sregs);
	struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 11, .present = 1, .db = 1, .s = 1, .g = 1 };
	struct kvm_segment data = code;
	data.selector = 0x18;
	data.type = 3;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr0 = 0x11;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = LOAD, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3F8)
				fwrite((char *)run + run->io.data_offset, run->io.size, run->io.count, stdout);
			else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0xF4)
				return 0;
			break;
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof run->mmio.data);
			break;
		default:
			fprintf(stderr, "exits: unexpected exit %u\n", run->exit_reason);
			return 2;
		}
	}
}
