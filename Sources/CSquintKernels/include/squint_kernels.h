// Hot kernels of Squint in C. Each has a scalar reference (suffix _ref) and an AVX2/FMA version
// selected at run time (cpuid), so the package builds for baseline x86-64.
#ifndef SQUINT_KERNELS_H
#define SQUINT_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has AVX2 and FMA (and the fast paths are used), else 0.
int sq_has_avx2_fma(void);

/// Widening conversions to float32 (exact).
void sq_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void sq_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void sq_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
void sq_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n);

/// Narrowing conversions, round to nearest, ties to even (NaN stays NaN).
void sq_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void sq_f32_to_f16(const float *src, uint16_t *dst, size_t n);

/// Streaming statistics over n float32 values: min, max, sum and sum of squares (double), and counts
/// of NaN and +-Inf. NaN and Inf are excluded from min/max/sums.
typedef struct {
    double sum, sumsq;
    float min, max;
    uint64_t nan_count, inf_count, finite_count;
} sq_stats;
void sq_stats_init(sq_stats *s);
void sq_stats_f32(const float *x, size_t n, sq_stats *s);
void sq_stats_merge(sq_stats *into, const sq_stats *from);

/// CRC-32 as zip defines it (reflected polynomial 0xEDB88320, init/xorout 0xFFFFFFFF). Pass the
/// previous return value as `crc` to continue a stream (0 to start). sq_crc32 uses slicing-by-8;
/// sq_crc32_ref is the bitwise reference.
uint32_t sq_crc32(uint32_t crc, const void *data, size_t n);
uint32_t sq_crc32_ref(uint32_t crc, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif

#ifndef SQUINT_SYNTH_H
#define SQUINT_SYNTH_H
#ifdef __cplusplus
extern "C" {
#endif
/// Synthetic weights (shared/reference/SYNTHETIC_WEIGHTS.md), elements [start, start+n) of a tensor
/// whose stream starts at `state0` (= seed XOR fnv1a64(name)). Element k uses the (k+1)-th SplitMix64
/// output, so any chunk can be generated independently. kind 0: r*a; kind 1: 1 + r*a (norm weights).
/// Output is float32 (`dst_f32`, may be NULL) and/or bf16 round-to-nearest-even (`dst_bf16`, may be NULL).
void sq_synth(uint64_t state0, uint64_t start, size_t n, float a, int kind, float *dst_f32, uint16_t *dst_bf16);
#ifdef __cplusplus
}
#endif
#endif
