/* Shared between mmio.S and mmio.c: flag masks (the flags each form defines) and the kinds of
 * preparation a form needs. */
#define CF 0x001
#define PF 0x004
#define AF 0x010
#define ZF 0x040
#define SF 0x080
#define DF 0x400
#define OF 0x800
#define ALL (CF | PF | AF | ZF | SF | DF | OF)
#define LOGIC (CF | PF | ZF | SF | DF | OF)
#define SHIFT (CF | PF | ZF | SF | DF)
#define SHIFT1 (SHIFT | OF)
#define CF_OF (CF | OF | DF)
#define CF_ONLY (CF | DF)
#define ZF_ONLY (ZF | DF)
#define NONE DF

#define K_PLAIN 0	/* random registers and memory */
#define K_DIV 1		/* rdx = 0, divisor nonzero */
#define K_IDIV 2	/* small positive dividend and divisor */
#define K_SHIFT 3	/* any cl */
#define K_BITREG 4	/* bit offset 0-255 */
#define K_NONZERO 5	/* the operand is not zero */
#define K_CMPXCHG_EQ 6	/* the accumulator equals the operand */
#define K_ALIGNED 7	/* the operand 16-byte aligned; rdx:rax sometimes equal to it */
#define K_BRANCH 8	/* the operand holds ret_stub's address */
#define K_STRING 9	/* rsi, rdi in the window, rcx 0-7 */
#define K_STRING_DOWN 10 /* the same, from the top */
#define K_XLAT 11	/* al indexes the window */
#define K_POPCNT 12	/* plain, when CPUID reports POPCNT */
