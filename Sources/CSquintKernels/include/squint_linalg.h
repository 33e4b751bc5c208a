// Copies around the LAPACK calls of GPTQ's inverse-Hessian factorisation (SquintQuant.LinearAlgebra).
// Plain loops over contiguous (forward or reversed) memory, in place where possible: fresh memory is
// slow to touch the first time on this machine kind, so no n x n scratch is allocated.
#ifndef SQUINT_LINALG_H
#define SQUINT_LINALG_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// dst[k] = src[count-1-k] (widened / narrowed / copied).
void sq_reverse_f32_to_f64(const float *src, double *dst, size_t count);
void sq_reverse_f64_to_f32(const double *src, float *dst, size_t count);
/// x[k] <-> x[count-1-k], in place.
void sq_reverse_f32_inplace(float *x, size_t count);
void sq_reverse_f64_inplace(double *x, size_t count);

/// In place: x holds an n x n column-major upper-triangular U (anything below the diagonal); on
/// return x holds U row-major, with zeros below the diagonal. Cache-sized tiles.
void sq_upper_col_to_row_f32_inplace(float *x, size_t n);
/// The same from a float64 column-major U into a float32 row-major h (h and u distinct).
void sq_upper_col_to_row_f64_to_f32(const double *u, float *h, size_t n);

/// Non-zero when this CPU runs AVX-512F.
int sq_cpu_has_avx512f(void);

/// LAPACK dpotrf("L") of the n x n column-major a (lda = n) with the trailing updates on AVX-512 and up
/// to `threads` threads; the diagonal blocks and panel solves are OpenBLAS's dpotrf/dtrsm. The factor is
/// bit-identical to dpotrf's (OpenBLAS 0.3.21). Returns 0, or k > 0 when the leading minor of order k is
/// not positive definite (as LAPACK's info), or -1 when it cannot run (no AVX-512, no memory): the
/// caller then uses dpotrf. The strictly upper triangle is not touched.
int sq_dpotrf_lower_avx512(double *a, size_t n, int threads);

#ifdef __cplusplus
}
#endif
#endif
