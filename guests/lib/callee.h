/* Saving and restoring the registers the SysV ABI makes a callee keep, for the guests' assembly
 * that leaves the C world (user mode, mode tours, form runners). */
#define SAVE_CALLEE \
	push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15
#define RESTORE_CALLEE \
	pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx
