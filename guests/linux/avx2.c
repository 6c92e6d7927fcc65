/* A user-space probe of x86-64-v3 for the guest suite. It prints which memchr and strlen
 * implementations glibc's resolvers chose (by following each function's PLT entry to the GOT slot
 * the IRELATIVE relocation filled), then checksums of AVX2, FMA, F16C, BMI1/BMI2 and gather
 * results over pseudo-random inputs from a fixed seed, and of glibc's string functions on
 * random buffers. Built static, it runs on the host CPU and in a guest: the checksum lines must
 * be equal; the choice lines say what CPUID made glibc pick. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern char __memchr_avx2[], __memchr_evex[], __memchr_sse2[];
extern char __strlen_avx2[], __strlen_evex[], __strlen_sse2[];

static uint64_t state;

static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* The target of a PLT entry: the first "jmp qword ptr [rip+disp32]" (FF 25) in it. */
static const void *target(const void *entry)
{
    const unsigned char *p = entry;
    for (int k = 0; k < 16; k++) {
        if (p[k] == 0xFF && p[k + 1] == 0x25) {
            int32_t disp;
            memcpy(&disp, p + k + 2, 4);
            return *(const void *const *)(p + k + 6 + disp);
        }
    }
    return entry;
}

static const char *choice(const void *entry, const void *avx2, const void *evex, const void *sse2)
{
    const void *t = target(entry);
    return t == avx2 ? "avx2" : t == evex ? "evex" : t == sse2 ? "sse2" : "other";
}

static __m256i random256(void)
{
    return _mm256_set_epi64x((long long)next(), (long long)next(), (long long)next(), (long long)next());
}

static __m256 random_ps(void)
{
    float f[8];
    for (int k = 0; k < 8; k++)
        f[k] = (float)((int64_t)(next() % 2000000) - 1000000) / (float)(1 + next() % 1000);
    return _mm256_loadu_ps(f);
}

static __m256d random_pd(void)
{
    double d[4];
    for (int k = 0; k < 4; k++)
        d[k] = (double)((int64_t)(next() % 2000000000) - 1000000000) / (double)(1 + next() % 100000);
    return _mm256_loadu_pd(d);
}

static uint64_t fold(__m256i v)
{
    uint64_t x[4];
    _mm256_storeu_si256((__m256i *)x, v);
    return x[0] * 3 ^ x[1] * 5 ^ x[2] * 7 ^ x[3] * 11;
}

int main(void)
{
    volatile uint64_t seed = 0x2545F4914F6CDD1DULL;
    state = seed;
    printf("memchr: %s\n", choice((const void *)memchr, __memchr_avx2, __memchr_evex, __memchr_sse2));
    printf("strlen: %s\n", choice((const void *)strlen, __strlen_avx2, __strlen_evex, __strlen_sse2));

    uint64_t sum = 0;
    for (int k = 0; k < 2000; k++) {
        __m256i a = random256(), b = random256();
        sum += fold(_mm256_add_epi32(a, b)) ^ fold(_mm256_mullo_epi32(a, b)) ^ fold(_mm256_shuffle_epi8(a, b));
        sum += fold(_mm256_permutevar8x32_epi32(a, b)) ^ fold(_mm256_sad_epu8(a, b)) ^ fold(_mm256_packs_epi32(a, b));
        sum += fold(_mm256_sllv_epi32(a, _mm256_and_si256(b, _mm256_set1_epi32(63))));
        sum += fold(_mm256_permute4x64_epi64(a, 0x1B)) ^ fold(_mm256_alignr_epi8(a, b, 5)) ^ fold(_mm256_maddubs_epi16(a, b));
        sum += (uint64_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, _mm256_min_epu8(a, b)));
    }
    printf("avx2: %016llx\n", (unsigned long long)sum);

    sum = 0;
    for (int k = 0; k < 2000; k++) {
        __m256 x = random_ps(), y = random_ps(), z = random_ps();
        __m256d p = random_pd(), q = random_pd(), r = random_pd();
        sum += fold(_mm256_castps_si256(_mm256_fmadd_ps(x, y, z))) ^ fold(_mm256_castps_si256(_mm256_fnmsub_ps(x, y, z)));
        sum += fold(_mm256_castpd_si256(_mm256_fmsub_pd(p, q, r))) ^ fold(_mm256_castpd_si256(_mm256_fmaddsub_pd(p, q, r)));
        sum += fold(_mm256_castps_si256(_mm256_div_ps(x, _mm256_sqrt_ps(_mm256_mul_ps(y, y)))));
        sum += (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(x, y, _CMP_NGT_UQ));
    }
    printf("fma: %016llx\n", (unsigned long long)sum);

    sum = 0;
    for (int k = 0; k < 2000; k++) {
        __m256 x = random_ps();
        __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
        sum += fold(_mm256_castps_si256(_mm256_cvtph_ps(h))) ^ (uint64_t)_mm_extract_epi64(h, 1);
    }
    printf("f16c: %016llx\n", (unsigned long long)sum);

    sum = 0;
    for (int k = 0; k < 20000; k++) {
        uint64_t a = next(), b = next();
        sum += _pdep_u64(a, b) ^ _pext_u64(a, b) * 3 ^ _bzhi_u64(a, (unsigned)(b % 70)) ^ _andn_u64(a, b);
        sum += _blsr_u64(a) ^ _blsi_u64(b) ^ _blsmsk_u64(a) ^ _mulx_u64(a, b, (unsigned long long *)&b) ^ b;
        sum += (uint64_t)_lzcnt_u64(a >> (b % 64)) + _tzcnt_u64(b) + ((a >> 13) | (a << 51)); /* RORX with BMI2 */
    }
    printf("bmi: %016llx\n", (unsigned long long)sum);

    static int table[4096];
    for (int k = 0; k < 4096; k++)
        table[k] = (int)next();
    sum = 0;
    for (int k = 0; k < 2000; k++) {
        __m256i index = _mm256_and_si256(random256(), _mm256_set1_epi32(4095));
        __m256i mask = random256();
        sum += fold(_mm256_i32gather_epi32(table, index, 4));
        sum += fold(_mm256_mask_i32gather_epi32(random256(), table, index, mask, 4));
        sum += fold(_mm256_i64gather_epi64((const long long *)table, _mm256_and_si256(random256(), _mm256_set1_epi64x(2047)), 8));
    }
    printf("gather: %016llx\n", (unsigned long long)sum);

    static char buffer[8192];
    sum = 0;
    for (int k = 0; k < 4000; k++) {
        size_t length = next() % sizeof buffer;
        for (size_t j = 0; j < length; j++)
            buffer[j] = (char)(1 + next() % 40);
        buffer[length] = 0;
        size_t start = next() % 64;
        const char *found = memchr(buffer + start, 1 + (int)(next() % 40), length > start ? length - start : 0);
        sum = sum * 31 + strlen(buffer + start % (length + 1)) + (found ? (uint64_t)(found - buffer) : 7);
    }
    printf("strings: %016llx\n", (unsigned long long)sum);
    return 0;
}
