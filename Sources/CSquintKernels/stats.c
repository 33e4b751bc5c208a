#include "squint_stats.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

void sq_stats_bf16_ref(const uint16_t *x, size_t n, sq_stats *s) {
    float buf[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? n - i : 256;
        sq_bf16_to_f32_ref(x + i, buf, m);
        sq_stats_f32(buf, m, s);
    }
}

void sq_stats_f16_ref(const uint16_t *x, size_t n, sq_stats *s) {
    float buf[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? n - i : 256;
        sq_f16_to_f32_ref(x + i, buf, m);
        sq_stats_f32(buf, m, s);
    }
}

/* Vector body over float32 lanes: non-finite lanes are replaced by neutral values (0 for sums,
 * +inf/-inf for min/max) and counted separately. Sums run in float32 within a block of at most
 * 1024 elements per lane group and are flushed to double, so error does not grow with size. */
typedef struct { __m256 sum, sumsq, mn, mx; __m256i nan, inf; } acc8;

__attribute__((target("avx2,fma")))
static inline void acc_step(acc8 *a, __m256 v) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000));
    __m256 av = _mm256_and_ps(v, absmask);
    __m256 isnan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    __m256 isinf = _mm256_cmp_ps(av, inf, _CMP_EQ_OQ);
    __m256 finite = _mm256_cmp_ps(av, inf, _CMP_LT_OQ);   /* false for NaN and Inf */
    __m256 vz = _mm256_and_ps(v, finite);
    a->sum = _mm256_add_ps(a->sum, vz);
    a->sumsq = _mm256_fmadd_ps(vz, vz, a->sumsq);
    a->mn = _mm256_min_ps(a->mn, _mm256_blendv_ps(_mm256_set1_ps(INFINITY), v, finite));
    a->mx = _mm256_max_ps(a->mx, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, finite));
    a->nan = _mm256_sub_epi32(a->nan, _mm256_castps_si256(isnan));
    a->inf = _mm256_sub_epi32(a->inf, _mm256_castps_si256(isinf));
}

__attribute__((target("avx2,fma")))
static void acc_flush(acc8 *a, sq_stats *s, size_t count) {
    float t[8]; int32_t c[8];
    _mm256_storeu_ps(t, a->sum); for (int k = 0; k < 8; k++) s->sum += t[k];
    _mm256_storeu_ps(t, a->sumsq); for (int k = 0; k < 8; k++) s->sumsq += t[k];
    _mm256_storeu_ps(t, a->mn); for (int k = 0; k < 8; k++) if (t[k] < s->min) s->min = t[k];
    _mm256_storeu_ps(t, a->mx); for (int k = 0; k < 8; k++) if (t[k] > s->max) s->max = t[k];
    uint64_t nn = 0, ni = 0;
    _mm256_storeu_si256((__m256i *)c, a->nan); for (int k = 0; k < 8; k++) nn += (uint32_t)c[k];
    _mm256_storeu_si256((__m256i *)c, a->inf); for (int k = 0; k < 8; k++) ni += (uint32_t)c[k];
    s->nan_count += nn; s->inf_count += ni; s->finite_count += count - nn - ni;
    a->sum = _mm256_setzero_ps(); a->sumsq = _mm256_setzero_ps();
    a->nan = _mm256_setzero_si256(); a->inf = _mm256_setzero_si256();
}

__attribute__((target("avx2,fma")))
static inline acc8 acc_new(void) {
    acc8 a;
    a.sum = _mm256_setzero_ps(); a.sumsq = _mm256_setzero_ps();
    a.mn = _mm256_set1_ps(INFINITY); a.mx = _mm256_set1_ps(-INFINITY);
    a.nan = _mm256_setzero_si256(); a.inf = _mm256_setzero_si256();
    return a;
}

#define BLOCK 2048  /* elements per float32 partial sum (256 per lane) */

__attribute__((target("avx2,fma,f16c")))
static void stats16_avx2(const uint16_t *x, size_t n, sq_stats *s, int is_bf16) {
    acc8 a = acc_new();
    size_t i = 0;
    while (i + 8 <= n) {
        size_t end = i + BLOCK; if (end > n) end = n;
        size_t start = i;
        for (; i + 8 <= end; i += 8) {
            __m128i h = _mm_loadu_si128((const __m128i *)(x + i));
            __m256 v = is_bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                               : _mm256_cvtph_ps(h);
            acc_step(&a, v);
        }
        acc_flush(&a, s, i - start);
    }
    if (i < n) {
        if (is_bf16) sq_stats_bf16_ref(x + i, n - i, s); else sq_stats_f16_ref(x + i, n - i, s);
    }
}

__attribute__((target("avx2,fma")))
static void stats32_avx2(const float *x, size_t n, sq_stats *s) {
    acc8 a = acc_new();
    size_t i = 0;
    while (i + 8 <= n) {
        size_t end = i + BLOCK; if (end > n) end = n;
        size_t start = i;
        for (; i + 8 <= end; i += 8) acc_step(&a, _mm256_loadu_ps(x + i));
        acc_flush(&a, s, i - start);
    }
    if (i < n) sq_stats_f32(x + i, n - i, s);
}

void sq_stats_bf16(const uint16_t *x, size_t n, sq_stats *s) {
    if (sq_has_avx2_fma()) stats16_avx2(x, n, s, 1); else sq_stats_bf16_ref(x, n, s);
}
void sq_stats_f16(const uint16_t *x, size_t n, sq_stats *s) {
    if (sq_has_avx2_fma()) stats16_avx2(x, n, s, 0); else sq_stats_f16_ref(x, n, s);
}
void sq_stats_f32_fast(const float *x, size_t n, sq_stats *s) {
    if (sq_has_avx2_fma()) stats32_avx2(x, n, s); else sq_stats_f32(x, n, s);
}
