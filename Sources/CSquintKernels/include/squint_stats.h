// Streaming tensor statistics for `squint inspect --stats`, read straight from the mapped file.
#ifndef SQUINT_STATS_H
#define SQUINT_STATS_H
#include "squint_kernels.h"
#ifdef __cplusplus
extern "C" {
#endif
/// Accumulate n elements of a BF16 / F16 / F32 array into s (NaN and +-Inf counted, excluded from
/// min/max/sums). AVX2 when available; the _ref versions are the scalar definitions.
void sq_stats_bf16(const uint16_t *x, size_t n, sq_stats *s);
void sq_stats_f16(const uint16_t *x, size_t n, sq_stats *s);
void sq_stats_f32_fast(const float *x, size_t n, sq_stats *s);
void sq_stats_bf16_ref(const uint16_t *x, size_t n, sq_stats *s);
void sq_stats_f16_ref(const uint16_t *x, size_t n, sq_stats *s);
#ifdef __cplusplus
}
#endif
#endif
