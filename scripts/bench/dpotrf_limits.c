// Float64 limits for the Cholesky in fasterquant: OpenBLAS dpotrf and dgemm at size n, three rounds.
// gcc -O2 scripts/bench/dpotrf_limits.c -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -o /tmp/dl
// OPENBLAS_NUM_THREADS=1 /tmp/dl 6000; OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 /tmp/dl 6000
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void dpotrf_(const char *, const int *, double *, const int *, int *, size_t);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 6000;
    double *a = malloc(8L * n * n), *h = malloc(8L * n * n), *w = malloc(8L * n * n);
    for (long i = 0; i < (long)n * n; i++) a[i] = rand() / (double)RAND_MAX - 0.5;
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, n, n, 1.0 / n, a, n, 0.0, h, n);
    for (int i = 0; i < n; i++) h[(long)i * n + i] += 0.1;
    for (int r = 0; r < 3; r++) {
        for (long i = 0; i < (long)n * n; i++) w[i] = h[i];
        double t = now();
        int info;
        dpotrf_("L", &n, w, &n, &info, 1);
        double dt = now() - t;
        printf("n=%d dpotrf %.2f s %.1f GFLOP/s info %d\n", n, dt, (double)n * n * n / 3 / dt / 1e9, info);
    }
    double t = now();
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, h, n, h, n, 0.0, w, n);
    printf("dgemm %.1f GFLOP/s\n", 2.0 * n * n * n / (now() - t) / 1e9);
    return 0;
}
