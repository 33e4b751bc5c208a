// Pins OpenBLAS's float32/float64 kernels to one kernel set on every machine of our kind, so that a
// given input gives the same bits on Zen 3, Zen 4 and Zen 5.
//
// Why: Debian's OpenBLAS 0.3.21 is a DYNAMIC_ARCH build that picks its kernels by CPU model: the
// Haswell (AVX2) set on Zen 3 and Zen 5, the Cooperlake (AVX-512) set on Zen 4. The two sets block
// and accumulate the K dimension in different orders, so every sgemm/ssyrk result differs in its
// last bits, the ViT's activations follow, and GPTQ (whose codes sit on rounding boundaries) picks
// a few different codes: a conversion made on a Zen 4 machine was not the one made on a Zen 3.
// Pinning the Haswell set (AVX2 + FMA, which every machine we run on has) makes conversions and
// logits reproducible bit for bit across them. On Zen 4 the AVX-512 units are 256 bits wide inside,
// so the pinned set costs little there (docs/RELIABILITY.md has the measurement).
//
// How: OpenBLAS's own constructor has already chosen a kernel table (`gotoblas`) when ours runs
// (a library's constructors run before those of the program that links it). gotoblas_dynamic_quit()
// forgets that choice and gotoblas_dynamic_init() makes it again from $OPENBLAS_CORETYPE, which we
// set for the duration of the call and then restore. No BLAS call can be in flight yet. Both symbols
// are declared weak: with a non-DYNAMIC_ARCH OpenBLAS they are absent and nothing is changed.
//
// $SQUINT_BLAS_CORE overrides: "native" keeps OpenBLAS's own choice (including $OPENBLAS_CORETYPE),
// any other value is passed to OpenBLAS as the core type to force.
//
// Inference (run, chat, perplexity) trades that reproducibility for speed: sq_blas_select(1) switches
// CPUs with AVX-512 to OpenBLAS's SkylakeX set (on a Zen 5 its sgemm is ~1.75x the Haswell set's, and
// prefill is sgemm-bound). Their logits then differ in the last bits between AVX-512 and AVX2 machines,
// as the AVX-512 Int4 decode product already makes them; conversions and validate keep the pinned set.
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "squint_kernels.h"

extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));

static int sq_blas_pinned_flag = 0;

int sq_blas_pinned(void) { return sq_blas_pinned_flag; }

const char *sq_blas_core_name(void) {
    return openblas_get_corename ? openblas_get_corename() : "unknown";
}

static void sq_pin_blas_to(const char *core) {
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
    const char *old = getenv("OPENBLAS_CORETYPE");
    char *saved = old ? strdup(old) : NULL;
    setenv("OPENBLAS_CORETYPE", core, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    if (saved) { setenv("OPENBLAS_CORETYPE", saved, 1); free(saved); }
    else unsetenv("OPENBLAS_CORETYPE");
    sq_blas_pinned_flag = 1;
}

extern void openblas_set_num_threads(int) __attribute__((weak));

/// Squint's thread count: $SQUINT_THREADS when it is a positive number, else the CPUs this process
/// may run on. Applied to OpenBLAS at start-up, so $OPENBLAS_NUM_THREADS does not silently change
/// which order OpenBLAS sums in (its sgemm splits the work by thread count, and the rows at the edge
/// of each part are summed in another order: the bits of a product depend on the thread count).
int sq_default_threads(void) {
    const char *s = getenv("SQUINT_THREADS");
    if (s && *s) {
        char *end = NULL;
        long n = strtol(s, &end, 10);
        if (end && *end == 0 && n > 0 && n <= 1024) return (int)n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) { int n = CPU_COUNT(&set); if (n > 0) return n; }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/// Whether this CPU (and its OS: __builtin_cpu_supports checks XCR0) runs OpenBLAS's SkylakeX kernels
/// (after __builtin_cpu_init).
/// Deliberately not sq_cpu_supports, which the SIMDe test build makes report AVX-512 on AVX2 CPUs.
static int sq_cpu_runs_skylakex(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
}

int sq_blas_select(int fast) {
    const char *choice = getenv("SQUINT_BLAS_CORE");
    if (choice && *choice) return 0;   // the user's choice, applied at start-up, stands
    __builtin_cpu_init();
    // The Haswell set needs AVX2 and FMA; elsewhere OpenBLAS's own choice stands.
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    const char *want = fast && sq_cpu_runs_skylakex() ? "SkylakeX" : "Haswell";
    if (sq_blas_pinned_flag && strcasecmp(sq_blas_core_name(), want) == 0) return 0;
    sq_pin_blas_to(want);
    return 1;
}

__attribute__((constructor)) static void sq_pin_blas(void) {
    if (openblas_set_num_threads) openblas_set_num_threads(sq_default_threads());
    const char *choice = getenv("SQUINT_BLAS_CORE");
    if (choice && strcmp(choice, "native") == 0) return;
    if (choice && *choice) { sq_pin_blas_to(choice); return; }
    sq_blas_select(0);
}
