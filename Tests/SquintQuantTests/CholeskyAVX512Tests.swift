import Foundation
import XCTest
import COpenBLAS
import CSquintKernels
import SquintTensor

/// Column-major X Xᵀ / k + damp·I for a random n x k X (k < n: rank-deficient before the damping, as
/// Hessians of few tokens are); the strict upper triangle holds a pattern that must survive.
func choleskyTestHessian(_ n: Int, tokens k: Int, seed: UInt64) -> [Double] {
    var rng = SplitMix64(seed: seed)
    let x = (0..<(n * k)).map { _ in Double(rng.normal()) }
    var h = [Double](repeating: 0, count: n * n)
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, Int32(n), Int32(k), 1 / Double(k), x, Int32(n), 0, &h, Int32(n))
    for i in 0..<n {
        h[i * n + i] += 0.01
        for j in (i + 1)..<n { h[j * n + i] = Double(i * n + j) }     // upper: a pattern that must survive
    }
    return h
}

/// `sq_dpotrf_lower_avx512` (the float64 Cholesky behind fasterquant's inverse Hessian on AVX-512 CPUs)
/// against LAPACK's dpotrf from OpenBLAS: the same factor bit for bit, the strict upper triangle left
/// alone, and the same `info` for a matrix that is not positive definite. Sizes straddle the 256-column
/// blocks, the 24 x 8 register tile and the 384-row thread blocks (<= 1024: handed to dpotrf whole);
/// 1 to 3 threads on our side, OpenBLAS on 1 or 2.
final class CholeskyAVX512Tests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(sq_cpu_has_avx512f() != 0, "this CPU has no AVX-512F: fasterquant uses LAPACK's dpotrf")
    }

    override func tearDown() { Threads.count = Threads.count }    // restore OpenBLAS's thread count

    func lapack(_ a: inout [Double], n: Int, threads: Int32) -> Int32 {
        openblas_set_num_threads(threads)
        var nn = Int32(n), info: Int32 = 0
        var lower = CChar(UInt8(ascii: "L"))
        dpotrf_(&lower, &nn, &a, &nn, &info, 1)
        return info
    }

    func testSameBitsAsLAPACK() throws {
        for (n, k) in [(1, 4), (257, 100), (777, 700), (1025, 900), (1100, 1500), (1300, 1000)] {
            let h = choleskyTestHessian(n, tokens: k, seed: UInt64(n))
            for threads in [1, 2, 3] {
                var expected = h, ours = h
                XCTAssertEqual(lapack(&expected, n: n, threads: Int32(min(threads, 2))), 0)
                XCTAssertEqual(sq_dpotrf_lower_avx512(&ours, n, Int32(threads)), 0, "n=\(n)")
                var differ = 0
                for j in 0..<n { for i in 0..<n where ours[j * n + i].bitPattern != expected[j * n + i].bitPattern { differ += 1 } }
                XCTAssertEqual(differ, 0, "n=\(n) threads=\(threads): elements differing from dpotrf")
                var upperTouched = 0
                for j in 0..<n { for i in 0..<j where ours[j * n + i] != h[j * n + i] { upperTouched += 1 } }
                XCTAssertEqual(upperTouched, 0, "n=\(n)")
            }
        }
    }

    func testNotPositiveDefiniteReportsTheSameMinorAsLAPACK() throws {
        let n = 1100
        for bad in [0, 255, 256, 300, 1099] {
            var h = choleskyTestHessian(n, tokens: 900, seed: 7)
            h[bad * n + bad] = -1
            var expected = h, ours = h
            let info = lapack(&expected, n: n, threads: 2)
            XCTAssertEqual(info, Int32(bad + 1))
            XCTAssertEqual(sq_dpotrf_lower_avx512(&ours, n, 2), info, "pivot \(bad)")
        }
    }
}

/// Timing at the size of mlp.c_proj's Hessian (n = 11008), ours against dpotrf, interleaved. Skipped
/// unless SQUINT_BENCH=1; release build: `SQUINT_BENCH=1 SQUINT_THREADS=1 OPENBLAS_NUM_THREADS=1 swift test
/// -c release -Xswiftc -enable-testing --filter CholeskyAVX512BenchmarkTests` (docs/PERFORMANCE.md).
final class CholeskyAVX512BenchmarkTests: XCTestCase {
    func testTiming() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        try XCTSkipUnless(sq_cpu_has_avx512f() != 0, "no AVX-512F")
        let n = Int(ProcessInfo.processInfo.environment["SQUINT_BENCH_N"] ?? "11008") ?? 11008
        let h = choleskyTestHessian(n, tokens: 2048, seed: 1)
        var a = h
        let flops = Double(n) * Double(n) * Double(n) / 3
        for _ in 0..<2 {
            a = h
            var nn = Int32(n), info: Int32 = 0
            var lower = CChar(UInt8(ascii: "L"))
            var t = Date()
            dpotrf_(&lower, &nn, &a, &nn, &info, 1)
            let lapack = Date().timeIntervalSince(t)
            XCTAssertEqual(info, 0)
            a = h
            t = Date()
            XCTAssertEqual(sq_dpotrf_lower_avx512(&a, n, Int32(Threads.count)), 0)
            let ours = Date().timeIntervalSince(t)
            print(String(format: "[bench] cholesky n=%d threads=%d: dpotrf %.2f s (%.1f GFLOP/s), avx512 %.2f s (%.1f GFLOP/s)",
                         n, Threads.count, lapack, flops / lapack / 1e9, ours, flops / ours / 1e9))
        }
    }
}
