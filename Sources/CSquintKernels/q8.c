// Int8 x int8 matrix-vector products (include/squint_q4.h: sq_q8_pack_rows, sq_q8_matvec_q8): the
// 8-bit lm_head of the int8-activation decode path. Scalar twin first, then AVX2 and AVX-512 VNNI.
#include "squint_q4.h"
// No contraction: the scalar twin rounds exactly as written (fmaf where the SIMD code has an FMA).
#pragma STDC FP_CONTRACT OFF
#include "squint_kernels.h"
#include "isa.h"
#include "simd_sum.h"
#include <math.h>

// Position of element j (0..31) of block b inside a row's pair-interleaved codes (sq_q8_quantize).
static inline int64_t pair_pos(int64_t b, int j) { return 64 * (b / 2) + (j < 16 ? 0 : 32) + (b % 2) * 16 + (j % 16); }

void sq_q8_pack_rows(const float *w, int64_t in, int64_t row0, int64_t row1, int8_t *q, float *d) {
    for (int64_t o = row0; o < row1; o++) {
        const float *wr = w + (o - row0) * in;
        int8_t *qr = q + o * in;
        for (int64_t b = 0; b < in / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) { float a = fabsf(wr[b * 32 + j]); if (a > amax) amax = a; }
            float db = amax / 127.0f, id = db > 0 ? 1.0f / db : 0.0f;
            for (int j = 0; j < 32; j++) {
                int v = (int)lrintf(wr[b * 32 + j] * id);
                qr[pair_pos(b, j)] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
            d[o * (in / 32) + b] = db;
        }
    }
}

// The twin: lane l of a 32-byte chunk holds bytes 4l..4l+3; lanes 0-3 belong to block A, 4-7 to B.
static void matvec_scalar(const int8_t *q, const float *d, int64_t in, const int8_t *xq, const float *d8,
                          float *y, int64_t row0, int64_t row1) {
    for (int64_t o = row0; o < row1; o++) {
        const int8_t *qr = q + o * in;
        const float *dr = d + o * (in / 32);
        float acc[8] = {0};
        for (int64_t p = 0; p < in / 64; p++) {
            for (int l = 0; l < 8; l++) {
                int32_t s = 0;
                for (int c = 0; c < 2; c++)
                    for (int t = 0; t < 4; t++) s += (int32_t)qr[64 * p + 32 * c + 4 * l + t] * (int32_t)xq[64 * p + 32 * c + 4 * l + t];
                float sc = d8[8 * p + l] * dr[2 * p + (l >= 4)];
                acc[l] = fmaf((float)s, sc, acc[l]);
            }
        }
        // sq_hsum256: 128-bit halves added, then movehl, then movehdup.
        float h0 = acc[0] + acc[4], h1 = acc[1] + acc[5], h2 = acc[2] + acc[6], h3 = acc[3] + acc[7];
        float g0 = h0 + h2, g1 = h1 + h3;
        y[o] = g0 + g1;
    }
}

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI SQ_TARGET_VNNI


// |w| x sign(x, w): unsigned x signed bytes for maddubs / vpdpbusd with the product's sign kept.
#define DOT_AVX2(acc, w, x)                                                                       \
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones))
#define DOT_VNNI(acc, w, x) acc = _mm256_dpbusd_epi32(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))

#define DEFINE_MATVEC(NAME, TARGET, DOT)                                                          \
TARGET static void NAME(const int8_t *q, const float *d, int64_t in, const int8_t *xq, const float *d8, \
                        float *y, int64_t row0, int64_t row1) {                                   \
    const __m256i ones = _mm256_set1_epi16(1);                                                    \
    (void)ones;                                                                                   \
    for (int64_t o = row0; o < row1; o++) {                                                       \
        const int8_t *qr = q + o * in;                                                            \
        const float *dr = d + o * (in / 32);                                                      \
        __m256 acc = _mm256_setzero_ps();                                                         \
        for (int64_t p = 0; p < in / 64; p++) {                                                   \
            _mm_prefetch((const char *)(qr + 64 * p + 4096), _MM_HINT_T0);                       \
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(qr + 64 * p));                      \
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(qr + 64 * p + 32));                 \
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + 64 * p));                      \
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + 64 * p + 32));                 \
            __m256i s = _mm256_setzero_si256();                                                   \
            DOT(s, w0, x0);                                                                       \
            DOT(s, w1, x1);                                                                       \
            __m256 dw = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(dr[2 * p])), _mm_set1_ps(dr[2 * p + 1]), 1); \
            __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(d8 + 8 * p), dw);                           \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc);                                \
        }                                                                                         \
        y[o] = sq_hsum256(acc);                                                                   \
    }                                                                                             \
}

DEFINE_MATVEC(matvec_avx2, AVX2, DOT_AVX2)
DEFINE_MATVEC(matvec_vnni, VNNI, DOT_VNNI)

int sq_q8_matvec_q8_level(const int8_t *q, const float *d, int64_t in, const int8_t *xq, const float *d8,
                          float *y, int64_t row0, int64_t row1, int level) {
    switch (level) {
    case SQ_Q4_SCALAR: matvec_scalar(q, d, in, xq, d8, y, row0, row1); return 0;
    case SQ_Q4_AVX2: if (!sq_has_avx2_fma()) return -1; matvec_avx2(q, d, in, xq, d8, y, row0, row1); return 0;
    case SQ_Q4_AVX512: if (!sq_has_vnni()) return -1; matvec_vnni(q, d, in, xq, d8, y, row0, row1); return 0;
    default: return -1;
    }
}

void sq_q8_matvec_q8(const int8_t *q, const float *d, int64_t in, const int8_t *xq, const float *d8,
                     float *y, int64_t row0, int64_t row1) {
    int level = sq_q4_level();
    if (level == SQ_Q4_AVX512 && !sq_has_vnni()) level = SQ_Q4_AVX2;
    sq_q8_matvec_q8_level(q, d, in, xq, d8, y, row0, row1, level);
}
