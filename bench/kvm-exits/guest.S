/* Exit round-trip benchmark guest (32-bit flat, loaded at 0x100000): N port writes, then N
 * device-memory writes, each timed with RDTSC; prints "port <cycles>" and "mmio <cycles>" (totals,
 * hex) on COM1 and leaves through isa-debug-exit. The same binary runs on Hyve and on exits.c. */
	.code32
	.globl _start
	.set N, 100000
_start:
	mov $0x80000, %esp
	mov $N, %ecx
	rdtsc
	mov %eax, %esi
	mov %edx, %edi
1:	outb %al, $0x80
	dec %ecx
	jnz 1b
	rdtsc
	sub %esi, %eax
	sbb %edi, %edx
	mov $label_port, %ebx
	call report
	mov $N, %ecx
	rdtsc
	mov %eax, %esi
	mov %edx, %edi
2:	movl %ecx, 0xFF000000
	dec %ecx
	jnz 2b
	rdtsc
	sub %esi, %eax
	sbb %edi, %edx
	mov $label_mmio, %ebx
	call report
	mov $0, %al
	outb %al, $0xF4
	hlt

/* Prints the string at EBX, then EDX:EAX in hex and a newline. */
report:
	push %eax
	push %edx
3:	movb (%ebx), %al
	test %al, %al
	jz 4f
	mov $0x3F8, %dx
	outb %al, %dx
	inc %ebx
	jmp 3b
4:	pop %eax
	call hex32
	pop %eax
	call hex32
	mov $0x3F8, %dx
	mov $'\n', %al
	outb %al, %dx
	ret

hex32:
	mov $8, %ecx
5:	rol $4, %eax
	push %eax
	and $0xF, %al
	add $'0', %al
	cmp $'9', %al
	jbe 6f
	add $7, %al
6:	mov $0x3F8, %dx
	outb %al, %dx
	pop %eax
	dec %ecx
	jnz 5b
	ret

label_port: .asciz "port "
label_mmio: .asciz "mmio "
