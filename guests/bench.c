/* The integer benchmark: quicksort, FNV-1a hashing and an integer matrix product, repeated
 * `rounds=N` times (the Multiboot command line; 1 by default, which the test suite runs for
 * the checksums). Each round's results fold into one checksum, printed at the end, so the
 * same binary on two machines must print the same line. */
#include "guest.h"

struct mb_info {
	u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};

#define N_SORT 20000
#define N_HASH 65536
#define N_MAT 48

static u32 data[N_SORT];
static u8 blob[N_HASH];
static i64 ma[N_MAT][N_MAT], mb[N_MAT][N_MAT], mc[N_MAT][N_MAT];
static u64 rng = 0x9E3779B97F4A7C15UL;

static u64 next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void quicksort(u32 *a, long lo, long hi)
{
	while (lo < hi) {
		u32 pivot = a[(lo + hi) / 2];
		long i = lo, j = hi;
		while (i <= j) {
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j) {
				u32 t = a[i];
				a[i] = a[j];
				a[j] = t;
				i++, j--;
			}
		}
		if (j - lo < hi - i) {
			quicksort(a, lo, j);
			lo = i;
		} else {
			quicksort(a, i, hi);
			hi = j;
		}
	}
}

static u64 sort_round(void)
{
	for (int i = 0; i < N_SORT; i++)
		data[i] = (u32)next();
	quicksort(data, 0, N_SORT - 1);
	u64 sum = 0;
	for (int i = 1; i < N_SORT; i++)
		if (data[i - 1] > data[i])
			return 0;	/* not sorted: a wrong checksum */
	for (int i = 0; i < N_SORT; i += 97)
		sum = sum * 31 + data[i];
	return sum;
}

static u64 hash_round(void)
{
	for (int i = 0; i < N_HASH; i += 8)
		*(u64 *)&blob[i] = next();
	u64 h = 0xCBF29CE484222325UL;
	for (int k = 0; k < 4; k++)
		for (int i = 0; i < N_HASH; i++) {
			h ^= blob[i];
			h *= 0x100000001B3UL;
		}
	return h;
}

static u64 matrix_round(void)
{
	for (int i = 0; i < N_MAT; i++)
		for (int j = 0; j < N_MAT; j++)
			ma[i][j] = (i64)(next() % 1000) - 500, mb[i][j] = (i64)(next() % 1000) - 500;
	for (int i = 0; i < N_MAT; i++)
		for (int j = 0; j < N_MAT; j++) {
			i64 s = 0;
			for (int k = 0; k < N_MAT; k++)
				s += ma[i][k] * mb[k][j];
			mc[i][j] = s;
		}
	u64 sum = 0;
	for (int i = 0; i < N_MAT; i++)
		for (int j = 0; j < N_MAT; j++)
			sum = sum * 131 + (u64)mc[i][j];
	return sum;
}

static int rounds_from(const char *cmdline)
{
	for (const char *p = cmdline; p && *p; p++) {
		if (p[0] == 'r' && p[1] == 'o' && p[2] == 'u' && p[3] == 'n' && p[4] == 'd' && p[5] == 's' && p[6] == '=') {
			int n = 0;
			for (p += 7; *p >= '0' && *p <= '9'; p++)
				n = n * 10 + (*p - '0');
			return n > 0 ? n : 1;
		}
	}
	return 1;
}

int main(u32 info_addr)
{
	struct mb_info *mb = (struct mb_info *)(u64)info_addr;
	serial_init();
	int rounds = rounds_from((mb->flags & 4) ? (const char *)(u64)mb->cmdline : 0);
	printf("# integer benchmark: %d round(s) of sort (%d), hash (%d KiB x4), matrix (%dx%d)\n", rounds, N_SORT, N_HASH / 1024, N_MAT, N_MAT);
	u64 sum = 0;
	for (int r = 0; r < rounds; r++) {
		u64 s = sort_round(), h = hash_round(), m = matrix_round();
		sum = (sum ^ s) * 0x100000001B3UL ^ h ^ (m << 1);
		check(s != 0, "the sorted array is in order");
	}
	/* The checksum is part of the result line, so two machines' lines match only if it does. */
	char name[40] = "checksum ";
	for (int i = 0; i < 16; i++)
		name[9 + i] = "0123456789abcdef"[(sum >> (60 - 4 * i)) & 15];
	check(sum != 0, name);
	printf("# %d failed\n", failures());
	return failures();
}
