// Int4 kernels for the SQ4 layout (include/squint_q4.h, Formats/SQUINT_INT4.md §4).
// Scalar references first; AVX2/FMA and AVX-512 versions after, the level chosen at run time
// (sq_q4_level: AVX-512 unless the CPU lacks it or $SQUINT_NO_AVX512 is set).
#include "squint_q4.h"
// No contraction of a*b+c into FMAs: the scalar twins must round exactly as written (they mirror
// the SIMD kernels' explicit FMA intrinsics).
#pragma STDC FP_CONTRACT OFF
#include "squint_kernels.h"
#include "isa.h"
#include "simd_sum.h"
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

// Float32-activation decode product (issue 15 item 5). Three SIMD levels, each with a scalar twin
// (sq_q4_matvec_f32_twin) that performs the same float operations in the same order, so tests compare
// them bit for bit; the double-accumulating _ref is the accuracy yardstick.
//
// AVX2 (Zen 3): codes widened straight from memory (vpmovzxbd), masked, converted, 4 accumulators per
// group; the zero point goes through the group sum of x: y = sum_g s_g*(sum q*x) - s_g*z_g*sum_g(x).
// AVX-512: the group's 16 possible weights s*(c - z) are one zmm table and vpermps looks each code up
// (it reads only the low 4 bits of each lane, so no masking and no int-to-float conversion). With
// group_size and in multiples of 128 (every real decoder shape) a 64-byte load holds 128 codes and
// the 8 nibbles of each 32-bit lane are reached by shifts in place; x is permuted once per call to
// match (xperm_128). Otherwise 16-byte loads are widened (vpmovzxbd), 32 codes per step.
// Measured on the 2-vCPU Zen 4 dev machine (docs/PERFORMANCE.md), 1 thread, codes from DRAM: the old
// AVX2 kernel 8.4-9 GB/s, this AVX2 kernel 10.5-11, AVX-512 generic 12.6, in place 12.2-14 GB/s.
// The limit on this core is the lookups and FMAs (at 3.65 GHz, 2 zmm FMA per 32 codes alone cap any
// float kernel near 29 GB/s), not memory (35-40 GB/s for one core).

static inline float zero_at(const sq_q4_matrix *w, int64_t o, int64_t g, int64_t groups) {
    return w->zeros ? (float)w->zeros[o * groups + g] : 8.0f;
}

// x in the in-place layout: for chunk c of 128 inputs, xp[128c + 16s + i] is the input whose code sits
// in nibble s of 32-bit lane i of the chunk's 64 code bytes (byte p = 4i + s/2 is byte p%16 of block
// p/16; low nibble = code j, high nibble = code j + 16 of that block).
static void xperm_128(const float *x, int64_t in, float *xp) {
    for (int64_t c = 0; c < in / 128; c++)
        for (int s = 0; s < 8; s++)
            for (int i = 0; i < 16; i++) {
                int p = 4 * i + s / 2;
                xp[c * 128 + 16 * s + i] = x[c * 128 + 32 * (p / 16) + (p % 16) + 16 * (s % 2)];
            }
}

static int inplace_ok(const sq_q4_matrix *w) { return w->in % 128 == 0 && w->group_size % 128 == 0; }

// --- scalar twins: the same operations in the same order, lane by lane
static float reduce16_twin(const float *v) {   // = reduce16 below
    float h[8], q[4];
    for (int i = 0; i < 8; i++) h[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; i++) q[i] = h[i] + h[i + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}
static float hsum8_twin(const float *v) {      // = sq_hsum256 (simd_sum.h)
    float q[4];
    for (int i = 0; i < 4; i++) q[i] = v[i] + v[i + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

static void twin_avx2(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1, const float *gsum) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        float tot[8] = {0}, zterm = 0;
        for (int64_t g = 0; g < groups; g++) {
            float a[4][8] = {{0}};
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                const uint8_t *p = rc + k / 2;
                for (int l = 0; l < 8; l++) {
                    a[0][l] = fmaf((float)(p[l] & 15), x[k + l], a[0][l]);
                    a[1][l] = fmaf((float)(p[8 + l] & 15), x[k + 8 + l], a[1][l]);
                    a[2][l] = fmaf((float)(p[l] >> 4), x[k + 16 + l], a[2][l]);
                    a[3][l] = fmaf((float)(p[8 + l] >> 4), x[k + 24 + l], a[3][l]);
                }
            }
            float s = w->scales[o * groups + g];
            for (int l = 0; l < 8; l++) tot[l] = fmaf((a[0][l] + a[1][l]) + (a[2][l] + a[3][l]), s, tot[l]);
            float sz = s * zero_at(w, o, g, groups);
            zterm = zterm + sz * gsum[g];
        }
        y[o] = hsum8_twin(tot) - zterm;
    }
}

static void twin_avx512(const sq_q4_matrix *w, const float *x, const float *xp, float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        float a[4][16] = {{0}}, t[16], r[16];
        for (int64_t g = 0; g < groups; g++) {
            float s = w->scales[o * groups + g], z = zero_at(w, o, g, groups);
            for (int c = 0; c < 16; c++) t[c] = s * ((float)c - z);
            if (xp) {
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 128) {
                    const uint8_t *p = rc + k / 2;
                    for (int st = 0; st < 8; st++)
                        for (int i = 0; i < 16; i++) {
                            int b = p[4 * i + st / 2];
                            int c = st % 2 ? b >> 4 : b & 15;
                            a[st % 4][i] = fmaf(t[c], xp[k + 16 * st + i], a[st % 4][i]);
                        }
                }
            } else {
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                    const uint8_t *p = rc + k / 2;
                    for (int i = 0; i < 16; i++) {
                        a[0][i] = fmaf(t[p[i] & 15], x[k + i], a[0][i]);
                        a[1][i] = fmaf(t[p[i] >> 4], x[k + 16 + i], a[1][i]);
                    }
                }
            }
        }
        for (int i = 0; i < 16; i++) r[i] = xp ? (a[0][i] + a[1][i]) + (a[2][i] + a[3][i]) : a[0][i] + a[1][i];
        y[o] = reduce16_twin(r);
    }
}

// --- AVX2
AVX2 static void matvec_f32_avx2(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1,
                                 const float *gsum) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    const __m256i m4 = _mm256_set1_epi32(15);
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        const float *sc = w->scales + o * groups;
        __m256 tot = _mm256_setzero_ps();
        float zterm = 0;
        for (int64_t g = 0; g < groups; g++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            prefetch_range(rc + g * gs / 2, gs / 2);
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                const uint8_t *p = rc + k / 2;
                __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
                __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
                const float *xk = x + k;
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b0, m4)), _mm256_loadu_ps(xk), a0);
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b1, m4)), _mm256_loadu_ps(xk + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)), _mm256_loadu_ps(xk + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4)), _mm256_loadu_ps(xk + 24), a3);
            }
            float s = sc[g];
            tot = _mm256_fmadd_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_set1_ps(s), tot);
            float sz = s * zero_at(w, o, g, groups);
            zterm = zterm + sz * gsum[g];
        }
        y[o] = sq_hsum256(tot) - zterm;
    }
}

// --- AVX-512
#define AVX512 SQ_TARGET_AVX512

AVX512 static inline float reduce16(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return sq_hsum256(h);
}

AVX512 static inline __m512 weight_table(const sq_q4_matrix *w, int64_t o, int64_t g, int64_t groups, __m512 iota) {
    return _mm512_mul_ps(_mm512_set1_ps(w->scales[o * groups + g]), _mm512_sub_ps(iota, _mm512_set1_ps(zero_at(w, o, g, groups))));
}

// In place, two rows per pass sharing each x load, with exactly the per-row operations of the one-row
// loop below (so the twin holds for both). Used for rows wider than 6144: the permuted x (> 24 KB) no
// longer sits in L1 beside the codes, and halving its loads measured 8.7 -> 11.9 GB/s at in = 11008
// (1 thread), while at in = 4096 the one-row loop stayed faster (12.3 vs 10.7 GB/s).
AVX512 static int64_t matvec_f32_avx512_pairs(const sq_q4_matrix *w, const float *xp, float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int64_t o = row0;
    for (; o + 2 <= row1; o += 2) {
        const uint8_t *ra = w->codes + o * (in / 2), *rb = ra + in / 2;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int64_t g = 0; g < groups; g++) {
            const __m512 ta = weight_table(w, o, g, groups, iota), tb = weight_table(w, o + 1, g, groups, iota);
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 128) {
                _mm_prefetch((const char *)(ra + k / 2 + SQ_PF_DISTANCE), _MM_HINT_T0);
                _mm_prefetch((const char *)(rb + k / 2 + SQ_PF_DISTANCE), _MM_HINT_T0);
                const __m512i va = _mm512_loadu_si512((const void *)(ra + k / 2)), vb = _mm512_loadu_si512((const void *)(rb + k / 2));
                const float *xk = xp + k;
#define PAIR_STEP(S, A, B)                                                                                   \
                do {                                                                                         \
                    const __m512 xv = _mm512_loadu_ps(xk + 16 * (S));                                        \
                    A = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(va, 4 * (S)), ta), xv, A);   \
                    B = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(vb, 4 * (S)), tb), xv, B);   \
                } while (0)
                PAIR_STEP(0, a0, b0); PAIR_STEP(1, a1, b1); PAIR_STEP(2, a2, b2); PAIR_STEP(3, a3, b3);
                PAIR_STEP(4, a0, b0); PAIR_STEP(5, a1, b1); PAIR_STEP(6, a2, b2); PAIR_STEP(7, a3, b3);
#undef PAIR_STEP
            }
        }
        y[o] = reduce16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        y[o + 1] = reduce16(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
    }
    return o;
}

AVX512 static void matvec_f32_avx512(const sq_q4_matrix *w, const float *x, const float *xp, float *y, int64_t row0, int64_t row1) {
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    if (xp && in > 6144) row0 = matvec_f32_avx512_pairs(w, xp, y, row0, row1);
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *rc = w->codes + o * (in / 2);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t g = 0; g < groups; g++) {
            const __m512 t = weight_table(w, o, g, groups, iota);
            if (xp) {
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 128) {
                    _mm_prefetch((const char *)(rc + k / 2 + SQ_PF_DISTANCE), _MM_HINT_T0);
                    const __m512i v = _mm512_loadu_si512((const void *)(rc + k / 2));
                    const float *xk = xp + k;
                    a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, t), _mm512_loadu_ps(xk), a0);
                    a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t), _mm512_loadu_ps(xk + 16), a1);
                    a2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), t), _mm512_loadu_ps(xk + 32), a2);
                    a3 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), t), _mm512_loadu_ps(xk + 48), a3);
                    a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), t), _mm512_loadu_ps(xk + 64), a0);
                    a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), t), _mm512_loadu_ps(xk + 80), a1);
                    a2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), t), _mm512_loadu_ps(xk + 96), a2);
                    a3 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), t), _mm512_loadu_ps(xk + 112), a3);
                }
            } else {
                prefetch_range(rc + g * gs / 2, gs / 2);
                for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
                    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(rc + k / 2)));
                    a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(b, t), _mm512_loadu_ps(x + k), a0);
                    a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), t), _mm512_loadu_ps(x + k + 16), a1);
                }
            }
        }
        y[o] = reduce16(xp ? _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)) : _mm512_add_ps(a0, a1));
    }
}

// Per-call scratch for x-derived vectors (the group sums or the permuted x): on the stack up to 32 KB.
#define SQ_STACK_FLOATS 8192

int sq_q4_level(void) {
    static int cpu = -1;
    if (cpu < 0) {
        __builtin_cpu_init();
        cpu = sq_cpu_supports("avx512f") && sq_has_avx2_fma() ? SQ_Q4_AVX512 : sq_has_avx2_fma() ? SQ_Q4_AVX2 : SQ_Q4_SCALAR;
    }
    if (cpu == SQ_Q4_AVX512) {
        const char *e = getenv("SQUINT_NO_AVX512");
        if (e && *e) return SQ_Q4_AVX2;
    }
    return cpu;
}

static int level_supported(int level) {
    if (level == SQ_Q4_SCALAR) return 1;
    __builtin_cpu_init();
    if (level == SQ_Q4_AVX2) return sq_has_avx2_fma();
    if (level == SQ_Q4_AVX512) return sq_has_avx2_fma() && sq_cpu_supports("avx512f");
    return 0;
}

// Runs level `level` (twin = its scalar twin). Returns -1 when the CPU lacks it (SIMD only) or memory runs out.
static int matvec_f32_run(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1, int level, int twin) {
    if (level == SQ_Q4_SCALAR) { sq_q4_matvec_f32_ref(w, x, y, row0, row1); return 0; }
    if (level != SQ_Q4_AVX2 && level != SQ_Q4_AVX512) return -1;
    if (!twin && !level_supported(level)) return -1;
    if (row0 >= row1) return 0;
    const int64_t in = w->in, groups = in / w->group_size;
    const int inplace = level == SQ_Q4_AVX512 && inplace_ok(w);
    const int64_t need = level == SQ_Q4_AVX2 ? groups : inplace ? in : 0;
    float stack[SQ_STACK_FLOATS];
    float *buf = need <= SQ_STACK_FLOATS ? stack : (float *)malloc((size_t)need * sizeof(float));
    if (!buf) return -1;
    if (level == SQ_Q4_AVX2) {
        for (int64_t g = 0; g < groups; g++) {
            double s = 0;
            for (int64_t k = g * w->group_size; k < (g + 1) * w->group_size; k++) s += x[k];
            buf[g] = (float)s;
        }
        if (twin) twin_avx2(w, x, y, row0, row1, buf); else matvec_f32_avx2(w, x, y, row0, row1, buf);
    } else {
        if (inplace) xperm_128(x, in, buf);
        if (twin) twin_avx512(w, x, inplace ? buf : NULL, y, row0, row1);
        else matvec_f32_avx512(w, x, inplace ? buf : NULL, y, row0, row1);
    }
    if (buf != stack) free(buf);
    return 0;
}

int sq_q4_matvec_f32_level(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1, int level) {
    return matvec_f32_run(w, x, y, row0, row1, level, 0);
}
int sq_q4_matvec_f32_twin(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1, int level) {
    if (level == SQ_Q4_SCALAR) return -1;
    return matvec_f32_run(w, x, y, row0, row1, level, 1);
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

// The int8 product's row loop, shared by the AVX2 and VNNI levels (they differ only in STEP): per
// group, the zero-point term sum_b d_b * bsum_b once per call; per row, the groups' integer sums
// scaled by the row's group scales.
#define DEFINE_MATVEC_Q8(NAME, TARGET, STEP)                                                      \
TARGET static void NAME(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum, \
                        float *y, int64_t row0, int64_t row1) {                                   \
    const int64_t in = w->in, gs = w->group_size, groups = in / gs;                               \
    const __m256i m4 = _mm256_set1_epi8(0x0F);                                                    \
    const __m256i ones = _mm256_set1_epi16(1);                                                    \
    (void)ones;                                                                                   \
    float stack[1024];                                                                            \
    float *gz = groups <= 1024 ? stack : (float *)malloc((size_t)groups * sizeof(float));         \
    if (!gz) { sq_q4_matvec_q8_ref(w, xq, d8, bsum, y, row0, row1); return; }                     \
    for (int64_t g = 0; g < groups; g++) {                                                        \
        float zs = 0;                                                                             \
        for (int64_t b = g * gs / 32; b < (g + 1) * gs / 32; b++) zs += d8[8 * (b / 2) + 4 * (b % 2)] * (float)bsum[b]; \
        gz[g] = zs;                                                                               \
    }                                                                                             \
    for (int64_t o = row0; o < row1; o++) {                                                       \
        const uint8_t *ra = w->codes + o * (in / 2);                                              \
        const float *sa = w->scales + o * groups;                                                 \
        __m256 ta = _mm256_setzero_ps();                                                          \
        float za = 0;                                                                             \
        for (int64_t g = 0; g < groups; g++) {                                                    \
            __m256 aa = _mm256_setzero_ps();                                                      \
            prefetch_range(ra + g * gs / 2, gs / 2);                                              \
            for (int64_t k = g * gs; k < (g + 1) * gs; k += 64) {                                 \
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + k));                 \
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + k + 32));            \
                const __m256 dv = _mm256_loadu_ps(d8 + (k / 64) * 8);                             \
                STEP(ra, aa);                                                                     \
            }                                                                                     \
            ta = _mm256_fmadd_ps(aa, _mm256_set1_ps(sa[g]), ta);                                  \
            za += sa[g] * zero_of(w, o, g, groups) * gz[g];                                       \
        }                                                                                         \
        y[o] = sq_hsum256(ta) - za;                                                               \
    }                                                                                             \
    if (gz != stack) free(gz);                                                                    \
}

DEFINE_MATVEC_Q8(matvec_q8_avx2, AVX2, Q8_STEP)

// The same step with AVX-512 VNNI (vpdpbusd on 256-bit vectors): one instruction per half instead of
// maddubs + add + madd. The integer sums are the same numbers (no int16 saturation can occur in the
// AVX2 step: |lo*x0 pair + hi*x1 pair| <= 4 * 15 * 127), so both give identical bits.
#define VNNI SQ_TARGET_VNNI
#define Q8_STEP_VNNI(rc, acc)                                                                     \
    do {                                                                                          \
        __m256i v_ = _mm256_loadu_si256((const __m256i *)((rc) + k / 2));                         \
        __m256i lo_ = _mm256_and_si256(v_, m4);                                                   \
        __m256i hi_ = _mm256_and_si256(_mm256_srli_epi16(v_, 4), m4);                             \
        __m256i d_ = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo_, x0), hi_, x1); \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d_), dv, acc);                                   \
    } while (0)

DEFINE_MATVEC_Q8(matvec_q8_vnni, VNNI, Q8_STEP_VNNI)

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
    if (matvec_f32_run(w, x, y, row0, row1, sq_q4_level(), 0) != 0) sq_q4_matvec_f32_ref(w, x, y, row0, row1);
}
int sq_has_vnni(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = sq_has_avx2_fma() && sq_cpu_supports("avx512vl") && sq_cpu_supports("avx512vnni");
    }
    return cached;
}
int sq_q4_matvec_q8_level(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                          float *y, int64_t row0, int64_t row1, int level) {
    switch (level) {
    case SQ_Q4_SCALAR: sq_q4_matvec_q8_ref(w, xq, d8, bsum, y, row0, row1); return 0;
    case SQ_Q4_AVX2: if (!sq_has_avx2_fma()) return -1; matvec_q8_avx2(w, xq, d8, bsum, y, row0, row1); return 0;
    case SQ_Q4_AVX512: if (!sq_has_vnni()) return -1; matvec_q8_vnni(w, xq, d8, bsum, y, row0, row1); return 0;
    default: return -1;
    }
}
void sq_q4_matvec_q8(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                     float *y, int64_t row0, int64_t row1) {
    int level = sq_q4_level();
    if (level == SQ_Q4_AVX512 && !sq_has_vnni()) level = SQ_Q4_AVX2;
    sq_q4_matvec_q8_level(w, xq, d8, bsum, y, row0, row1, level);
}
uint64_t sq_read_bandwidth_probe(const void *p, size_t n) {
    if (sq_has_avx2_fma()) return read_probe_avx2(p, n);
    const uint8_t *b = (const uint8_t *)p; uint64_t t = 0;
    for (size_t i = 0; i < n; i++) t += b[i];
    return t;
}
