// ggml block types of GGUF files (Formats/GGUF.md §5): dequantisation to float32 and the reference
// round-to-nearest quantisers. Type arguments are ggml type ids (0 F32, 1 F16, 2 Q4_0, 3 Q4_1,
// 6 Q5_0, 7 Q5_1, 8 Q8_0, 10 Q2_K, 11 Q3_K, 12 Q4_K, 13 Q5_K, 14 Q6_K, 30 BF16).
#ifndef SQUINT_GGUF_H
#define SQUINT_GGUF_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Elements per block and bytes per block of a ggml type; 0 for a type these kernels do not know.
size_t sq_gguf_block_size(int type);
size_t sq_gguf_block_bytes(int type);

/// Kernel levels for sq_gguf_dequant_level.
#define SQ_GGUF_SCALAR 0
#define SQ_GGUF_AVX2 1

/// Dequantise `nblocks` consecutive blocks of `type` at `src` into nblocks * block_size floats.
/// Every level gives bit-identical output (float32, one rounding per operation in the spec's order,
/// no FMA). Returns 0, or -1 for an unknown type or a level this CPU cannot run.
int sq_gguf_dequant_level(int type, const void *src, float *dst, size_t nblocks, int level);
/// The fastest level this CPU runs.
int sq_gguf_dequant(int type, const void *src, float *dst, size_t nblocks);

/// Quantise nblocks * block_size floats to `type` blocks at `dst` (llama.cpp's reference
/// round-to-nearest). Types: F32, F16, BF16, Q8_0, Q4_0, Q4_1. Returns 0, or -1 for another type.
int sq_gguf_quantize(int type, const float *src, void *dst, size_t nblocks);

#ifdef __cplusplus
}
#endif
#endif
