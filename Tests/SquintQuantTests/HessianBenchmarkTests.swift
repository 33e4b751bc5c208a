import Foundation
import XCTest
import SquintQuant
import SquintTensor

/// Hessian accumulation timed as a conversion calls it: one `addBatch` per calibration sample.
/// Skipped unless SQUINT_BENCH=1; shapes from SQUINT_BENCH_HESSIAN="N,samples,tokens" (default
/// 4096,16,512). Side by side with `scripts/bench/hessian_side_by_side.py` (AutoGPTQ's add_batch on
/// PyTorch); figures in docs/PERFORMANCE.md.
final class HessianBenchmarkTests: XCTestCase {
    func testAccumulationTiming() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        let spec = (ProcessInfo.processInfo.environment["SQUINT_BENCH_HESSIAN"] ?? "4096,16,512").split(separator: ",").map { Int($0)! }
        let (n, samples, tokens) = (spec[0], spec[1], spec[2])
        var rng = SplitMix64(seed: 0)
        let xs = (0..<samples).map { _ in (0..<(tokens * n)).map { _ in rng.normal() } }
        for _ in 0..<2 {
            var h = Hessian(columns: n)
            let t0 = Date()
            for x in xs { try h.addBatch(x, tokens: tokens) }
            let m = h.takeMatrix()                      // the mirror of the upper triangle happens here
            let dt = Date().timeIntervalSince(t0)
            XCTAssertEqual(m.count, n * n)
            let flops = 2.0 * Double(n) * Double(n) * Double(tokens * samples)
            print(String(format: "[bench] Hessian width %d, %d x %d tokens: %.2f s (%.1f GFLOP/s in torch's x@x.T terms; syrk does half)",
                         n, samples, tokens, dt, flops / dt / 1e9))
        }
    }
}
