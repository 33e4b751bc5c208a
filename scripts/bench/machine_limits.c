// Measures this machine's limits that Squint's hot paths are judged against (docs/PERFORMANCE.md):
// OpenBLAS sgemm FLOP/s and memory read bandwidth, on 1 and 2 threads.
// Build: gcc -O3 -mavx2 -mfma -fopenmp machine_limits.c -lopenblas -o /tmp/machine_limits
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86_64-linux-gnu/cblas.h>
extern void openblas_set_num_threads(int);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static double sgemm_gflops(int n, int threads, int reps) {
    openblas_set_num_threads(threads);
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++) { a[i] = (i % 7) * 0.1f; b[i] = (i % 5) * 0.2f; c[i] = 0; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = now() - t; if (t < best) best = t;
    }
    free(a); free(b); free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

static double read_gbps(float *x, size_t n, int threads, int reps) {
    double best = 1e30; volatile float sink = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        float total = 0;
        #pragma omp parallel for num_threads(threads) reduction(+:total)
        for (int part = 0; part < threads; part++) {
            size_t lo = n / threads * part, hi = part == threads - 1 ? n : n / threads * (part + 1);
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (size_t i = lo; i + 32 <= hi; i += 32) {
                s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
                s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
                s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
                s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
            }
            float t8[8]; _mm256_storeu_ps(t8, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
            for (int k = 0; k < 8; k++) total += t8[k];
        }
        sink += total;
        t = now() - t; if (t < best) best = t;
    }
    return n * 4.0 / best / 1e9;
}

int main(void) {
    size_t n = (size_t)2 << 28;   /* 2 GiB of float32 */
    float *x = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = (float)(i & 1023);   /* real pages, not the shared zero page */
    for (int round = 0; round < 2; round++) {   /* interleaved: 2-thread timings swing */
        printf("round %d: sgemm 4096^3 1T %.1f GFLOP/s, 2T %.1f GFLOP/s; read 2 GiB 1T %.1f GB/s, 2T %.1f GB/s\n",
               round, sgemm_gflops(4096, 1, 3), sgemm_gflops(4096, 2, 3), read_gbps(x, n, 1, 3), read_gbps(x, n, 2, 3));
        fflush(stdout);
    }
    free(x);
    return 0;
}
