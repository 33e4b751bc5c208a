#include "squint_kernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

int sq_has_avx2_fma(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached;
}

void sq_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else {                       // subnormal: renormalise
            int e = -1;
            do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
            mant &= 0x3ff;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f; memcpy(&f, &u, 4); return f;
}

void sq_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

__attribute__((target("avx2,fma,f16c")))
static void bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
    sq_bf16_to_f32_ref(src + i, dst + i, n - i);
}

__attribute__((target("avx2,fma,f16c")))
static void f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    sq_f16_to_f32_ref(src + i, dst + i, n - i);
}

void sq_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (sq_has_avx2_fma()) bf16_to_f32_avx2(src, dst, n); else sq_bf16_to_f32_ref(src, dst, n);
}
void sq_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (sq_has_avx2_fma()) f16_to_f32_avx2(src, dst, n); else sq_f16_to_f32_ref(src, dst, n);
}

void sq_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u; memcpy(&u, &src[i], 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { dst[i] = (uint16_t)((u >> 16) | 0x40); continue; }
        uint32_t lsb = (u >> 16) & 1u;
        u += 0x7fffu + lsb;
        dst[i] = (uint16_t)(u >> 16);
    }
}

static uint16_t float_to_half(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);            // NaN
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);           // overflow -> Inf (>= 65520)
    if (ax < 0x38800000u) {                                             // subnormal or zero in f16
        if (ax < 0x33000000u) return (uint16_t)sign;                    // < 2^-25 rounds to 0
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        // value = m * 2^(e-150); f16 subnormal unit is 2^-24 -> q = m * 2^(e-126)
        uint32_t shift = 126 - e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

void sq_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = float_to_half(src[i]);
}

void sq_stats_init(sq_stats *s) {
    s->sum = 0; s->sumsq = 0; s->min = INFINITY; s->max = -INFINITY;
    s->nan_count = 0; s->inf_count = 0; s->finite_count = 0;
}

void sq_stats_f32(const float *x, size_t n, sq_stats *s) {
    // Blocks of 4096 summed in float64 lanes keep the error independent of tensor size.
    double sum = 0, sumsq = 0; float mn = s->min, mx = s->max;
    uint64_t nan = 0, inf = 0, fin = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (isnan(v)) { nan++; continue; }
        if (isinf(v)) { inf++; continue; }
        fin++;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
        sum += v; sumsq += (double)v * v;
    }
    s->sum += sum; s->sumsq += sumsq; s->min = mn; s->max = mx;
    s->nan_count += nan; s->inf_count += inf; s->finite_count += fin;
}

void sq_stats_merge(sq_stats *into, const sq_stats *from) {
    into->sum += from->sum; into->sumsq += from->sumsq;
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
    into->nan_count += from->nan_count; into->inf_count += from->inf_count;
    into->finite_count += from->finite_count;
}
