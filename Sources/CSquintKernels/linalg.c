// See include/squint_linalg.h.
#include "squint_linalg.h"

void sq_reverse_f32_to_f64(const float *src, double *dst, size_t count) {
    const float *s = src + count - 1;
    for (size_t k = 0; k < count; k++) dst[k] = (double)s[-(ptrdiff_t)k];
}

void sq_reverse_f64_to_f32(const double *src, float *dst, size_t count) {
    const double *s = src + count - 1;
    for (size_t k = 0; k < count; k++) dst[k] = (float)s[-(ptrdiff_t)k];
}

#define REVERSE_INPLACE(NAME, T)                                                 \
    void NAME(T *x, size_t count) {                                              \
        for (size_t i = 0, j = count; i + 1 < j; i++) {                          \
            j--;                                                                 \
            T t = x[i]; x[i] = x[j]; x[j] = t;                                   \
        }                                                                        \
    }
REVERSE_INPLACE(sq_reverse_f32_inplace, float)
REVERSE_INPLACE(sq_reverse_f64_inplace, double)

enum { TILE = 64 };

void sq_upper_col_to_row_f32_inplace(float *x, size_t n) {
    // U(r, c), r < c, sits at x[c*n + r] (column-major); row-major wants it at x[r*n + c], where the
    // column-major array holds the (unused) strictly lower part. Swap the pair, zero the lower slot.
    for (size_t r0 = 0; r0 < n; r0 += TILE) {
        size_t r1 = r0 + TILE < n ? r0 + TILE : n;
        for (size_t c0 = r0; c0 < n; c0 += TILE) {
            size_t c1 = c0 + TILE < n ? c0 + TILE : n;
            for (size_t r = r0; r < r1; r++) {
                float *row = x + r * n;
                for (size_t c = (c0 > r + 1 ? c0 : r + 1); c < c1; c++) {
                    row[c] = x[c * n + r];
                    x[c * n + r] = 0.0f;
                }
            }
        }
    }
}

void sq_upper_col_to_row_f64_to_f32(const double *u, float *h, size_t n) {
    for (size_t r0 = 0; r0 < n; r0 += TILE) {
        size_t r1 = r0 + TILE < n ? r0 + TILE : n;
        for (size_t c0 = 0; c0 < n; c0 += TILE) {
            size_t c1 = c0 + TILE < n ? c0 + TILE : n;
            for (size_t r = r0; r < r1; r++) {
                float *row = h + r * n;
                for (size_t c = c0; c < c1; c++) row[c] = c >= r ? (float)u[r + c * n] : 0.0f;
            }
        }
    }
}
