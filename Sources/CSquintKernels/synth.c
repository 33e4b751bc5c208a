#include "squint_kernels.h"
#include <string.h>
#pragma STDC FP_CONTRACT OFF

static inline uint16_t f32_to_bf16_rne(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void sq_synth(uint64_t state0, uint64_t start, size_t n, float a, int kind, float *dst_f32, uint16_t *dst_bf16) {
    const uint64_t gamma = 0x9E3779B97F4A7C15ull;
    uint64_t state = state0 + start * gamma;
    const float two_m24 = 5.9604644775390625e-08f;   /* 2^-24 */
    for (size_t i = 0; i < n; i++) {
        state += gamma;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z = z ^ (z >> 31);
        float u = (float)(z >> 40) * two_m24;          /* exact */
        float r = u * 2.0f - 1.0f;                     /* exact */
        float prod = r * a;                            /* one rounding (FP_CONTRACT off) */
        float v = kind == 1 ? 1.0f + prod : prod;
        if (dst_f32) dst_f32[i] = v;
        if (dst_bf16) dst_bf16[i] = f32_to_bf16_rne(v);
    }
}
