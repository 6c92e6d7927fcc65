/* The instruction forms of the MMIO guest. Each form is one instruction (or a short sequence)
 * with its memory operand at (%rbx) (strings: %rsi and %rdi), followed by ret; run_form loads
 * the registers and flags from a struct regs, calls the form and stores them back. FORM adds
 * the form to the table mmio.c walks: name, code, defined-flags mask and kind (how registers
 * and memory are prepared). */
#include "callee.h"
#include "mmio.h"

	.macro FORM name, mask, kind, insn:vararg
	.section .rodata.names, "a"
.Lname\@: .asciz "\name"
	.section .forms, "a"
	.quad .Lname\@, .Lcode\@, \mask, \kind
	.text
.Lcode\@:
	\insn
	ret
	.endm

	/* A form of several instructions, each a quoted argument. */
	.macro FORMS name, mask, kind, i1, i2="", i3="", i4=""
	.section .rodata.names, "a"
.Lname\@: .asciz "\name"
	.section .forms, "a"
	.quad .Lname\@, .Lcode\@, \mask, \kind
	.text
.Lcode\@:
	\i1
	\i2
	\i3
	\i4
	ret
	.endm

	.text
	.globl run_form
/* void run_form(const struct form *f, struct regs *r) */
run_form:
	SAVE_CALLEE
	mov 8(%rdi), %r14
	mov %rsi, %r15
	mov 64(%r15), %rax
	push %rax
	popfq
	mov 0(%r15), %rax
	mov 8(%r15), %rbx
	mov 16(%r15), %rcx
	mov 24(%r15), %rdx
	mov 32(%r15), %rsi
	mov 40(%r15), %rdi
	mov 48(%r15), %r8
	mov 56(%r15), %r9
	call *%r14
	pushfq
	pop %r14
	mov %r14, 64(%r15)
	mov %rax, 0(%r15)
	mov %rbx, 8(%r15)
	mov %rcx, 16(%r15)
	mov %rdx, 24(%r15)
	mov %rsi, 32(%r15)
	mov %rdi, 40(%r15)
	mov %r8, 48(%r15)
	mov %r9, 56(%r15)
	cld
	RESTORE_CALLEE
	ret

	.globl ret_stub
ret_stub:
	mov $0x5151, %r9
	ret

/* MOV in every direction and size. */
FORM "mov byte [mem], reg",  ALL, K_PLAIN, movb %al, (%rbx)
FORM "mov word [mem], reg",  ALL, K_PLAIN, movw %ax, 2(%rbx)
FORM "mov dword [mem], reg", ALL, K_PLAIN, movl %eax, (%rbx)
FORM "mov qword [mem], reg", ALL, K_PLAIN, movq %rax, 8(%rbx)
FORM "mov reg, byte [mem]",  ALL, K_PLAIN, movb 3(%rbx), %cl
FORM "mov reg, byte [mem] (high byte)", ALL, K_PLAIN, movb 1(%rbx), %ah
FORM "mov reg, word [mem]",  ALL, K_PLAIN, movw (%rbx), %cx
FORM "mov reg, dword [mem]", ALL, K_PLAIN, movl (%rbx), %ecx
FORM "mov reg, qword [mem]", ALL, K_PLAIN, movq (%rbx), %rcx
FORM "mov [mem], imm8",      ALL, K_PLAIN, movb $0xA5, 5(%rbx)
FORM "mov [mem], imm16",     ALL, K_PLAIN, movw $0xA55A, 6(%rbx)
FORM "mov [mem], imm32",     ALL, K_PLAIN, movl $0x89ABCDEF, (%rbx)
FORM "mov [mem], simm32 (qword)", ALL, K_PLAIN, movq $-0x76543211, (%rbx)
FORM "mov [base+index*8+disp]", ALL, K_PLAIN, movq %rax, 4(%rbx,%r8,8)
FORM "movzx reg, byte [mem]", ALL, K_PLAIN, movzbl 7(%rbx), %ecx
FORM "movzx reg, word [mem]", ALL, K_PLAIN, movzwq (%rbx), %rcx
FORM "movsx reg, byte [mem]", ALL, K_PLAIN, movsbq (%rbx), %rcx
FORM "movsx reg, word [mem]", ALL, K_PLAIN, movswl 2(%rbx), %ecx
FORM "movsxd reg, dword [mem]", ALL, K_PLAIN, movslq (%rbx), %rcx
FORM "movnti [mem], reg", ALL, K_PLAIN, movnti %rax, (%rbx)
FORM "xchg [mem], reg (dword)", ALL, K_PLAIN, xchgl %eax, (%rbx)
FORM "xchg [mem], reg (byte)", ALL, K_PLAIN, xchgb %cl, 1(%rbx)
FORM "xlat", ALL, K_XLAT, xlatb

/* The ALU row, register and immediate forms, each direction. */
FORM "add [mem], reg (qword)", ALL, K_PLAIN, addq %rax, (%rbx)
FORM "add reg, [mem] (dword)", ALL, K_PLAIN, addl (%rbx), %ecx
FORM "or [mem], reg (word)", LOGIC, K_PLAIN, orw %ax, (%rbx)
FORM "adc [mem], reg (dword)", ALL, K_PLAIN, adcl %eax, (%rbx)
FORM "adc reg, [mem] (byte)", ALL, K_PLAIN, adcb (%rbx), %cl
FORM "sbb [mem], reg (qword)", ALL, K_PLAIN, sbbq %rax, (%rbx)
FORM "and reg, [mem] (qword)", LOGIC, K_PLAIN, andq (%rbx), %rcx
FORM "sub [mem], reg (byte)", ALL, K_PLAIN, subb %al, 3(%rbx)
FORM "xor [mem], reg (dword)", LOGIC, K_PLAIN, xorl %eax, (%rbx)
FORM "cmp [mem], reg (qword)", ALL, K_PLAIN, cmpq %rax, (%rbx)
FORM "cmp reg, [mem] (word)", ALL, K_PLAIN, cmpw (%rbx), %cx
FORM "add [mem], imm8 (dword)", ALL, K_PLAIN, addl $0x7F, (%rbx)
FORM "or [mem], imm32 (qword)", LOGIC, K_PLAIN, orq $0x1234567, (%rbx)
FORM "and [mem], imm16", LOGIC, K_PLAIN, andw $0xF0F0, (%rbx)
FORM "sub [mem], imm8 (byte)", ALL, K_PLAIN, subb $0x81, (%rbx)
FORM "xor [mem], simm8 (qword)", LOGIC, K_PLAIN, xorq $-3, (%rbx)
FORM "cmp [mem], imm32 (dword)", ALL, K_PLAIN, cmpl $0x80000000, (%rbx)
FORM "lock add [mem], reg", ALL, K_PLAIN, lock addl %eax, (%rbx)
FORM "test [mem], reg (qword)", LOGIC, K_PLAIN, testq %rax, (%rbx)
FORM "test [mem], imm (byte)", LOGIC, K_PLAIN, testb $0x81, 2(%rbx)
FORM "inc [mem] (dword)", ALL, K_PLAIN, incl (%rbx)
FORM "dec [mem] (word)", ALL, K_PLAIN, decw (%rbx)
FORM "not [mem] (qword)", ALL, K_PLAIN, notq (%rbx)
FORM "neg [mem] (byte)", ALL, K_PLAIN, negb (%rbx)

/* Multiply and divide. */
FORM "mul [mem] (qword)", CF_OF, K_PLAIN, mulq (%rbx)
FORM "mul [mem] (byte)", CF_OF, K_PLAIN, mulb (%rbx)
FORM "imul [mem] (dword)", CF_OF, K_PLAIN, imull (%rbx)
FORM "imul reg, [mem] (qword)", CF_OF, K_PLAIN, imulq (%rbx), %rcx
FORM "imul reg, [mem], imm (word)", CF_OF, K_PLAIN, imulw $-300, (%rbx), %cx
FORM "div [mem] (qword)", NONE, K_DIV, divq (%rbx)
FORM "div [mem] (word)", NONE, K_DIV, divw (%rbx)
FORM "idiv [mem] (dword)", NONE, K_IDIV, idivl (%rbx)

/* Shifts and rotates. */
FORM "shl [mem], 1 (dword)", SHIFT1, K_PLAIN, shll $1, (%rbx)
FORM "shr [mem], imm (qword)", SHIFT, K_PLAIN, shrq $7, (%rbx)
FORM "sar [mem], cl (word)", SHIFT, K_SHIFT, sarw %cl, (%rbx)
FORM "rol [mem], cl (byte)", CF_ONLY, K_SHIFT, rolb %cl, (%rbx)
FORM "ror [mem], imm (dword)", CF_ONLY, K_PLAIN, rorl $13, (%rbx)
FORM "rcl [mem], 1 (qword)", CF_OF, K_PLAIN, rclq $1, (%rbx)
FORM "rcr [mem], imm (byte)", CF_ONLY, K_PLAIN, rcrb $3, (%rbx)
FORM "shld [mem], reg, imm (dword)", SHIFT, K_PLAIN, shldl $5, %eax, (%rbx)
FORM "shrd [mem], reg, cl (qword)", SHIFT, K_SHIFT, shrdq %cl, %rax, (%rbx)

/* Bits. */
FORM "bt [mem], imm (dword)", CF_ONLY, K_PLAIN, btl $13, (%rbx)
FORM "bts [mem], imm (qword)", CF_ONLY, K_PLAIN, btsq $45, (%rbx)
FORM "btr [mem], reg (dword)", CF_ONLY, K_BITREG, btrl %ecx, (%rbx)
FORM "btc [mem], reg (qword, past the operand)", CF_ONLY, K_BITREG, btcq %rcx, (%rbx)
FORM "bsf reg, [mem] (dword)", ZF_ONLY, K_NONZERO, bsfl (%rbx), %ecx
FORM "bsr reg, [mem] (qword)", ZF_ONLY, K_NONZERO, bsrq (%rbx), %rcx
FORM "popcnt reg, [mem] (qword)", ALL, K_POPCNT, popcntq (%rbx), %rcx
FORM "setnz [mem]", ALL, K_PLAIN, setnz 3(%rbx)
FORM "cmovc reg, [mem] (qword)", ALL, K_PLAIN, cmovcq (%rbx), %rcx
FORM "cmovg reg, [mem] (dword)", ALL, K_PLAIN, cmovgl (%rbx), %ecx

/* Exchanges. */
FORM "xadd [mem], reg (dword)", ALL, K_PLAIN, xaddl %eax, (%rbx)
FORM "lock xadd [mem], reg (qword)", ALL, K_PLAIN, lock xaddq %rcx, (%rbx)
FORM "cmpxchg [mem], reg (qword)", ALL, K_PLAIN, cmpxchgq %rcx, (%rbx)
FORM "cmpxchg [mem], reg (equal, byte)", ALL, K_CMPXCHG_EQ, cmpxchgb %cl, (%rbx)
FORM "cmpxchg8b [mem]", ALL, K_ALIGNED, cmpxchg8b (%rdi)
FORM "cmpxchg16b [mem]", ALL, K_ALIGNED, cmpxchg16b (%rdi)

/* The stack and branches through memory. */
FORMS "push [mem]; pop reg", ALL, K_PLAIN, "pushq (%rbx)", "popq %rcx"
FORMS "push reg; pop [mem]", ALL, K_PLAIN, "pushq %rax", "popq 8(%rbx)"
FORM "call [mem]", ALL, K_BRANCH, call *(%rbx)
FORMS "jmp [mem] (and back)", ALL, K_BRANCH, "lea 2f(%rip), %rax", "push %rax", "jmp *(%rbx)", "2:"

/* Strings, with and without REP, both directions. */
FORM "movsb", ALL, K_STRING, movsb
FORM "rep movsq", ALL, K_STRING, rep movsq
FORMS "std; rep movsd", ALL, K_STRING_DOWN, "std", "rep movsl", "cld"
FORM "rep stosw", ALL, K_STRING, rep stosw
FORM "lodsq", ALL, K_STRING, lodsq
FORM "rep lodsb", ALL, K_STRING, rep lodsb
FORM "repe cmpsb", ALL, K_STRING, repe cmpsb
FORM "repne scasw", ALL, K_STRING, repne scasw
FORM "cmpsq", ALL, K_STRING, cmpsq
FORMS "std; scasb", ALL, K_STRING_DOWN, "std", "scasb", "cld"

	/* u64 stack_in_device_memory(u64 rsp): PUSH, CALL, RET and POP with RSP in device memory. */
	.text
	.globl stack_in_device_memory
stack_in_device_memory:
	mov %rsp, %r8
	mov %rdi, %rsp
	pushq $0x1234
	pushq $0x5678
	call 1f
	jmp 2f
1:	pop %rax
	push %rax
	ret
2:	pop %rcx
	pop %rdx
	lea (%rcx,%rdx,2), %rax
	mov %r8, %rsp
	ret
