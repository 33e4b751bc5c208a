import Foundation
import COpenBLAS
import CSquintKernels

/// How many threads Squint's kernels and OpenBLAS use: `$SQUINT_THREADS`, else every core. Set it
/// once at start-up (the CLI's `--threads`); benchmarks compare 1 and 2 threads with it.
public enum Threads {
    /// Start-up value: `sq_default_threads()` (blas_pin.c), which OpenBLAS was already set to
    /// before main, so `$OPENBLAS_NUM_THREADS` cannot make OpenBLAS differ from Squint's own count.
    nonisolated(unsafe) private static var value: Int = Int(sq_default_threads())

    public static var count: Int {
        get { value }
        set {
            value = max(1, newValue)
            openblas_set_num_threads(Int32(value))
        }
    }
}

extension Threads {
    /// Runs `body` with OpenBLAS on one thread (Squint's own count is unchanged), for BLAS calls too
    /// small to share: a decode step's attention is a few products of [heads, d] x [d, tokens] per
    /// layer (~0.1 ms of work per token in all), and OpenBLAS handing each to its second thread cost
    /// more than the products (its thread then spins in sched_yield beside Squint's pool worker).
    /// `when: false` runs `body` as it is.
    public static func withSingleThreadedBLAS<R>(when condition: Bool = true, _ body: () throws -> R) rethrows -> R {
        let n = count
        if n <= 1 || !condition { return try body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(n)) }
        return try body()
    }
}

/// Which OpenBLAS kernel set runs Squint's products. Squint pins the Haswell (AVX2/FMA) set at
/// start-up on every CPU that has AVX2 and FMA (Sources/CSquintKernels/blas_pin.c), so results are
/// the same bits on Zen 3, Zen 4 and Zen 5; inference commands switch to the AVX-512 set where the CPU
/// has it (`useFastest`); `SQUINT_BLAS_CORE=native` keeps OpenBLAS's own choice.
public enum BLASKernels {
    /// OpenBLAS's name for the kernel set in use, e.g. "Haswell" or "Cooperlake".
    public static var coreName: String { String(cString: sq_blas_core_name()) }
    /// True when Squint chose the kernel set (false: OpenBLAS's own choice, e.g. SQUINT_BLAS_CORE=native).
    public static var pinned: Bool { sq_blas_pinned() != 0 }
    public static var description: String { coreName + (pinned ? " (pinned by Squint)" : " (OpenBLAS's choice)") }

    /// For inference commands (run, chat, perplexity): OpenBLAS's AVX-512 (SkylakeX) kernels on CPUs
    /// that have AVX-512, the pinned Haswell set elsewhere. On a Zen 5 prefill runs 1.75x faster; float
    /// results then differ in their last bits between AVX-512 and AVX2 machines (docs/RELIABILITY.md).
    /// `$SQUINT_BLAS_CORE` still decides when set. Call before any BLAS work starts.
    /// Returns whether the set changed.
    @discardableResult public static func useFastest() -> Bool { sq_blas_select(1) != 0 }

    /// Back to the set every machine shares (what conversions and validate use; the start-up default).
    public static func useReproducible() { _ = sq_blas_select(0) }
}

/// Runs `body(i)` for every i in 0..<n in parallel on Squint's thread pool (Sources/CSquintKernels/
/// pool.c): up to `Threads.count` threads, whose workers stay awake for a fraction of a millisecond
/// between calls, so the many short loops of a decode step (one per matrix-vector product) start in
/// under a microsecond. Dispatch's concurrentPerform, used before, woke a parked thread for each call:
/// tens of microseconds, which made two-thread decoding no faster than one-thread. When the pool is
/// busy (a loop inside an iteration, or another thread's loop) this falls back to concurrentPerform.
/// Which thread runs an iteration varies; what an iteration computes does not.
public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    if n <= 0 { return }
    if n == 1 { body(0); return }
    withoutActuallyEscaping(body) { escapable in
        var closure = escapable
        let rc = withUnsafeMutablePointer(to: &closure) { p in
            sq_pool_run(Int64(n), Int32(Threads.count), { ctx, i in
                ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
            }, UnsafeMutableRawPointer(p))
        }
        if rc != 0 { DispatchQueue.concurrentPerform(iterations: n, execute: escapable) }
    }
}
