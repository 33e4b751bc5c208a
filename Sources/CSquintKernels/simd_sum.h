// Private to the C kernels: the AVX2 horizontal sum every kernel's scalar twin mirrors (the 128-bit
// halves added, then movehl, then movehdup: ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7))).
#ifndef SQUINT_SIMD_SUM_H
#define SQUINT_SIMD_SUM_H
#include <immintrin.h>

__attribute__((target("avx2,fma,f16c")))
static inline float sq_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
