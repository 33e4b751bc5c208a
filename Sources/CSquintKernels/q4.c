// Int4 kernels for the SQ4 layout (include/squint_q4.h, Formats/SQUINT_INT4.md §4).
// Scalar references first; AVX2/FMA versions after, selected at run time.
#include "squint_q4.h"
#include "squint_kernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline float zero_of(const sq_q4_matrix *w, int64_t o, int64_t g, int64_t groups) {
    return w->zeros ? (float)w->zeros[o * groups + g] : 8.0f;
}

// ---------------------------------------------------------------- scalar references
void sq_q4_dequant_rows_ref(const sq_q4_matrix *w, int64_t row0, int64_t row1, float *dst) {
    const int64_t in = w->in, groups = in / w->group_size;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        float *d = dst + (o - row0) * in;
        for (int64_t k = 0; k < in; k++) {
            int64_t g = k / w->group_size;
            int z = w->zeros ? w->zeros[o * groups + g] : 8;
            d[k] = w->scales[o * groups + g] * (float)((int)sq_q4_code(rc, k) - z);
        }
    }
}

void sq_q4_matvec_f32_ref(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, groups = in / w->group_size;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        double acc = 0;
        for (int64_t k = 0; k < in; k++) {
            int64_t g = k / w->group_size;
            float wk = w->scales[o * groups + g] * ((float)sq_q4_code(rc, k) - zero_of(w, o, g, groups));
            acc += (double)wk * (double)x[k];
        }
        y[o] = (float)acc;
    }
}

void sq_q8_quantize(const float *x, int64_t n, int8_t *q, float *d8, int32_t *bsum) {
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) { float a = fabsf(xb[j]); if (a > amax) amax = a; }
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int64_t p = b / 2, half = b % 2;   // pair, A (0) or B (1)
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
            int v = (int)lrintf(xb[j] * id);
            if (v > 127) v = 127;
            if (v < -127) v = -127;
            // j < 16 -> first 32 bytes of the pair, j >= 16 -> second 32 bytes
            int64_t pos = 64 * p + (j < 16 ? 0 : 32) + half * 16 + (j % 16);
            q[pos] = (int8_t)v;
            s += v;
        }
        bsum[b] = s;
        for (int l = 0; l < 4; l++) d8[8 * p + 4 * half + l] = d;
    }
}

static inline int xq_at(const int8_t *xq, int64_t k) {
    int64_t b = k / 32, j = k % 32;
    return xq[64 * (b / 2) + (j < 16 ? 0 : 32) + (b % 2) * 16 + (j % 16)];
}

void sq_q4_matvec_q8_ref(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                         float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, groups = in / w->group_size;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        double acc = 0;
        for (int64_t b = 0; b < in / 32; b++) {
            int64_t g = b * 32 / w->group_size;
            int32_t dot = 0;
            for (int j = 0; j < 32; j++) dot += (int32_t)sq_q4_code(rc, b * 32 + j) * xq_at(xq, b * 32 + j);
            int z = w->zeros ? w->zeros[o * groups + g] : 8;
            float d = d8[8 * (b / 2) + 4 * (b % 2)];
            acc += (double)w->scales[o * groups + g] * (double)d * (double)(dot - z * bsum[b]);
        }
        y[o] = (float)acc;
    }
}

// ---------------------------------------------------------------- AVX2 / FMA
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Software prefetch of the codes 8 KB ahead of use. Measured on the 2-core AMD EPYC dev machine with
// weights streamed from DRAM: without it the int8 kernel ran at ~10-19 GB/s against ~27 GB/s when
// the same matrix sat in L3; at 1-2 KB ahead it gained half of that, at 8-16 KB all of it (~32 GB/s).
// Processing two rows at once (sharing x loads) measured no better, so rows go one at a time.
#define SQ_PF_DISTANCE 8192
static inline void prefetch_range(const uint8_t *p, int64_t n) {
    for (int64_t i = 0; i < n; i += 64) _mm_prefetch((const char *)(p + i + SQ_PF_DISTANCE), _MM_HINT_T0);
}

AVX2 static void dequant_rows_avx2(const sq_q4_matrix *w, int64_t row0, int64_t row1, float *dst) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        float *d = dst + (o - row0) * in;
        for (int64_t g = 0; g < groups; g++) {
            __m256 s = _mm256_set1_ps(w->scales[o * groups + g]);
            __m256i z = _mm256_set1_epi32(w->zeros ? w->zeros[o * groups + g] : 8);
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)(rc + k / 2));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
                for (int t = 0; t < 4; t++) {
                    __m256i qi = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[t]), z);
                    _mm256_storeu_ps(d + k + 8 * t, _mm256_mul_ps(s, _mm256_cvtepi32_ps(qi)));
                }
            }
        }
    }
}

// Sum of x over each group (shared by all rows): the zero-point term is s*z*gsum[g].
static float *group_sums(const float *x, int64_t in, int64_t gs, float *stack, int64_t stack_n) {
    int64_t groups = in / gs;
    float *gsum = groups <= stack_n ? stack : (float *)malloc((size_t)groups * sizeof(float));
    if (!gsum) return NULL;
    for (int64_t g = 0; g < groups; g++) {
        double s = 0;
        for (int64_t k = g * gs; k < (g + 1) * gs; k++) s += x[k];
        gsum[g] = (float)s;
    }
    return gsum;
}

AVX2 static void matvec_f32_avx2(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    float stack[1024];
    float *gsum = group_sums(x, in, gs, stack, 1024);
    if (!gsum) { sq_q4_matvec_f32_ref(w, x, y, row0, row1); return; }
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        const float *sc = w->scales + o * groups;
        __m256 tot = _mm256_setzero_ps();
        float zterm = 0;
        for (int64_t g = 0; g < groups; g++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            prefetch_range(rc + g * gs / 2, gs / 2);
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)(rc + k / 2));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                const float *xk = x + k;
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(xk), a0);
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))),
                                     _mm256_loadu_ps(xk + 8), a1);
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(xk + 16), a0);
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))),
                                     _mm256_loadu_ps(xk + 24), a1);
            }
            float s = sc[g];
            tot = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(s), tot);
            zterm += s * zero_of(w, o, g, groups) * gsum[g];
        }
        y[o] = hsum256(tot) - zterm;
    }
    if (gsum != stack) free(gsum);
}

// One 64-code step of the int8 product for one row: codes (32 bytes) x xq (64 int8, pair order).
#define Q8_STEP(rc, acc)                                                                          \
    do {                                                                                          \
        __m256i v_ = _mm256_loadu_si256((const __m256i *)((rc) + k / 2));                         \
        __m256i lo_ = _mm256_and_si256(v_, m4);                                                   \
        __m256i hi_ = _mm256_and_si256(_mm256_srli_epi16(v_, 4), m4);                             \
        __m256i p16_ = _mm256_add_epi16(_mm256_maddubs_epi16(lo_, x0), _mm256_maddubs_epi16(hi_, x1)); \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p16_, ones)), dv, acc);        \
    } while (0)

AVX2 static void matvec_q8_avx2(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                                float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    // Per group, sum over its blocks of d_b * bsum_b (the zero-point term), once per call.
    float stack[1024];
    float *gz = groups <= 1024 ? stack : (float *)malloc((size_t)groups * sizeof(float));
    if (!gz) { sq_q4_matvec_q8_ref(w, xq, d8, bsum, y, row0, row1); return; }
    for (int64_t g = 0; g < groups; g++) {
        float zs = 0;
        for (int64_t b = g * gs / 32; b < (g + 1) * gs / 32; b++) zs += d8[8 * (b / 2) + 4 * (b % 2)] * (float)bsum[b];
        gz[g] = zs;
    }
    int64_t o = row0;
    for (; o < row1; o++) {
        const uint8_t *ra = w->codes + o * (in / 2);
        const float *sa = w->scales + o * groups;
        __m256 ta = _mm256_setzero_ps();
        float za = 0;
        for (int64_t g = 0; g < groups; g++) {
            __m256 aa = _mm256_setzero_ps();
            prefetch_range(ra + g * gs / 2, gs / 2);
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 64) {
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + k));
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + k + 32));
                const __m256 dv = _mm256_loadu_ps(d8 + (k / 64) * 8);
                Q8_STEP(ra, aa);
            }
            ta = _mm256_fmadd_ps(aa, _mm256_set1_ps(sa[g]), ta);
            za += sa[g] * zero_of(w, o, g, groups) * gz[g];
        }
        y[o] = hsum256(ta) - za;
    }
    if (gz != stack) free(gz);
}

AVX2 static uint64_t read_probe_avx2(const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(b + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(b + i + 32)));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(b + i + 64)));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(b + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t l[4]; _mm256_storeu_si256((__m256i *)l, s);
    uint64_t t = l[0] + l[1] + l[2] + l[3];
    for (; i < n; i++) t += b[i];
    return t;
}

// ---------------------------------------------------------------- dispatch
void sq_q4_dequant_rows(const sq_q4_matrix *w, int64_t row0, int64_t row1, float *dst) {
    if (sq_has_avx2_fma()) dequant_rows_avx2(w, row0, row1, dst); else sq_q4_dequant_rows_ref(w, row0, row1, dst);
}
void sq_q4_matvec_f32(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1) {
    if (sq_has_avx2_fma()) matvec_f32_avx2(w, x, y, row0, row1); else sq_q4_matvec_f32_ref(w, x, y, row0, row1);
}
void sq_q4_matvec_q8(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                     float *y, int64_t row0, int64_t row1) {
    if (sq_has_avx2_fma()) matvec_q8_avx2(w, xq, d8, bsum, y, row0, row1);
    else sq_q4_matvec_q8_ref(w, xq, d8, bsum, y, row0, row1);
}
uint64_t sq_read_bandwidth_probe(const void *p, size_t n) {
    if (sq_has_avx2_fma()) return read_probe_avx2(p, n);
    const uint8_t *b = (const uint8_t *)p; uint64_t t = 0;
    for (size_t i = 0; i < n; i++) t += b[i];
    return t;
}
