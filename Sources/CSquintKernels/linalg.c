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

// ---------------------------------------------------------------------------------------------------
// Float64 Cholesky with an AVX-512 trailing update (see squint_linalg.h).
//
// Right-looking, blocked by NB = 256 columns, column-major, lower. Per block column k:
//   1. the NB x NB diagonal block is factored by LAPACK's dpotrf,
//   2. the panel below it is solved against it by BLAS's dtrsm (X L^T = P),
//   3. the trailing lower triangle is updated, A22 -= P P^T, by the kernel below.
// Steps 1-2 are OpenBLAS's own routines; step 3 (n^3/3 of the n^3/3 + O(n^2 NB) flops) accumulates
// every element's NB products from zero in k order with one FMA chain and subtracts the sum from the
// element once. That is what OpenBLAS 0.3.21's blocked dpotrf does for n > 1024, where it blocks by
// GEMM_Q = 256 on one thread or several (smaller matrices, which it blocks by n/4, go to dpotrf as a
// whole), so the factor is bit-identical to dpotrf's (CholeskyAVX512Tests) at AVX-512 speed.
//
// Kernel: 24 x 8 register tile (24 zmm accumulators), panels packed once per step into 24-row and
// 8-row micro-panels [k][24] / [k][8]; row blocks of MC = 384 rows (a 768 KB packed A block that stays
// in a 1 MB L2) are handed to the threads from the bottom up (the biggest first); the C tile is
// prefetched before the k loop (C streams from memory once per step).

#include "isa.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
void dtrsm_(const char *side, const char *uplo, const char *transa, const char *diag, const int *m, const int *n,
            const double *alpha, const double *a, const int *lda, double *b, const int *ldb, size_t, size_t, size_t,
            size_t);

enum { CHOL_NB = 256, CHOL_MR = 24, CHOL_NR = 8, CHOL_MC = 384 };

int sq_cpu_has_avx512f(void) {
    __builtin_cpu_init();
    return sq_cpu_supports("avx512f");
}

// C (column-major, ldc; rows x cols, at most 24 x 8) -= A B^T for packed panels ap [kc][24], bp [kc][8],
// touching only elements on or below the diagonal: row i, column j with diag + i >= j (diag = row0 - col0).
SQ_TARGET_AVX512
static void chol_kernel_24x8(size_t kc, const double *ap, const double *bp, double *c, size_t ldc, size_t rows,
                             size_t cols, ptrdiff_t diag) {
    for (size_t j = 0; j < cols; j++) {
        const char *p = (const char *)(c + j * ldc);
        _mm_prefetch(p, _MM_HINT_T0);
        _mm_prefetch(p + 64, _MM_HINT_T0);
        _mm_prefetch(p + 128, _MM_HINT_T0);
        _mm_prefetch(p + 191, _MM_HINT_T0);
    }
    __m512d z = _mm512_setzero_pd();
    __m512d c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z,
            c32 = z, c40 = z, c41 = z, c42 = z, c50 = z, c51 = z, c52 = z, c60 = z, c61 = z, c62 = z, c70 = z,
            c71 = z, c72 = z;
    for (size_t k = 0; k < kc; k++) {
        __m512d a0 = _mm512_load_pd(ap), a1 = _mm512_load_pd(ap + 8), a2 = _mm512_load_pd(ap + 16), b;
#define SQ_CHOL_STEP(J)                                                                                    \
    b = _mm512_set1_pd(bp[J]);                                                                             \
    c##J##0 = _mm512_fmadd_pd(a0, b, c##J##0);                                                             \
    c##J##1 = _mm512_fmadd_pd(a1, b, c##J##1);                                                             \
    c##J##2 = _mm512_fmadd_pd(a2, b, c##J##2);
        SQ_CHOL_STEP(0) SQ_CHOL_STEP(1) SQ_CHOL_STEP(2) SQ_CHOL_STEP(3)
        SQ_CHOL_STEP(4) SQ_CHOL_STEP(5) SQ_CHOL_STEP(6) SQ_CHOL_STEP(7)
#undef SQ_CHOL_STEP
        ap += CHOL_MR;
        bp += CHOL_NR;
    }
    __m512d acc[CHOL_NR][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32},
                               {c40, c41, c42}, {c50, c51, c52}, {c60, c61, c62}, {c70, c71, c72}};
    int interior = rows == CHOL_MR && cols == CHOL_NR && diag >= CHOL_NR - 1;
    for (size_t j = 0; j < cols; j++) {
        double *cj = c + j * ldc;
        for (int v = 0; v < 3; v++) {
            if (interior) {
                _mm512_storeu_pd(cj + 8 * v, _mm512_sub_pd(_mm512_loadu_pd(cj + 8 * v), acc[j][v]));
                continue;
            }
            __mmask8 m = 0;
            for (int l = 0; l < 8; l++) {
                ptrdiff_t i = 8 * v + l;
                if ((size_t)i < rows && diag + i >= (ptrdiff_t)j) m |= (__mmask8)(1u << l);
            }
            if (m) _mm512_mask_storeu_pd(cj + 8 * v, m, _mm512_sub_pd(_mm512_maskz_loadu_pd(m, cj + 8 * v), acc[j][v]));
        }
    }
}

typedef struct {
    double *c;            // trailing matrix A22 (m x m, lower part), leading dimension ld
    const double *panel;  // P (m x kc), leading dimension ld
    size_t ld, m, kc, blocks;
    double *ap, *bp;      // packed P: 24-row and 8-row micro-panels
    atomic_size_t next;   // row blocks handed out so far
} chol_step;

// Micro-panels part, part + parts, ... of P into out[panel][k][w] (rows past m are zero).
static void chol_pack(const chol_step *s, size_t w, double *out, int part, int parts) {
    size_t panels = (s->m + w - 1) / w;
    for (size_t q = (size_t)part; q < panels; q += (size_t)parts) {
        double *o = out + q * w * s->kc;
        size_t i0 = q * w, rows = s->m - i0 < w ? s->m - i0 : w;
        for (size_t k = 0; k < s->kc; k++) {
            const double *src = s->panel + i0 + k * s->ld;
            size_t i = 0;
            for (; i < rows; i++) o[k * w + i] = src[i];
            for (; i < w; i++) o[k * w + i] = 0;
        }
    }
}

static void chol_update(chol_step *s) {
    for (;;) {
        size_t t = atomic_fetch_add(&s->next, 1);
        if (t >= s->blocks) break;
        size_t r0 = (s->blocks - 1 - t) * CHOL_MC, r1 = r0 + CHOL_MC < s->m ? r0 + CHOL_MC : s->m;
        for (size_t c0 = 0; c0 < r1; c0 += CHOL_NR) {
            size_t cols = s->m - c0 < CHOL_NR ? s->m - c0 : CHOL_NR;
            const double *b = s->bp + (c0 / CHOL_NR) * CHOL_NR * s->kc;
            size_t first = c0 > r0 ? c0 / CHOL_MR * CHOL_MR : r0;   // first micro-panel reaching the diagonal
            for (size_t ir = first; ir < r1; ir += CHOL_MR) {
                size_t rows = r1 - ir < CHOL_MR ? r1 - ir : CHOL_MR;
                chol_kernel_24x8(s->kc, s->ap + (ir / CHOL_MR) * CHOL_MR * s->kc, b, s->c + ir + c0 * s->ld, s->ld, rows,
                                 cols, (ptrdiff_t)ir - (ptrdiff_t)c0);
            }
        }
    }
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready, quit, parts;
    pthread_barrier_t start, packed, done;
    chol_step *step;
} chol_pool;

typedef struct { chol_pool *pool; int part; } chol_worker_arg;

static void chol_step_part(chol_pool *p, int part) {
    chol_pack(p->step, CHOL_MR, p->step->ap, part, p->parts);
    chol_pack(p->step, CHOL_NR, p->step->bp, part, p->parts);
    if (p->parts > 1) pthread_barrier_wait(&p->packed);
    chol_update(p->step);
}

static void *chol_worker(void *arg) {
    chol_worker_arg *w = arg;
    chol_pool *p = w->pool;
    pthread_mutex_lock(&p->lock);                  // wait until the barriers exist
    while (!p->ready) pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    for (;;) {
        pthread_barrier_wait(&p->start);
        if (p->quit) break;
        chol_step_part(p, w->part);
        pthread_barrier_wait(&p->done);
    }
    return NULL;
}

int sq_dpotrf_lower_avx512(double *a, size_t n, int threads) {
    if (!sq_cpu_has_avx512f() || n > (size_t)INT32_MAX) return -1;
    if (n <= 4 * CHOL_NB) {
        // OpenBLAS blocks matrices this small by n/4 (or n/2 threaded), not by 256: let it factor them.
        int nn = (int)n, status = 0;
        dpotrf_("L", &nn, a, &nn, &status, 1);
        return status;
    }
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    size_t cap = ((n + CHOL_MR - 1) / CHOL_MR) * CHOL_MR * CHOL_NB;
    double *ap = aligned_alloc(64, cap * sizeof(double)), *bp = aligned_alloc(64, cap * sizeof(double));
    if (!ap || !bp) {
        free(ap); free(bp);
        return -1;
    }
    chol_pool pool = {.ready = 0, .quit = 0};
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.cond, NULL);
    pthread_t tid[64];
    chol_worker_arg args[64];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        args[started] = (chol_worker_arg){.pool = &pool, .part = started + 1};
        if (pthread_create(&tid[started], NULL, chol_worker, &args[started]) != 0) break;
        started++;
    }
    pool.parts = started + 1;                      // fewer threads if some could not be created
    pthread_barrier_init(&pool.start, NULL, (unsigned)pool.parts);
    pthread_barrier_init(&pool.packed, NULL, (unsigned)pool.parts);
    pthread_barrier_init(&pool.done, NULL, (unsigned)pool.parts);
    pthread_mutex_lock(&pool.lock);
    pool.ready = 1;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);

    int info = 0, ld = (int)n;
    for (size_t k = 0; k < n; k += CHOL_NB) {
        size_t b = n - k < CHOL_NB ? n - k : CHOL_NB;
        int bi = (int)b, status = 0;
        double *diag = a + k + k * n;
        dpotrf_("L", &bi, diag, &ld, &status, 1);
        if (status != 0) {
            info = (int)k + status;
            break;
        }
        size_t m = n - k - b;
        if (m == 0) break;
        int mi = (int)m;
        double one = 1;
        double *panel = diag + b;
        dtrsm_("R", "L", "T", "N", &mi, &bi, &one, diag, &ld, panel, &ld, 1, 1, 1, 1);
        chol_step step = {.c = panel + b * n, .panel = panel, .ld = n, .m = m, .kc = b,
                          .blocks = (m + CHOL_MC - 1) / CHOL_MC, .ap = ap, .bp = bp};
        atomic_init(&step.next, 0);
        pool.step = &step;
        if (pool.parts > 1) pthread_barrier_wait(&pool.start);
        chol_step_part(&pool, 0);
        if (pool.parts > 1) pthread_barrier_wait(&pool.done);
    }
    if (started > 0) {
        pool.quit = 1;
        pthread_barrier_wait(&pool.start);
        for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    }
    pthread_barrier_destroy(&pool.start);
    pthread_barrier_destroy(&pool.packed);
    pthread_barrier_destroy(&pool.done);
    pthread_cond_destroy(&pool.cond);
    pthread_mutex_destroy(&pool.lock);
    free(ap);
    free(bp);
    return info;
}
