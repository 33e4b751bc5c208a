import Foundation
import COpenBLAS

/// How many threads Squint's kernels and OpenBLAS use: `$SQUINT_THREADS`, else every core. Set it
/// once at start-up (the CLI's `--threads`); benchmarks compare 1 and 2 threads with it.
public enum Threads {
    nonisolated(unsafe) private static var value: Int = {
        if let s = ProcessInfo.processInfo.environment["SQUINT_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    public static var count: Int {
        get { value }
        set {
            value = max(1, newValue)
            openblas_set_num_threads(Int32(value))
        }
    }
}
