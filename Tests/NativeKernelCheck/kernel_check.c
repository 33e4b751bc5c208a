// squint-kernel-check: Squint's SIMD kernels at every level this CPU offers, compared with their scalar
// twins (the same float operations in the same order: equal bits), the level-independent products
// (AVX2 and VNNI give equal bits) and the double-accumulating references (within a stated bound), and
// the AVX-512 Cholesky against LAPACK's dpotrf (equal bits). Plain C and static data, so it can run
// where the Swift test suite cannot: as the init process of a small Linux under an instruction-set
// emulator that has AVX-512 (scripts/avx512-bochs.sh, docs/RELIABILITY.md). It builds from the very
// sources and flags of the CSquintKernels target, so what runs is the compiler's own AVX-512 code.
//
// $SQUINT_EXPECT_LEVELS (e.g. "avx512f,vnni" or "avx512f,novnni") states which levels the CPU must
// offer: a CPU check that answers otherwise is a failure, not a skip.
//
// Output: one line per check ("ok ..." or "FAIL ..."), digests of the outputs of the scalar twins
// (the same on any correct x86-64 machine, so an emulator's run can be compared with the host's), and
// a last line "squint-kernel-check: N checks, F failed". Exit status 1 when anything failed.
#define _GNU_SOURCE
#include "squint_kernels.h"
#include "squint_linalg.h"
#include "squint_q4.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <termios.h>
#include <unistd.h>

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
void openblas_set_num_threads(int);
void cblas_dsyrk(int order, int uplo, int trans, int n, int k, double alpha, const double *a, int lda, double beta,
                 double *c, int ldc);

static int checks = 0, failures = 0;
// FNV-1a over the outputs that do not depend on the SIMD level: the Int4 twins, the int8 quantiser and
// int8 twin, LAPACK's factor (OpenBLAS pinned to its Haswell kernels on one thread, as Squint pins it).
enum { D_Q4, D_Q8, D_CHOL, D_COUNT };
static uint64_t digests[D_COUNT] = {1469598103934665603ull, 1469598103934665603ull, 1469598103934665603ull};
static int section = D_Q4;

static void check(int ok, const char *what, const char *detail) {
    checks++;
    if (!ok) failures++;
    printf("%s %s%s%s\n", ok ? "ok" : "FAIL", what, detail && *detail ? ": " : "", detail ? detail : "");
    fflush(stdout);
}

static void digest_bytes(const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++) { digests[section] ^= b[i]; digests[section] *= 1099511628211ull; }
}

static uint64_t rng_state;
static uint64_t next_u64(void) {   // SplitMix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }   // [0, 1)

static int same_bits(const float *a, const float *b, int64_t n, int64_t *first) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) { *first = i; return 0; }
    return 1;
}

static int expects(const char *level) {
    const char *e = getenv("SQUINT_EXPECT_LEVELS");
    if (!e) return -1;   // no expectation: whatever the CPU offers
    char key[32];
    snprintf(key, sizeof key, ",%s,", level);
    char list[256];
    snprintf(list, sizeof list, ",%s,", e);
    if (strstr(list, key)) return 1;
    snprintf(key, sizeof key, ",no%s,", level);
    return strstr(list, key) ? 0 : -1;
}

// ------------------------------------------------------------------ Int4 x float32 and Int4 x int8
typedef struct { int64_t out, in, gs; int asym; } shape;

static void q4_case(shape s, int have512, int have_vnni) {
    const int64_t groups = s.in / s.gs;
    uint8_t *codes = malloc((size_t)(s.out * s.in / 2));
    float *scales = malloc(sizeof(float) * (size_t)(s.out * groups));
    uint8_t *zeros = s.asym ? malloc((size_t)(s.out * groups)) : NULL;
    float *x = malloc(sizeof(float) * (size_t)s.in);
    float *y = malloc(sizeof(float) * (size_t)s.out), *t = malloc(sizeof(float) * (size_t)s.out);
    float *r = malloc(sizeof(float) * (size_t)s.out);
    for (int64_t i = 0; i < s.out * s.in / 2; i++) codes[i] = (uint8_t)next_u64();
    for (int64_t i = 0; i < s.out * groups; i++) {
        scales[i] = (float)(0.001 + 0.02 * uniform());
        if (zeros) zeros[i] = (uint8_t)(next_u64() % 17);
    }
    for (int64_t k = 0; k < s.in; k++) x[k] = (float)((2 * uniform() - 1) * (k % 7 == 0 ? 8.0 : 1.0));
    sq_q4_matrix w = {codes, scales, zeros, s.out, s.in, s.gs};
    char name[160], detail[200];
    int64_t first;

    // Bound for float32 sums against the double reference: each output is a sum of `in` products whose
    // weights s*(c - z) are rounded once; any order of float32 additions and FMAs is within
    // (in + 2) * 2^-24 * sum|w x| of the exact value (the standard gamma_n bound, n the chain length).
    double *absum = calloc((size_t)s.out, sizeof(double));
    for (int64_t o = 0; o < s.out; o++)
        for (int64_t k = 0; k < s.in; k++) {
            int z = zeros ? zeros[o * groups + k / s.gs] : 8;
            absum[o] += fabs((double)scales[o * groups + k / s.gs] * ((int)sq_q4_code(codes + o * (s.in / 2), k) - z) * x[k]);
        }

    sq_q4_matvec_f32_level(&w, x, r, 0, s.out, SQ_Q4_SCALAR);
    for (int level = SQ_Q4_AVX2; level <= SQ_Q4_AVX512; level++) {
        const char *ln = level == SQ_Q4_AVX2 ? "avx2" : "avx512";
        const int64_t row0 = s.out > 2 ? 1 : 0;   // a row range that does not start at 0
        snprintf(name, sizeof name, "q4 f32 %s out=%lld in=%lld gs=%lld %s", ln, (long long)s.out, (long long)s.in,
                 (long long)s.gs, s.asym ? "asym" : "sym");
        memset(t, 0xFF, sizeof(float) * (size_t)s.out);
        check(sq_q4_matvec_f32_twin(&w, x, t, row0, s.out, level) == 0, name, "twin ran");
        digest_bytes(t + row0, sizeof(float) * (size_t)(s.out - row0));
        memset(y, 0xFF, sizeof(float) * (size_t)s.out);
        int rc = sq_q4_matvec_f32_level(&w, x, y, row0, s.out, level);
        if (level == SQ_Q4_AVX512 && !have512) { check(rc == -1, name, "refused on a CPU without AVX-512F"); continue; }
        check(rc == 0, name, "level ran");
        if (rc != 0) continue;
        int same = same_bits(y + row0, t + row0, s.out - row0, &first);
        snprintf(detail, sizeof detail, same ? "equals its scalar twin bit for bit" : "row %lld: %a, twin %a",
                 (long long)(same ? 0 : first + row0), same ? 0.0 : y[first + row0], same ? 0.0 : t[first + row0]);
        check(same, name, detail);
        int within = 1;
        for (int64_t o = row0; o < s.out; o++)
            if (fabs((double)y[o] - (double)r[o]) > (double)(s.in + 2) * 0x1.0p-24 * absum[o]) within = 0;
        check(within, name, "within (in+2) 2^-24 sum|wx| of the double reference");
    }
    // The entry point the runtime calls gives the bits of the level sq_q4_level() names (AVX-512 when the
    // CPU has it and $SQUINT_NO_AVX512 is unset; main checks that level against the expectations).
    const int level = sq_q4_level();
    memset(y, 0xFF, sizeof(float) * (size_t)s.out);
    sq_q4_matvec_f32(&w, x, y, 0, s.out);
    snprintf(name, sizeof name, "q4 f32 dispatch in=%lld", (long long)s.in);
    if (level == SQ_Q4_SCALAR) sq_q4_matvec_f32_level(&w, x, t, 0, s.out, SQ_Q4_SCALAR);
    else sq_q4_matvec_f32_twin(&w, x, t, 0, s.out, level);
    check(same_bits(y, t, s.out, &first), name,
          level == SQ_Q4_AVX512 ? "the AVX-512 level's bits" : level == SQ_Q4_AVX2 ? "the AVX2 level's bits" : "the reference's bits");

    if (s.in % 64 == 0 && s.gs % 64 == 0) {
        int8_t *xq = malloc((size_t)s.in);
        float *d8 = malloc(sizeof(float) * (size_t)(s.in / 32 * 4));
        int32_t *bsum = malloc(sizeof(int32_t) * (size_t)(s.in / 32));
        sq_q8_quantize(x, s.in, xq, d8, bsum);
        digest_bytes(xq, (size_t)s.in);
        sq_q4_matvec_q8_level(&w, xq, d8, bsum, r, 0, s.out, SQ_Q4_SCALAR);
        snprintf(name, sizeof name, "q4 int8 out=%lld in=%lld gs=%lld %s", (long long)s.out, (long long)s.in,
                 (long long)s.gs, s.asym ? "asym" : "sym");
        memset(t, 0xFF, sizeof(float) * (size_t)s.out);
        check(sq_q4_matvec_q8_level(&w, xq, d8, bsum, t, 0, s.out, SQ_Q4_AVX2) == 0, name, "avx2 level ran");
        // Bound: every float operation of either level rounds terms whose magnitudes sum to at most
        // S = sum_b |s_g d_b| (sum_j |q_j x_j| + |z bsum_b|); chains are shorter than in + 64.
        int within = 1;
        for (int64_t o = 0; o < s.out; o++) {
            double S = 0;
            for (int64_t b = 0; b < s.in / 32; b++) {
                int64_t g = b * 32 / s.gs;
                int z = zeros ? zeros[o * groups + g] : 8;
                double dq = 0;
                for (int j = 0; j < 32; j++) {
                    int64_t k = b * 32 + j, pos = 64 * (k / 64) + ((k % 32) < 16 ? 0 : 32) + ((k / 32) % 2) * 16 + (k % 16);
                    dq += fabs((double)sq_q4_code(codes + o * (s.in / 2), k) * xq[pos]);
                }
                S += fabs((double)scales[o * groups + g] * d8[8 * (b / 2) + 4 * (b % 2)]) * (dq + fabs((double)z * bsum[b]));
            }
            if (fabs((double)t[o] - (double)r[o]) > (double)(s.in + 64) * 0x1.0p-24 * S) within = 0;
        }
        check(within, name, "avx2 within (in+64) 2^-24 S of the double reference");
        memset(y, 0xFF, sizeof(float) * (size_t)s.out);
        int rc = sq_q4_matvec_q8_level(&w, xq, d8, bsum, y, 0, s.out, SQ_Q4_AVX512);
        if (!have_vnni) check(rc == -1, name, "vnni level refused on a CPU without AVX-512 VNNI");
        else {
            check(rc == 0, name, "vnni level ran");
            check(rc == 0 && same_bits(y, t, s.out, &first), name, "vnni equals avx2 bit for bit");
        }
        free(xq); free(d8); free(bsum);
    }
    free(absum); free(codes); free(scales); free(zeros); free(x); free(y); free(t); free(r);
}

// ------------------------------------------------------------------ int8 x int8 (the 8-bit lm_head)
static void q8_case(int64_t rows, int64_t in, int have_vnni) {
    float *wf = malloc(sizeof(float) * (size_t)(rows * in)), *x = malloc(sizeof(float) * (size_t)in);
    for (int64_t i = 0; i < rows * in; i++) wf[i] = (float)(2 * uniform() - 1);
    for (int64_t k = 0; k < in; k++) x[k] = (float)((2 * uniform() - 1) * (k % 5 == 0 ? 4.0 : 1.0));
    int8_t *q = malloc((size_t)(rows * in)), *xq = malloc((size_t)in);
    float *d = malloc(sizeof(float) * (size_t)(rows * in / 32)), *d8 = malloc(sizeof(float) * (size_t)(in / 32 * 4));
    int32_t *bsum = malloc(sizeof(int32_t) * (size_t)(in / 32));
    float *ys = malloc(sizeof(float) * (size_t)rows), *y = malloc(sizeof(float) * (size_t)rows);
    sq_q8_pack_rows(wf, in, 0, rows, q, d);
    sq_q8_quantize(x, in, xq, d8, bsum);
    sq_q8_matvec_q8_level(q, d, in, xq, d8, ys, 0, rows, SQ_Q4_SCALAR);
    digest_bytes(ys, sizeof(float) * (size_t)rows);
    char name[96];
    int64_t first;
    snprintf(name, sizeof name, "q8 x q8 rows=%lld in=%lld", (long long)rows, (long long)in);
    check(sq_q8_matvec_q8_level(q, d, in, xq, d8, y, 0, rows, SQ_Q4_AVX2) == 0 && same_bits(y, ys, rows, &first),
          name, "avx2 equals the scalar twin bit for bit");
    memset(y, 0xFF, sizeof(float) * (size_t)rows);
    int rc = sq_q8_matvec_q8_level(q, d, in, xq, d8, y, 0, rows, SQ_Q4_AVX512);
    if (!have_vnni) check(rc == -1, name, "vnni level refused on a CPU without AVX-512 VNNI");
    else check(rc == 0 && same_bits(y, ys, rows, &first), name, "vnni equals the scalar twin bit for bit");
    free(wf); free(x); free(q); free(xq); free(d); free(d8); free(bsum); free(ys); free(y);
}

// ------------------------------------------------------------------ float64 Cholesky
static void cholesky_case(int n, int k, int threads, int have512) {
    double *x = malloc(sizeof(double) * (size_t)n * (size_t)k), *h = calloc((size_t)n * (size_t)n, sizeof(double));
    for (size_t i = 0; i < (size_t)n * (size_t)k; i++) x[i] = 2 * uniform() - 1;
    openblas_set_num_threads(1);   // OpenBLAS splits sums by thread count: one thread, the same bits anywhere
    cblas_dsyrk(102 /* col-major */, 122 /* lower */, 111 /* no trans */, n, k, 1.0 / k, x, n, 0, h, n);
    for (int i = 0; i < n; i++) {
        h[(size_t)i * n + i] += 0.01;
        for (int j = i + 1; j < n; j++) h[(size_t)j * n + i] = (double)i * n + j;   // upper: must survive
    }
    double *a = malloc(sizeof(double) * (size_t)n * n), *b = malloc(sizeof(double) * (size_t)n * n);
    memcpy(a, h, sizeof(double) * (size_t)n * n);
    memcpy(b, h, sizeof(double) * (size_t)n * n);
    int info = 0;
    dpotrf_("L", &n, a, &n, &info, 1);
    char name[96];
    snprintf(name, sizeof name, "cholesky n=%d threads=%d", n, threads);
    int rc = sq_dpotrf_lower_avx512(b, (size_t)n, threads);
    if (!have512) check(rc == -1, name, "refused on a CPU without AVX-512F");
    else {
        check(rc == 0 && info == 0, name, "factored");
        check(memcmp(a, b, sizeof(double) * (size_t)n * n) == 0, name, "equals dpotrf bit for bit, upper triangle untouched");
    }
    digest_bytes(a, sizeof(double) * (size_t)n * n);
    free(x); free(h); free(a); free(b);
}

// As init: the kernel's lines about the CPU's vector state (a kernel that finds the emulator's XSAVE
// layout inconsistent turns AVX off, and every SIMD level would then be refused).
static void print_kernel_fpu_lines(void) {
    static char buf[1 << 17];
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf - 1);
    if (n <= 0) return;
    buf[n] = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, "fpu") || strstr(line, "xstate") || strstr(line, "XSAVE")) printf("kernel: %s\n", line);
}

int main(void) {
    const int init = getpid() == 1;
    if (init) {
        mount("proc", "/proc", "proc", 0, NULL);
        print_kernel_fpu_lines();
    }
    rng_state = 20261207;
    const int have512 = sq_cpu_has_avx512f() != 0, have_vnni = sq_has_vnni() != 0;
    printf("cpu: avx2+fma=%d avx512f=%d avx512vl+vnni=%d q4 level=%d blas core=%s\n", sq_has_avx2_fma(), have512,
           have_vnni, sq_q4_level(), sq_blas_core_name());
    if (expects("avx512f") >= 0) check(have512 == expects("avx512f"), "cpu check avx512f", "as expected");
    if (expects("vnni") >= 0) check(have_vnni == expects("vnni"), "cpu check avx512 vnni", "as expected");
    if (expects("avx512f") == 1) check(sq_q4_level() == SQ_Q4_AVX512, "cpu check q4 level", "AVX-512");

    const shape shapes[] = {
        {7, 256, 32, 1}, {9, 512, 64, 0}, {6, 1024, 128, 1}, {3, 384, 128, 0},
        {5, 6272, 128, 1},   // wider than 6144: the two-row AVX-512 loop, an odd row left for the one-row loop
        {4, 8192, 128, 0}, {2, 1024, 256, 1},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) q4_case(shapes[i], have512, have_vnni);
    section = D_Q8;
    q8_case(5, 64, have_vnni);
    q8_case(7, 4096, have_vnni);
    section = D_CHOL;
    cholesky_case(1, 4, 1, have512);
    cholesky_case(257, 100, 1, have512);
    cholesky_case(1100, 900, 2, have512);   // > 1024: the AVX-512 trailing updates (smaller goes to dpotrf whole)

    printf("twin digest: q4 %016llx q8 %016llx lapack %016llx\n", (unsigned long long)digests[D_Q4],
           (unsigned long long)digests[D_Q8], (unsigned long long)digests[D_CHOL]);
    printf("squint-kernel-check: %d checks, %d failed\n", checks, failures);
    fflush(stdout);
    if (init) {   // let the serial line drain before the machine powers off
        tcdrain(STDOUT_FILENO);
        sleep(1);
        sync();
        reboot(RB_POWER_OFF);
    }
    return failures ? 1 : 0;
}
