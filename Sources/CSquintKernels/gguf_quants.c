// ggml block types (Formats/GGUF.md §5): scalar reference dequantisers, AVX2 twins, and the
// round-to-nearest quantisers of the GGUF writer.
//
// Bit-exactness contract: the output equals gguf-py 0.19.0's `gguf.quants.dequantize` bit for bit.
// That holds only if every formula is evaluated in float32 with one rounding per operation, in the
// order the spec writes it (scale products like d*sc rounded first), and never with a fused
// multiply-add. Compilers may contract a*b+c into an FMA when the target has one, so contraction is
// switched off for this whole file.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include "squint_gguf.h"
#include "squint_kernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8,
    T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30,
};

size_t sq_gguf_block_size(int type) {
    switch (type) {
    case T_F32: case T_F16: case T_BF16: return 1;
    case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: case T_Q8_0: return 32;
    case T_Q2_K: case T_Q3_K: case T_Q4_K: case T_Q5_K: case T_Q6_K: return 256;
    default: return 0;
    }
}

size_t sq_gguf_block_bytes(int type) {
    switch (type) {
    case T_F32: return 4;
    case T_F16: case T_BF16: return 2;
    case T_Q4_0: return 18;
    case T_Q4_1: return 20;
    case T_Q5_0: return 22;
    case T_Q5_1: return 24;
    case T_Q8_0: return 34;
    case T_Q2_K: return 84;
    case T_Q3_K: return 110;
    case T_Q4_K: return 144;
    case T_Q5_K: return 176;
    case T_Q6_K: return 210;
    default: return 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar helpers

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/// binary16 -> binary32, exact: subnormals widened, NaN payload kept (a signalling NaN stays one).
static inline float h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        // m * 2^-24, exact in float32 (m < 2^10).
        float f = (float)m * 5.9604644775390625e-8f;
        return bits_f(sign | f_bits(f));
    }
    if (e == 31) return bits_f(sign | 0x7f800000u | (m << 13));
    return bits_f(sign | ((e + 112u) << 23) | (m << 13));
}

/// binary32 -> binary16, round to nearest even, overflow to infinity; NaN keeps its upper payload
/// bits (forced non-zero), as numpy's float16 cast does.
static inline uint16_t f2h(float f) {
    uint32_t x = f_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {
        uint16_t m = (uint16_t)((ax >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (m ? m : 1));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   // >= 65520 rounds to infinity
    if (ax < 0x38800000u) {                                        // below 2^-14: subnormal or zero
        float a = bits_f(ax) * 16777216.0f;                        // in units of 2^-24, exact
        return (uint16_t)(sign | (uint16_t)rintf(a));              // rintf: nearest even (default mode)
    }
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax >> 13) & 0x3ffu);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

/// binary32 -> bfloat16 as gguf-py (and ggml) do it: NaN forced quiet, else round to nearest even.
static inline uint16_t f2bf(float f) {
    uint32_t n = f_bits(f);
    if ((n & 0x7fffffffu) > 0x7f800000u) n = (n & 0xffff0000u) | 0x00400000u;
    return (uint16_t)(((uint64_t)n + (0x7fffu + ((n >> 16) & 1u))) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Scalar reference dequantisers: one block per iteration, formulas exactly as the spec writes them.

static void deq_f32_ref(const uint8_t *b, float *y, size_t n) { memcpy(y, b, n * 4); }
static void deq_f16_ref(const uint8_t *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = h2f(ld16(b + 2 * i));
}
static void deq_bf16_ref(const uint8_t *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = bits_f((uint32_t)ld16(b + 2 * i) << 16);
}

static inline int nib(const uint8_t *qs, int i) { return i < 16 ? (qs[i] & 15) : (qs[i - 16] >> 4); }

static void deq_q4_0_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 18, y += 32) {
        float d = h2f(ld16(b));
        for (int i = 0; i < 32; i++) y[i] = d * (float)(nib(b + 2, i) - 8);
    }
}

static void deq_q4_1_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 20, y += 32) {
        float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        for (int i = 0; i < 32; i++) y[i] = (d * (float)nib(b + 4, i)) + m;
    }
}

static void deq_q5_0_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 22, y += 32) {
        float d = h2f(ld16(b));
        uint32_t qh = ld32(b + 2);
        for (int i = 0; i < 32; i++) {
            int q = nib(b + 6, i) | (int)(((qh >> i) & 1u) << 4);
            y[i] = d * (float)(q - 16);
        }
    }
}

static void deq_q5_1_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 24, y += 32) {
        float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        uint32_t qh = ld32(b + 4);
        for (int i = 0; i < 32; i++) {
            int q = nib(b + 8, i) | (int)(((qh >> i) & 1u) << 4);
            y[i] = (d * (float)q) + m;
        }
    }
}

static void deq_q8_0_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 34, y += 32) {
        float d = h2f(ld16(b));
        for (int i = 0; i < 32; i++) y[i] = (float)(int8_t)b[2 + i] * d;
    }
}

static void deq_q2_k_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 84, y += 256) {
        const uint8_t *sc = b, *qs = b + 16;
        float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
        for (int i = 0; i < 256; i++) {
            int g = i / 128, s = (i % 128) / 32, l = i % 32, j = i / 16;
            int q = (qs[32 * g + l] >> (2 * s)) & 3;
            float dl = d * (float)(sc[j] & 15), ml = dmin * (float)(sc[j] >> 4);
            y[i] = (dl * (float)q) - ml;
        }
    }
}

/// Q3_K's sixteen 6-bit scales, minus 32.
static inline void q3k_scales(const uint8_t *s, int out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (lo | (hi << 4)) - 32;
    }
}

static void deq_q3_k_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 110, y += 256) {
        const uint8_t *hm = b, *qs = b + 32;
        int sc[16];
        q3k_scales(b + 96, sc);
        float d = h2f(ld16(b + 108));
        for (int i = 0; i < 256; i++) {
            int g = i / 128, s = (i % 128) / 32, l = i % 32;
            int lo = (qs[32 * g + l] >> (2 * s)) & 3;
            int h = (hm[l] >> (i / 32)) & 1;
            int q = h ? lo : lo - 4;
            float dl = d * (float)sc[i / 16];
            y[i] = dl * (float)q;
        }
    }
}

/// Q4_K / Q5_K's eight 6-bit scales and mins.
static inline void k_scale_min(const uint8_t *b, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = b[j] & 63;
        *mn = b[j + 4] & 63;
    } else {
        *sc = (b[j + 4] & 15) | ((b[j - 4] >> 6) << 4);
        *mn = (b[j + 4] >> 4) | ((b[j] >> 6) << 4);
    }
}

static void deq_q4_k_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 144, y += 256) {
        float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        const uint8_t *qs = b + 16;
        for (int i = 0; i < 256; i++) {
            int g = i / 64, s = (i % 64) / 32, l = i % 32, sc, mn;
            k_scale_min(b + 4, i / 32, &sc, &mn);
            int q = (qs[32 * g + l] >> (4 * s)) & 15;
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            y[i] = (d1 * (float)q) - m1;
        }
    }
}

static void deq_q5_k_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 176, y += 256) {
        float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        const uint8_t *qh = b + 16, *qs = b + 48;
        for (int i = 0; i < 256; i++) {
            int g = i / 64, s = (i % 64) / 32, l = i % 32, sc, mn;
            k_scale_min(b + 4, i / 32, &sc, &mn);
            int q = ((qs[32 * g + l] >> (4 * s)) & 15) | (((qh[l] >> (i / 32)) & 1) << 4);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            y[i] = (d1 * (float)q) - m1;
        }
    }
}

static void deq_q6_k_ref(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 210, y += 256) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = h2f(ld16(b + 208));
        for (int i = 0; i < 256; i++) {
            int g = i / 128, r = i % 128;
            int lo = (ql[64 * g + r % 64] >> (4 * (r / 64))) & 15;
            int hi = (qh[32 * g + r % 32] >> (2 * (r / 32))) & 3;
            int q = (lo | (hi << 4)) - 32;
            float ds = d * (float)sc[i / 16];
            y[i] = ds * (float)q;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 twins. Codes are assembled as bytes in a vector, widened to int32, converted to float and
// scaled with separate multiply and add/subtract instructions (no FMA), in the reference's order.

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/// 16 signed byte codes -> two vectors of 8 floats.
AVX2 static inline void i8x16_to_f32(__m128i q, __m256 *lo, __m256 *hi) {
    *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
}

/// y[0..16) = s * q (s first, as the reference).
AVX2 static inline void store16_mul(float *y, __m128i q, float s) {
    __m256 a, b, vs = _mm256_set1_ps(s);
    i8x16_to_f32(q, &a, &b);
    _mm256_storeu_ps(y, _mm256_mul_ps(vs, a));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(vs, b));
}

/// y[0..16) = (s * q) + m.
AVX2 static inline void store16_mul_add(float *y, __m128i q, float s, float m) {
    __m256 a, b, vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(m);
    i8x16_to_f32(q, &a, &b);
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(vs, a), vm));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(vs, b), vm));
}

/// y[0..16) = (s * q) - m.
AVX2 static inline void store16_mul_sub(float *y, __m128i q, float s, float m) {
    __m256 a, b, vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(m);
    i8x16_to_f32(q, &a, &b);
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(vs, a), vm));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(vs, b), vm));
}

/// The 32 nibbles of a Q4/Q5 "qs[16]": bytes 0..15 = low nibbles, 16..31 = high nibbles.
AVX2 static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/// 32 bytes whose byte i is bit i of qh, shifted to bit 4 (0 or 16).
AVX2 static inline __m256i qh_bits32(uint32_t qh) {
    // Byte i gets the byte of qh holding bit i, then the bit is isolated with a per-byte mask.
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                           0x0101010101010101LL, 0x0000000000000000LL);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    __m256i is = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(is, _mm256_set1_epi8(16));
}

AVX2 static void deq_f16_avx2(const uint8_t *b, float *y, size_t n) {
    size_t i = 0;
    const __m256i expm = _mm256_set1_epi32(0x7c00), manm = _mm256_set1_epi32(0x3ff);
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(b + 2 * i));
        __m256 f = _mm256_cvtph_ps(h);
        // vcvtph2ps quiets signalling NaNs; the reference keeps them. Rebuild NaN lanes from bits.
        __m256i w = _mm256_cvtepu16_epi32(h);
        __m256i isnan = _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_and_si256(w, manm), _mm256_setzero_si256()),
                                            _mm256_cmpeq_epi32(_mm256_and_si256(w, expm), expm));
        __m256i nanbits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16),
                                          _mm256_or_si256(_mm256_set1_epi32(0x7f800000),
                                                          _mm256_slli_epi32(_mm256_and_si256(w, manm), 13)));
        __m256i out = _mm256_blendv_epi8(_mm256_castps_si256(f), nanbits, isnan);
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(out));
    }
    deq_f16_ref(b + 2 * i, y + i, n - i);
}

AVX2 static void deq_bf16_avx2(const uint8_t *b, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(b + 2 * i));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    deq_bf16_ref(b + 2 * i, y + i, n - i);
}

AVX2 static void deq_q4_0_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 18, y += 32) {
        float d = h2f(ld16(b));
        __m256i q = _mm256_sub_epi8(nibbles32(b + 2), _mm256_set1_epi8(8));
        store16_mul(y, _mm256_castsi256_si128(q), d);
        store16_mul(y + 16, _mm256_extracti128_si256(q, 1), d);
    }
}

AVX2 static void deq_q4_1_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 20, y += 32) {
        float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        __m256i q = nibbles32(b + 4);
        store16_mul_add(y, _mm256_castsi256_si128(q), d, m);
        store16_mul_add(y + 16, _mm256_extracti128_si256(q, 1), d, m);
    }
}

AVX2 static void deq_q5_0_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 22, y += 32) {
        float d = h2f(ld16(b));
        __m256i q = _mm256_or_si256(nibbles32(b + 6), qh_bits32(ld32(b + 2)));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        store16_mul(y, _mm256_castsi256_si128(q), d);
        store16_mul(y + 16, _mm256_extracti128_si256(q, 1), d);
    }
}

AVX2 static void deq_q5_1_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 24, y += 32) {
        float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        __m256i q = _mm256_or_si256(nibbles32(b + 8), qh_bits32(ld32(b + 4)));
        store16_mul_add(y, _mm256_castsi256_si128(q), d, m);
        store16_mul_add(y + 16, _mm256_extracti128_si256(q, 1), d, m);
    }
}

AVX2 static void deq_q8_0_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 34, y += 32) {
        __m256 vd = _mm256_set1_ps(h2f(ld16(b)));
        for (int h = 0; h < 2; h++) {
            __m256 a, c;
            i8x16_to_f32(_mm_loadu_si128((const __m128i *)(b + 2 + 16 * h)), &a, &c);
            _mm256_storeu_ps(y + 16 * h, _mm256_mul_ps(a, vd));
            _mm256_storeu_ps(y + 16 * h + 8, _mm256_mul_ps(c, vd));
        }
    }
}

/// (v >> shift) & mask on every byte of 32 (shift applied to 16-bit lanes, then masked per byte).
AVX2 static inline __m256i bits32(__m256i v, int shift, int mask) {
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8((char)mask));
}

AVX2 static void deq_q2_k_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 84, y += 256) {
        const uint8_t *sc = b;
        float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
        for (int g = 0; g < 2; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * g));
            for (int s = 0; s < 4; s++) {
                __m256i q = bits32(v, 2 * s, 3);
                int j = 8 * g + 2 * s;
                float *o = y + 128 * g + 32 * s;
                store16_mul_sub(o, _mm256_castsi256_si128(q), d * (float)(sc[j] & 15), dmin * (float)(sc[j] >> 4));
                store16_mul_sub(o + 16, _mm256_extracti128_si256(q, 1), d * (float)(sc[j + 1] & 15),
                                dmin * (float)(sc[j + 1] >> 4));
            }
        }
    }
}

AVX2 static void deq_q3_k_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 110, y += 256) {
        int sc[16];
        q3k_scales(b + 96, sc);
        float d = h2f(ld16(b + 108));
        __m256i hm = _mm256_loadu_si256((const __m256i *)b);
        for (int g = 0; g < 2; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * g));
            for (int s = 0; s < 4; s++) {
                int c = 4 * g + s;   // chunk of 32 = i / 32
                __m256i lo = bits32(v, 2 * s, 3);
                __m256i h = bits32(hm, c, 1);
                // q = lo - 4 where the high bit is clear: lo - 4 + 4*h.
                __m256i q = _mm256_add_epi8(_mm256_sub_epi8(lo, _mm256_set1_epi8(4)), _mm256_slli_epi16(h, 2));
                float *o = y + 32 * c;
                store16_mul(o, _mm256_castsi256_si128(q), d * (float)sc[2 * c]);
                store16_mul(o + 16, _mm256_extracti128_si256(q, 1), d * (float)sc[2 * c + 1]);
            }
        }
    }
}

AVX2 static void deq_q4_k_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 144, y += 256) {
        float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * g));
            for (int s = 0; s < 2; s++) {
                int j = 2 * g + s, sc, mn;
                k_scale_min(b + 4, j, &sc, &mn);
                __m256i q = bits32(v, 4 * s, 15);
                float d1 = d * (float)sc, m1 = dmin * (float)mn;
                store16_mul_sub(y + 32 * j, _mm256_castsi256_si128(q), d1, m1);
                store16_mul_sub(y + 32 * j + 16, _mm256_extracti128_si256(q, 1), d1, m1);
            }
        }
    }
}

AVX2 static void deq_q5_k_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 176, y += 256) {
        float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * g));
            for (int s = 0; s < 2; s++) {
                int j = 2 * g + s, sc, mn;
                k_scale_min(b + 4, j, &sc, &mn);
                __m256i q = _mm256_or_si256(bits32(v, 4 * s, 15), _mm256_slli_epi16(bits32(qh, j, 1), 4));
                float d1 = d * (float)sc, m1 = dmin * (float)mn;
                store16_mul_sub(y + 32 * j, _mm256_castsi256_si128(q), d1, m1);
                store16_mul_sub(y + 32 * j + 16, _mm256_extracti128_si256(q, 1), d1, m1);
            }
        }
    }
}

AVX2 static void deq_q6_k_avx2(const uint8_t *b, float *y, size_t nb) {
    for (size_t k = 0; k < nb; k++, b += 210, y += 256) {
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = h2f(ld16(b + 208));
        for (int g = 0; g < 2; g++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * g));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * g + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * g));
            for (int c = 0; c < 4; c++) {   // r / 32
                __m256i lo = bits32((c & 1) ? l1 : l0, 4 * (c >> 1), 15);
                __m256i hi = bits32(hv, 2 * c, 3);
                __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
                int j = 8 * g + 2 * c;
                float *o = y + 128 * g + 32 * c;
                store16_mul(o, _mm256_castsi256_si128(q), d * (float)sc[j]);
                store16_mul(o + 16, _mm256_extracti128_si256(q, 1), d * (float)sc[j + 1]);
            }
        }
    }
}

#undef AVX2

// ---------------------------------------------------------------------------------------------
// Dispatch

typedef void (*deq_fn)(const uint8_t *, float *, size_t);

static deq_fn pick(int type, int level) {
    switch (type) {
    case T_F32: return deq_f32_ref;
    case T_F16: return level ? deq_f16_avx2 : deq_f16_ref;
    case T_BF16: return level ? deq_bf16_avx2 : deq_bf16_ref;
    case T_Q4_0: return level ? deq_q4_0_avx2 : deq_q4_0_ref;
    case T_Q4_1: return level ? deq_q4_1_avx2 : deq_q4_1_ref;
    case T_Q5_0: return level ? deq_q5_0_avx2 : deq_q5_0_ref;
    case T_Q5_1: return level ? deq_q5_1_avx2 : deq_q5_1_ref;
    case T_Q8_0: return level ? deq_q8_0_avx2 : deq_q8_0_ref;
    case T_Q2_K: return level ? deq_q2_k_avx2 : deq_q2_k_ref;
    case T_Q3_K: return level ? deq_q3_k_avx2 : deq_q3_k_ref;
    case T_Q4_K: return level ? deq_q4_k_avx2 : deq_q4_k_ref;
    case T_Q5_K: return level ? deq_q5_k_avx2 : deq_q5_k_ref;
    case T_Q6_K: return level ? deq_q6_k_avx2 : deq_q6_k_ref;
    default: return 0;
    }
}

int sq_gguf_dequant_level(int type, const void *src, float *dst, size_t nblocks, int level) {
    if (level != SQ_GGUF_SCALAR && level != SQ_GGUF_AVX2) return -1;
    if (level == SQ_GGUF_AVX2 && !sq_has_avx2_fma()) return -1;
    deq_fn f = pick(type, level);
    if (!f) return -1;
    f((const uint8_t *)src, dst, nblocks);
    return 0;
}

int sq_gguf_dequant(int type, const void *src, float *dst, size_t nblocks) {
    return sq_gguf_dequant_level(type, src, dst, nblocks, sq_has_avx2_fma() ? SQ_GGUF_AVX2 : SQ_GGUF_SCALAR);
}

// ---------------------------------------------------------------------------------------------
// Reference quantisers (Formats/GGUF.md §5.8). float32 arithmetic, no FMA, as llama.cpp's
// quantize_row_*_ref and gguf-py's quantize_blocks.

static inline void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void q8_0(const float *x, uint8_t *b, size_t nb) {
    for (size_t k = 0; k < nb; k++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) { float a = fabsf(x[i]); if (a > amax) amax = a; }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        st16(b, f2h(d));
        for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
    }
}

static void q4_0(const float *x, uint8_t *b, size_t nb) {
    for (size_t k = 0; k < nb; k++, x += 32, b += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < 32; i++) {
            if (amax < fabsf(x[i])) { amax = fabsf(x[i]); max = x[i]; }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        st16(b, f2h(d));
        for (int i = 0; i < 16; i++) {
            float a = x[i] * id + 8.5f, c = x[16 + i] * id + 8.5f;   // two roundings (contraction is off)
            int q0 = (int)(int8_t)a, q1 = (int)(int8_t)c;
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            b[2 + i] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q4_1(const float *x, uint8_t *b, size_t nb) {
    for (size_t k = 0; k < nb; k++, x += 32, b += 20) {
        float min = x[0], max = x[0];
        for (int i = 1; i < 32; i++) {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
        }
        float d = (max - min) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        st16(b, f2h(d));
        st16(b + 2, f2h(min));
        for (int i = 0; i < 16; i++) {
            float a = (x[i] - min) * id + 0.5f, c = (x[16 + i] - min) * id + 0.5f;
            int q0 = (int)(int8_t)a, q1 = (int)(int8_t)c;
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            b[4 + i] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// Q6_K (llama.cpp's quantize_row_q6_K_ref, Formats/GGUF.md §5.8): per 16 weights a scale chosen by
// a weighted least-squares search over 19 candidate grids (weights x^2), then one float16 super-scale
// d = max_scale / -128 for the 256 and int8 sub-scales round(sc / d), codes round(x / (d * sub)) in
// -32..31 stored as 4 low bits (ql) and 2 high bits (qh). llama.cpp builds this file (ggml-base)
// without FMA, so float32 with one rounding per operation matches it; contraction is off here too.

// Round to nearest, ties to even, by the float magic-number trick (|v| <= 2^22), as ggml does.
static inline int nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i; memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// One group of n weights on the grid l in [-nmax, nmax-1]: L[i] = l + nmax; returns the scale.
static float q6k_group_scale(const float *x, int n, int nmax, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) { float a = fabsf(x[i]); if (a > amax) { amax = a; max = x[i]; } }
    if (amax < 1e-15f) { for (int i = 0; i < n; i++) L[i] = 0; return 0.f; }
    float best = 0, scale = 0;
    for (int is = 0; is <= 18; is++) {          // is = 0: -nmax / max; then the 18 shifted grids
        int shift = is == 0 ? 0 : (is <= 9 ? is - 10 : is - 9);
        float iscale = is == 0 ? -nmax / max : -(nmax + 0.1f * shift) / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (is == 0) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = suml2 ? sumlx / suml2 : 0.0f;
            best = scale * sumlx;
        } else if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void q6_k(const float *x, uint8_t *b, size_t nb) {
    int8_t L[256];
    float sc[16];
    for (size_t k = 0; k < nb; k++, x += 256, b += 210) {
        float max_scale = 0, max_abs = 0;
        for (int g = 0; g < 16; g++) {
            sc[g] = q6k_group_scale(x + 16 * g, 16, 32, L + 16 * g);
            if (fabsf(sc[g]) > max_abs) { max_abs = fabsf(sc[g]); max_scale = sc[g]; }
        }
        memset(b, 0, 210);
        if (max_abs < 1e-15f) continue;          // all zero: d = 0, every code 0
        float iscale = -128.f / max_scale;
        uint16_t dh = f2h(1 / iscale);
        st16(b + 208, dh);
        int8_t *sub = (int8_t *)(b + 192);
        for (int g = 0; g < 16; g++) { int v = nearest_int(iscale * sc[g]); sub[g] = (int8_t)(v < 127 ? v : 127); }
        float d0 = h2f(dh);
        for (int g = 0; g < 16; g++) {
            float d = d0 * sub[g];
            if (!d) continue;                     // keeps the group's codes from the search
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * g + i] / d);
                L[16 * g + i] = (int8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
            }
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int h = 0; h < 256; h += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int8_t *q = L + h + l;
                ql[l] = (uint8_t)((q[0] & 15) | ((q[64] & 15) << 4));
                ql[l + 32] = (uint8_t)((q[32] & 15) | ((q[96] & 15) << 4));
                qh[l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
            }
        }
    }
}

int sq_gguf_quantize(int type, const float *src, void *dst, size_t nblocks) {
    uint8_t *b = (uint8_t *)dst;
    switch (type) {
    case T_F32: memcpy(dst, src, nblocks * 4); return 0;
    case T_F16: for (size_t i = 0; i < nblocks; i++) st16(b + 2 * i, f2h(src[i])); return 0;
    case T_BF16: for (size_t i = 0; i < nblocks; i++) st16(b + 2 * i, f2bf(src[i])); return 0;
    case T_Q8_0: q8_0(src, b, nblocks); return 0;
    case T_Q4_0: q4_0(src, b, nblocks); return 0;
    case T_Q4_1: q4_1(src, b, nblocks); return 0;
    case T_Q6_K: q6_k(src, b, nblocks); return 0;
    default: return -1;
    }
}
