// A small thread pool for the short parallel loops of decoding (one matrix-vector product per layer
// and token: 20 us - 1 ms of work). Dispatch's concurrentPerform wakes a parked worker for every call,
// which on Linux costs tens of microseconds: measured on a 2-vCPU Zen 3, two halves of 37 us each
// took 100 us (slower than one thread) and two halves of 380 us took 440 us, so a two-thread decode
// was no faster than a one-thread one. Here the workers stay awake between calls: after finishing
// they spin (with `pause`, yielding the CPU now and then) for SQ_POOL_SPIN_NS before parking on a
// futex, so back-to-back calls start in well under a microsecond and an idle process uses no CPU.
//
// Who runs which iteration is decided at run time (any participant takes the next free index), but
// each iteration does the same work whichever thread runs it, so results do not depend on it.
//
// Protocol: `ticket` packs (generation << 32 | next index). A run first closes the ticket under a new
// generation (index CLOSED), then writes its parameters, then opens it (index 0, release). A worker
// loads the ticket (acquire), reads the parameters, and claims index i with a CAS from (gen, i) to
// (gen, i + 1); the CAS fails if the run has been closed or replaced meanwhile, so parameters read
// from a different run are never used. `done` counts finished iterations; the caller returns when it
// reaches n. One run at a time: a caller that finds the pool busy (another thread's run, or a call
// from inside an iteration) gets -1 and runs the loop some other way.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "squint_kernels.h"

#define SQ_POOL_MAX 64
#define SQ_POOL_SPIN_NS 200000          // 0.2 ms of spinning before a worker parks
#define CLOSED 0xFFFFFFFFu

static _Atomic uint64_t ticket;         // (generation << 32) | next index (CLOSED: not open)
static _Atomic int64_t done;            // iterations finished in the current run
static _Atomic(sq_pool_fn) run_fn;
static _Atomic(void *) run_ctx;
static _Atomic int64_t run_n;
static _Atomic uint32_t wake_seq;       // futex word: bumped by every run
static _Atomic int sleepers;            // workers parked (or about to park) on wake_seq
static _Atomic int started;             // workers created so far
static _Atomic int busy;                // 1 while a run is in progress
static pthread_mutex_t grow = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int inside;        // this thread is running an iteration

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/// Claims and runs iterations of the run whose ticket was loaded as `t` until none is left.
static void work(uint64_t t) {
    const uint32_t gen = (uint32_t)(t >> 32);
    sq_pool_fn fn = atomic_load_explicit(&run_fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&run_ctx, memory_order_relaxed);
    const int64_t n = atomic_load_explicit(&run_n, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen) return;
        const uint32_t i = (uint32_t)t;
        if (i == CLOSED || (int64_t)i >= n) return;
        if (atomic_compare_exchange_weak_explicit(&ticket, &t, t + 1, memory_order_acquire, memory_order_acquire)) {
            inside = 1;
            fn(ctx, (int64_t)i);
            inside = 0;
            atomic_fetch_add_explicit(&done, 1, memory_order_release);
            t = atomic_load_explicit(&ticket, memory_order_acquire);
        }
    }
}

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        const uint32_t seq = atomic_load(&wake_seq);
        work(atomic_load_explicit(&ticket, memory_order_acquire));   // returns at once if nothing is open
        // Spin for a while: the next call of a decode step usually comes within microseconds.
        const int64_t until = now_ns() + SQ_POOL_SPIN_NS;
        int found = 0;
        for (unsigned k = 1; !found; k++) {
            for (int s = 0; s < 8; s++) cpu_relax();
            if (atomic_load_explicit(&wake_seq, memory_order_acquire) != seq) { found = 1; break; }
            if ((k & 255) == 0) {
                if (now_ns() > until) break;
                sched_yield();   // let another runnable thread on this CPU (e.g. OpenBLAS's) go first
            }
        }
        if (found) continue;
        atomic_fetch_add(&sleepers, 1);
        // Parks only if no run started since `seq` was read (the kernel compares atomically).
        syscall(SYS_futex, &wake_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
        atomic_fetch_sub(&sleepers, 1);
    }
    return NULL;
}

static void ensure_workers(int want) {
    if (want > SQ_POOL_MAX - 1) want = SQ_POOL_MAX - 1;
    if (atomic_load(&started) >= want) return;
    pthread_mutex_lock(&grow);
    while (atomic_load(&started) < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&th, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        atomic_fetch_add(&started, 1);
    }
    pthread_mutex_unlock(&grow);
}

int sq_pool_run(int64_t n, int threads, sq_pool_fn fn, void *ctx) {
    if (n <= 0) return 0;
    if (n >= CLOSED || threads < 1) return -1;
    if (inside) return -1;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&busy, &expected, 1)) return -1;
    ensure_workers(threads - 1);
    // Close under a new generation, write the parameters, open (see the protocol above).
    const uint64_t old = atomic_load(&ticket);
    const uint64_t gen = ((old >> 32) + 1) & 0xFFFFFFFFu;
    atomic_store(&ticket, gen << 32 | CLOSED);
    atomic_store_explicit(&run_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&run_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&run_n, n, memory_order_relaxed);
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    atomic_store_explicit(&ticket, gen << 32, memory_order_release);
    atomic_fetch_add(&wake_seq, 1);
    if (atomic_load(&sleepers) > 0) syscall(SYS_futex, &wake_seq, FUTEX_WAKE_PRIVATE, SQ_POOL_MAX, NULL, NULL, 0);
    work(gen << 32);
    // Iterations taken by workers may still be running; yield now and then in case a worker was
    // descheduled onto this CPU (a busy machine), so the wait cannot hold it off.
    for (unsigned k = 1; atomic_load_explicit(&done, memory_order_acquire) < n; k++) {
        cpu_relax();
        if ((k & 1023) == 0) sched_yield();
    }
    atomic_store(&ticket, gen << 32 | CLOSED);
    atomic_store(&busy, 0);
    return 0;
}
