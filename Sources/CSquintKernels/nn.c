#include "squint_kernels.h"
#include <math.h>
#include <immintrin.h>
#include "simd_sum.h"

/* ---------------- matrix-vector, bf16 / f16 weights ---------------- */

static inline float bf16f(uint16_t h) { union { uint32_t u; float f; } c; c.u = (uint32_t)h << 16; return c.f; }

void sq_matvec_bf16_ref(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *w = W + r * in;
        float acc = 0;
        for (size_t k = 0; k < in; k++) acc += bf16f(w[k]) * x[k];
        y[r] = acc + (bias ? bias[r] : 0.0f);
    }
}

void sq_matvec_f16_ref(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    float tmp[256];
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *w = W + r * in;
        float acc = 0;
        for (size_t k0 = 0; k0 < in; k0 += 256) {
            size_t n = in - k0 < 256 ? in - k0 : 256;
            sq_f16_to_f32_ref(w + k0, tmp, n);
            for (size_t k = 0; k < n; k++) acc += tmp[k] * x[k0 + k];
        }
        y[r] = acc + (bias ? bias[r] : 0.0f);
    }
}


__attribute__((target("avx2,fma,f16c")))
static inline __m256 ld_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
__attribute__((target("avx2,fma,f16c")))
static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* One row at a time, 16 weights per step into two accumulators, with a software prefetch 8 KB
 * ahead of the row (decode streams the weights from DRAM). Measured on the dev machine for an
 * 11008x4096 BF16 matrix, 1 thread: 20-21 GB/s, against 10.7-11.5 GB/s for a two-rows-per-pass
 * variant with four accumulators per row (scripts/bench/matvec.c). */
#define MATVEC_AVX2(NAME, LOAD, SCALAR)                                                                  \
__attribute__((target("avx2,fma,f16c")))                                                                 \
static void NAME(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) { \
    for (size_t r = r0; r < r1; r++) {                                                                    \
        const uint16_t *a = W + r * in;                                                                   \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                         \
        size_t k = 0;                                                                                     \
        for (; k + 16 <= in; k += 16) {                                                                   \
            if ((k & 31) == 0) _mm_prefetch((const char *)(a + k) + 8192, _MM_HINT_T0);                   \
            a0 = _mm256_fmadd_ps(LOAD(a + k), _mm256_loadu_ps(x + k), a0);                                \
            a1 = _mm256_fmadd_ps(LOAD(a + k + 8), _mm256_loadu_ps(x + k + 8), a1);                        \
        }                                                                                                 \
        for (; k + 8 <= in; k += 8) a0 = _mm256_fmadd_ps(LOAD(a + k), _mm256_loadu_ps(x + k), a0);        \
        float s = sq_hsum256(_mm256_add_ps(a0, a1));                                                      \
        for (; k < in; k++) s += SCALAR(a[k]) * x[k];                                                     \
        y[r] = s + (bias ? bias[r] : 0.0f);                                                               \
    }                                                                                                     \
}

static inline float f16f(uint16_t h) { float f; sq_f16_to_f32_ref(&h, &f, 1); return f; }
MATVEC_AVX2(matvec_bf16_avx2, ld_bf16, bf16f)
MATVEC_AVX2(matvec_f16_avx2, ld_f16, f16f)

/* float32 weights (GGUF models dequantised at load): the same one-row loop with four accumulators
 * (8 weights = 32 bytes per FMA, so two accumulators would leave the FMA latency exposed) and the same
 * 8 KB prefetch. Measured on the dev machine, 1 thread, 4864x896 from DRAM: OpenBLAS 0.3.21's sgemv
 * 14-15 GB/s, this kernel: see docs/PERFORMANCE.md ("Decode kernels"). */
void sq_matvec_f32_ref(const float *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const float *w = W + r * in;
        float acc = 0;
        for (size_t k = 0; k < in; k++) acc += w[k] * x[k];
        y[r] = acc + (bias ? bias[r] : 0.0f);
    }
}

__attribute__((target("avx2,fma,f16c")))
static void matvec_f32_avx2(const float *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const float *a = W + r * in;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t k = 0;
        for (; k + 32 <= in; k += 32) {
            _mm_prefetch((const char *)(a + k) + 8192, _MM_HINT_T0);
            _mm_prefetch((const char *)(a + k) + 8192 + 64, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(x + k), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(x + k + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(x + k + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(x + k + 24), a3);
        }
        for (; k + 8 <= in; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(x + k), a0);
        float s = sq_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; k < in; k++) s += a[k] * x[k];
        y[r] = s + (bias ? bias[r] : 0.0f);
    }
}

void sq_matvec_f32(const float *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    if (sq_has_avx2_fma()) matvec_f32_avx2(W, x, bias, y, in, r0, r1); else sq_matvec_f32_ref(W, x, bias, y, in, r0, r1);
}

void sq_matvec_bf16(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    if (sq_has_avx2_fma()) matvec_bf16_avx2(W, x, bias, y, in, r0, r1); else sq_matvec_bf16_ref(W, x, bias, y, in, r0, r1);
}
void sq_matvec_f16(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1) {
    if (sq_has_avx2_fma()) matvec_f16_avx2(W, x, bias, y, in, r0, r1); else sq_matvec_f16_ref(W, x, bias, y, in, r0, r1);
}

/* ---------------- normalisations ---------------- */

/* The references accumulate in double so they are an accuracy yardstick, not just a twin. */
void sq_layernorm_ref(const float *x, const float *w, const float *b, float *y, size_t rows, size_t dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; float *yr = y + r * dim;
        double s = 0; for (size_t k = 0; k < dim; k++) s += xr[k];
        float mean = (float)(s / (double)dim);
        double v = 0; for (size_t k = 0; k < dim; k++) { double d = (double)xr[k] - mean; v += d * d; }
        float rstd = (float)(1.0 / sqrt(v / (double)dim + (double)eps));
        for (size_t k = 0; k < dim; k++) yr[k] = (xr[k] - mean) * rstd * w[k] + b[k];
    }
}

__attribute__((target("avx2,fma,f16c")))
static void layernorm_avx2(const float *x, const float *w, const float *b, float *y, size_t rows, size_t dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; float *yr = y + r * dim;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0; size_t k = 0;
        for (; k + 16 <= dim; k += 16) { s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + k)); s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + k + 8)); }
        for (; k + 8 <= dim; k += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + k));
        double s = sq_hsum256(_mm256_add_ps(s0, s1)); for (; k < dim; k++) s += xr[k];
        float mean = (float)(s / (double)dim);
        __m256 m = _mm256_set1_ps(mean); s0 = _mm256_setzero_ps(); s1 = s0; k = 0;
        for (; k + 16 <= dim; k += 16) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + k), m), d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + k + 8), m);
            s0 = _mm256_fmadd_ps(d0, d0, s0); s1 = _mm256_fmadd_ps(d1, d1, s1);
        }
        for (; k + 8 <= dim; k += 8) { __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + k), m); s0 = _mm256_fmadd_ps(d0, d0, s0); }
        double v = sq_hsum256(_mm256_add_ps(s0, s1)); for (; k < dim; k++) { double d = (double)xr[k] - mean; v += d * d; }
        float rstd = (float)(1.0 / sqrt(v / (double)dim + (double)eps));
        __m256 rs = _mm256_set1_ps(rstd); k = 0;
        for (; k + 8 <= dim; k += 8) {
            __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + k), m), rs), _mm256_loadu_ps(w + k));
            _mm256_storeu_ps(yr + k, _mm256_add_ps(t, _mm256_loadu_ps(b + k)));
        }
        for (; k < dim; k++) yr[k] = (xr[k] - mean) * rstd * w[k] + b[k];
    }
}

void sq_layernorm(const float *x, const float *w, const float *b, float *y, size_t rows, size_t dim, float eps) {
    if (sq_has_avx2_fma()) layernorm_avx2(x, w, b, y, rows, dim, eps); else sq_layernorm_ref(x, w, b, y, rows, dim, eps);
}

void sq_rmsnorm_ref(const float *x, const float *w, float *y, size_t rows, size_t dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; float *yr = y + r * dim;
        double s = 0; for (size_t k = 0; k < dim; k++) s += (double)xr[k] * xr[k];
        float rs = 1.0f / sqrtf((float)(s / (double)dim) + eps);
        for (size_t k = 0; k < dim; k++) { float t = xr[k] * rs; yr[k] = t * w[k]; }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void rmsnorm_avx2(const float *x, const float *w, float *y, size_t rows, size_t dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; float *yr = y + r * dim;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0; size_t k = 0;
        for (; k + 16 <= dim; k += 16) {
            __m256 a = _mm256_loadu_ps(xr + k), c = _mm256_loadu_ps(xr + k + 8);
            s0 = _mm256_fmadd_ps(a, a, s0); s1 = _mm256_fmadd_ps(c, c, s1);
        }
        for (; k + 8 <= dim; k += 8) { __m256 a = _mm256_loadu_ps(xr + k); s0 = _mm256_fmadd_ps(a, a, s0); }
        double s = sq_hsum256(_mm256_add_ps(s0, s1)); for (; k < dim; k++) s += (double)xr[k] * xr[k];
        float rs = 1.0f / sqrtf((float)(s / (double)dim) + eps);
        __m256 v = _mm256_set1_ps(rs); k = 0;
        for (; k + 8 <= dim; k += 8)
            _mm256_storeu_ps(yr + k, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + k), v), _mm256_loadu_ps(w + k)));
        for (; k < dim; k++) { float t = xr[k] * rs; yr[k] = t * w[k]; }
    }
}

void sq_rmsnorm(const float *x, const float *w, float *y, size_t rows, size_t dim, float eps) {
    if (sq_has_avx2_fma()) rmsnorm_avx2(x, w, y, rows, dim, eps); else sq_rmsnorm_ref(x, w, y, rows, dim, eps);
}

/* ---------------- element-wise ---------------- */

void sq_add_ref(float *y, const float *x, size_t n) { for (size_t i = 0; i < n; i++) y[i] += x[i]; }

__attribute__((target("avx2,fma,f16c")))
static void add_avx2(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] += x[i];
}
void sq_add(float *y, const float *x, size_t n) { if (sq_has_avx2_fma()) add_avx2(y, x, n); else sq_add_ref(y, x, n); }

void sq_add_bias(float *y, const float *bias, size_t rows, size_t dim) {
    for (size_t r = 0; r < rows; r++) sq_add(y + r * dim, bias, dim);
}

void sq_gelu_erf(const float *x, float *y, size_t n) {
    const float inv_sqrt2 = 0.70710678118654752440f;
    for (size_t i = 0; i < n; i++) { float v = x[i]; y[i] = 0.5f * v * (1.0f + erff(v * inv_sqrt2)); }
}

void sq_silu_mul(const float *a, const float *g, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) { float v = g[i]; float s = v / (1.0f + expf(-v)); y[i] = a[i] * s; }
}

void sq_softmax_rows_ref(float *x, size_t rows, size_t cols, size_t ld) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        float m = -INFINITY; for (size_t k = 0; k < cols; k++) if (xr[k] > m) m = xr[k];
        float s = 0; for (size_t k = 0; k < cols; k++) { float e = expf(xr[k] - m); xr[k] = e; s += e; }
        float inv = 1.0f / s;
        for (size_t k = 0; k < cols; k++) xr[k] *= inv;
    }
}

/* exp for x <= ~88 (Cephes expf scheme: 2^n * P(r), r = x - n ln2 in two parts); max relative error
   about 2 ulp, exact 0 below -87.3 (where expf is subnormal; softmax terms that small vanish). */
__attribute__((target("avx2,fma,f16c")))
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(x, hi); x = _mm256_max_ps(x, lo);
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(n));
    return _mm256_andnot_ps(under, y);
}

__attribute__((target("avx2,fma,f16c")))
static void softmax_rows_avx2(float *x, size_t rows, size_t cols, size_t ld) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        size_t k = 0;
        __m256 vm = _mm256_set1_ps(-INFINITY);
        for (; k + 8 <= cols; k += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(xr + k));
        float mv[8]; _mm256_storeu_ps(mv, vm);
        float m = -INFINITY; for (int i = 0; i < 8; i++) if (mv[i] > m) m = mv[i];
        for (; k < cols; k++) if (xr[k] > m) m = xr[k];
        __m256 vmax = _mm256_set1_ps(m), vs = _mm256_setzero_ps();
        for (k = 0; k + 8 <= cols; k += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(xr + k), vmax));
            _mm256_storeu_ps(xr + k, e); vs = _mm256_add_ps(vs, e);
        }
        float s = sq_hsum256(vs);
        for (; k < cols; k++) { float e = expf(xr[k] - m); xr[k] = e; s += e; }
        float inv = 1.0f / s;
        __m256 vi = _mm256_set1_ps(inv);
        for (k = 0; k + 8 <= cols; k += 8) _mm256_storeu_ps(xr + k, _mm256_mul_ps(_mm256_loadu_ps(xr + k), vi));
        for (; k < cols; k++) xr[k] *= inv;
    }
}

void sq_softmax_rows(float *x, size_t rows, size_t cols, size_t ld) {
    if (sq_has_avx2_fma()) softmax_rows_avx2(x, rows, cols, ld); else sq_softmax_rows_ref(x, rows, cols, ld);
}

#pragma STDC FP_CONTRACT OFF
void sq_rotary_neox(float *x, size_t tokens, size_t heads, size_t dim, size_t stride,
                    const float *cos_t, const float *sin_t, const float *scale) {
    size_t half = dim / 2;
    for (size_t t = 0; t < tokens; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        float sc = scale ? scale[t] : 1.0f;
        for (size_t h = 0; h < heads; h++) {
            float *v = x + t * stride + h * dim;
            for (size_t j = 0; j < half; j++) {
                float a = v[j], b = v[j + half];
                float lo = a * c[j] + (-b) * s[j];
                float hi = b * c[j] + a * s[j];
                v[j] = lo * sc; v[j + half] = hi * sc;
            }
        }
    }
}
