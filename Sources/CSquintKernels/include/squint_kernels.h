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

/// The OpenBLAS kernel set in use (e.g. "Haswell") and whether Squint pinned it at start-up
/// (blas_pin.c: the same bits on every machine; $SQUINT_BLAS_CORE=native keeps OpenBLAS's choice).
const char *sq_blas_core_name(void);
int sq_blas_pinned(void);
/// Switches OpenBLAS's kernel set between calls (none may be in flight): fast = 0, the reproducible
/// Haswell set (as at start-up); fast = 1, the SkylakeX (AVX-512) set on CPUs that run it, else the
/// same. A no-op when $SQUINT_BLAS_CORE is set or the CPU lacks AVX2/FMA. Returns 1 if it switched.
int sq_blas_select(int fast);
/// $SQUINT_THREADS if set, else the CPUs this process may use; OpenBLAS is set to it at start-up.
int sq_default_threads(void);

/// Squint's thread pool (pool.c) for short parallel loops: runs fn(ctx, i) for every i in [0, n),
/// spread over the calling thread and up to threads - 1 workers that stay awake briefly between
/// calls. Returns 0 when done, or -1 without running anything when the pool is busy (a run on another
/// thread, or a call from inside an iteration): the caller then runs the loop another way.
typedef void (*sq_pool_fn)(void *ctx, int64_t i);
int sq_pool_run(int64_t n, int threads, sq_pool_fn fn, void *ctx);

/// SIGINT/SIGTERM for writing commands (interrupt.c): install records the first signal and wakes
/// sq_interrupt_wait; sq_interrupt_requested is that signal (0 while none arrived, or after
/// sq_interrupt_clear). 0 / -1 on failure.
int sq_interrupt_install(void);
int sq_interrupt_requested(void);
void sq_interrupt_clear(void);
int sq_interrupt_wait(void);

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

#ifndef SQUINT_NN_H
#define SQUINT_NN_H
#ifdef __cplusplus
extern "C" {
#endif
/// Neural-network kernels of the float32 forward pass (SquintTensor wraps them). Rows are contiguous
/// unless a stride is given. Each kernel with an AVX2/FMA path has a scalar `_ref` twin that tests
/// compare against; the dispatching name picks AVX2 when sq_has_avx2_fma().

/// Matrix-vector product for one token: y[r] = sum_k W[r*in + k] * x[k] (+ bias[r]), for rows
/// r0 <= r < r1 (callers split the row range across threads). W is bf16 / f16 bits [out, in];
/// bias may be NULL. Memory-bound: W is streamed once, widened in registers.
void sq_matvec_bf16(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1);
void sq_matvec_bf16_ref(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1);
void sq_matvec_f16(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1);
void sq_matvec_f16_ref(const uint16_t *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1);
/// The same for float32 weights W [out, in] (decode of models dequantised to float32 at load).
void sq_matvec_f32(const float *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1);
void sq_matvec_f32_ref(const float *W, const float *x, const float *bias, float *y, size_t in, size_t r0, size_t r1);

/// LayerNorm over the last dim of x [rows, dim]: (x - mean) / sqrt(var + eps) * w + b, biased
/// variance (torch.nn.LayerNorm). x and y may alias.
void sq_layernorm(const float *x, const float *w, const float *b, float *y, size_t rows, size_t dim, float eps);
void sq_layernorm_ref(const float *x, const float *w, const float *b, float *y, size_t rows, size_t dim, float eps);

/// Qwen RMSNorm over the last dim of x [rows, dim]: (x * rsqrt(mean(x^2) + eps)) * w, in that order
/// (the official code rounds x * rsqrt(...) to the model dtype before multiplying by w). x, y may alias.
void sq_rmsnorm(const float *x, const float *w, float *y, size_t rows, size_t dim, float eps);
void sq_rmsnorm_ref(const float *x, const float *w, float *y, size_t rows, size_t dim, float eps);

/// y += x (n elements).
void sq_add(float *y, const float *x, size_t n);
void sq_add_ref(float *y, const float *x, size_t n);

/// y[i] += bias[i % dim] for y [rows, dim].
void sq_add_bias(float *y, const float *bias, size_t rows, size_t dim);

/// Exact GELU (nn.GELU(), approximate='none'): 0.5 * x * (1 + erf(x / sqrt(2))), in place allowed.
void sq_gelu_erf(const float *x, float *y, size_t n);

/// SwiGLU as Qwen writes it: y = a * silu(g) = a * g / (1 + exp(-g)). y may alias a or g.
void sq_silu_mul(const float *a, const float *g, float *y, size_t n);

/// Row-wise softmax in place over the first `cols` entries of each row of x [rows, ld]:
/// max-subtracted, exp, divided by the sum (float32 throughout, like torch's CPU softmax). The AVX2
/// path uses a polynomial exp (<= ~2 ulp, like torch's own vectorised exp); _ref uses libm expf.
void sq_softmax_rows(float *x, size_t rows, size_t cols, size_t ld);
void sq_softmax_rows_ref(float *x, size_t rows, size_t cols, size_t ld);

/// Half-split (NeoX) rotary embedding in place: for each token t and head h, the head vector v =
/// x[t*stride + h*dim ...] of `dim` values becomes v*cos + rotate_half(v)*sin with
/// rotate_half(v) = cat(-v[dim/2:], v[:dim/2]). cos/sin are [tokens, dim/2] (the table's halves
/// are equal, cat(freqs, freqs)). `scale` multiplies the result (logn attention; 1 otherwise).
void sq_rotary_neox(float *x, size_t tokens, size_t heads, size_t dim, size_t stride,
                    const float *cos_t, const float *sin_t, const float *scale);
#ifdef __cplusplus
}
#endif
#endif

#ifndef SQUINT_IO_H
#define SQUINT_IO_H
#ifdef __cplusplus
extern "C" {
#endif
/// Starts asynchronous writeback of [offset, offset+count) of a file (Linux sync_file_range with
/// SYNC_FILE_RANGE_WRITE; a no-op elsewhere). Returns 0 or -1 with errno; failures are harmless.
int sq_start_writeback(int fd, int64_t offset, int64_t count);
#ifdef __cplusplus
}
#endif
#endif
