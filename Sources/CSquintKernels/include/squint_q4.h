// Int4 linear kernels for Squint's SQ4 layout (Formats/SQUINT_INT4.md §4). Each fast kernel has a
// scalar `_ref` twin; the dispatching entry point picks the level at run time (sq_q4_level: AVX-512,
// AVX2/FMA or scalar).
#ifndef SQUINT_Q4_H
#define SQUINT_Q4_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Codes per SQ4 block: 16 bytes, byte j holds code j (low nibble) and code j+16 (high nibble).
#define SQ_Q4_BLOCK 32

/// One quantized Linear W [out, in] in the SQ4 layout, as the kernels read it. Scales are given as
/// float32 (the file stores F16; the Swift wrapper widens them once at load, exactly).
/// W[o, k] = scales[o*groups + k/group_size] * (code(o, k) - zero(o, k/group_size)) where k is the
/// (possibly act-order permuted) input position; x must be permuted the same way by the caller.
typedef struct {
    const uint8_t *codes;   // [out][in/2] bytes, blocks of 32 codes (see SQ_Q4_BLOCK)
    const float *scales;    // [out][groups]
    const uint8_t *zeros;   // [out][groups], each 0...16; NULL = symmetric (every zero is 8)
    int64_t out, in;        // in % 32 == 0
    int64_t group_size;     // % 32 == 0, divides in
} sq_q4_matrix;

/// The 4-bit code of row o, input position k (pure function of the layout, used by tests and refs).
static inline unsigned sq_q4_code(const uint8_t *row_codes, int64_t k) {
    uint8_t b = row_codes[(k / 32) * 16 + (k % 16)];
    return (k % 32) < 16 ? (b & 0xF) : (b >> 4);
}

/// Dequantise rows [row0, row1) to float32: dst[(o-row0)*in + k] = scale * (float)(q - zero), one
/// rounding, so it equals torch's float32 `scale * (q - (zst + 1))` bit for bit. Fast and ref agree
/// bit for bit.
void sq_q4_dequant_rows(const sq_q4_matrix *w, int64_t row0, int64_t row1, float *dst);
void sq_q4_dequant_rows_ref(const sq_q4_matrix *w, int64_t row0, int64_t row1, float *dst);

/// y[o] = sum_k W[o,k] x[k] for o in [row0, row1) (decode path; x float32 [in], y indexed by o).
/// Level by level (sq_q4_matvec_f32_level below); the ref dequantises and accumulates in double.
void sq_q4_matvec_f32(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1);
void sq_q4_matvec_f32_ref(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1);

/// Kernel levels of the decode products. AVX512 needs AVX-512F (and AVX2/FMA); `$SQUINT_NO_AVX512`
/// (any non-empty value) turns it off, read at each call.
enum { SQ_Q4_SCALAR = 0, SQ_Q4_AVX2 = 1, SQ_Q4_AVX512 = 2 };
/// The level sq_q4_matvec_f32 / sq_q4_matvec_q8 use on this CPU now.
int sq_q4_level(void);
/// 1 when the CPU has AVX2/FMA and AVX-512 VL + VNNI (the int8 products' AVX512 level).
int sq_has_vnni(void);
/// sq_q4_matvec_f32 at a given level (SCALAR = the double-accumulating _ref). Returns 0, or -1 when
/// this CPU cannot run the level (or scratch memory for very wide rows cannot be had).
/// AVX2 sums per group s*(sum q*x) - s*z*(sum x) in 4x8 lanes; AVX512 looks each code up in the
/// group's table s*(c - z) and sums in 2-4 x 16 lanes (x permuted in place when in and group_size
/// are multiples of 128).
int sq_q4_matvec_f32_level(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1, int level);
/// The scalar twin of level AVX2 or AVX512: the same float operations in the same order (fmaf for
/// each FMA lane), so its result equals that level's bit for bit on any CPU. -1 for other levels.
int sq_q4_matvec_f32_twin(const sq_q4_matrix *w, const float *x, float *y, int64_t row0, int64_t row1, int level);

/// x quantised to int8 per block of 32 (llama.cpp's Q8_0 idea): d = max|x|/127, q = round(x/d).
/// Stored pair-interleaved to match a 32-byte load of two code blocks: for pair p (blocks A=2p,
/// B=2p+1) q[64p + 0..15] = A[0..15], [16..31] = B[0..15], [32..47] = A[16..31], [48..63] = B[16..31].
/// d8[8p + 0..3] = d_A, d8[8p + 4..7] = d_B (pre-broadcast for the AVX2 lanes); bsum[b] = sum of
/// block b's int8 values. Requires n % 64 == 0.
void sq_q8_quantize(const float *x, int64_t n, int8_t *q, float *d8, int32_t *bsum);

/// y[o] = sum over blocks of s_g * d_b * (sum q*xq - z * bsum_b) for o in [row0, row1).
/// Requires in % 64 == 0 and group_size % 64 == 0.
void sq_q4_matvec_q8(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                     float *y, int64_t row0, int64_t row1);
void sq_q4_matvec_q8_ref(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                         float *y, int64_t row0, int64_t row1);
/// sq_q4_matvec_q8 at a level: AVX2 (maddubs), AVX512 (VNNI vpdpbusd; needs AVX-512 VL + VNNI),
/// SCALAR (= _ref). The AVX2 and AVX512 levels give identical bits (same integer sums, same float
/// operations). Returns 0, or -1 when this CPU cannot run the level.
int sq_q4_matvec_q8_level(const sq_q4_matrix *w, const int8_t *xq, const float *d8, const int32_t *bsum,
                          float *y, int64_t row0, int64_t row1, int level);


/// An int8 matrix for 8-bit x 8-bit products (the lm_head of `run --int8-activations`; llama.cpp's
/// Q8_0 idea): per row and block of 32 weights d = max|w|/127, q = round(w/d) in [-127, 127], the
/// codes pair-interleaved exactly as sq_q8_quantize stores x. q [rows][in] bytes, d [rows][in/32].
/// Requires in % 64 == 0. Packs rows [row0, row1) of the float32 matrix w [rows][in].
void sq_q8_pack_rows(const float *w, int64_t in, int64_t row0, int64_t row1, int8_t *q, float *d);
/// y[o] = sum over pairs of 8 lanes of fma(isum_lane, d8_lane * dw_lane, acc_lane), the lanes summed
/// as the AVX2 horizontal sum does, for o in [row0, row1). Every level gives the same bits: the
/// integer sums are exact (|q| <= 127 on both sides: no int16 saturation in maddubs) and the float
/// operations are the same in the same order; the scalar level is the twin.
void sq_q8_matvec_q8(const int8_t *q, const float *d, int64_t in, const int8_t *xq, const float *d8,
                     float *y, int64_t row0, int64_t row1);
/// The same at a level (SCALAR, AVX2, AVX512 = VNNI). Returns 0, or -1 when this CPU cannot run it.
int sq_q8_matvec_q8_level(const int8_t *q, const float *d, int64_t in, const int8_t *xq, const float *d8,
                          float *y, int64_t row0, int64_t row1, int level);

/// Reads n bytes with 32-byte AVX2 loads and returns their sum as 64-bit lanes (a read-bandwidth
/// probe for benchmarks: what one core can stream when no work is done per byte).
uint64_t sq_read_bandwidth_probe(const void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
