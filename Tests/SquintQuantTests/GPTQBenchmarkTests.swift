import Foundation
import XCTest
import SquintTensor
import SquintQuant
import SquintFormats
#if canImport(Glibc)
import Glibc
#endif

/// Timing of fasterquant at the real Qwen-VL-Chat module sizes. Skipped unless SQUINT_BENCH=1 (timings
/// never gate tests); run with a release build, e.g.
/// `SQUINT_BENCH=1 OPENBLAS_NUM_THREADS=1 swift test -c release --filter GPTQBenchmarkTests`.
/// Compare with /work/shared/ANCHORS.md (AutoGPTQ on torch CPU: 12.3 s for 12288x4096, 43.5 s for
/// 4096x11008 on 1 thread).
final class GPTQBenchmarkTests: XCTestCase {
    func testFasterquantTiming() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        let shapes = (ProcessInfo.processInfo.environment["SQUINT_BENCH_SHAPES"] ?? "12288x4096,4096x11008")
            .split(separator: ",").map { $0.split(separator: "x").map { Int($0)! } }
        let precision = HinvPrecision(rawValue: ProcessInfo.processInfo.environment["SQUINT_BENCH_HINV"] ?? "mixed") ?? .mixed
        for s in shapes {
            let rows = s[0], cols = s[1]
            var rng = SplitMix64(seed: 42)
            let W = (0..<(rows * cols)).map { _ in rng.normal() * 0.02 }
            let tokens = 2048
            let X = (0..<(tokens * cols)).map { _ in rng.normal() }
            var h = Hessian(columns: cols)
            let t0 = Date()
            try h.addBatch(X, tokens: tokens)
            let tH = Date().timeIntervalSince(t0)
            let t1 = Date()
            var opts = GPTQOptions(quantizer: try QuantizerConfig(bits: 4, symmetric: true))
            opts.hinvPrecision = precision
            opts.threads = Int(ProcessInfo.processInfo.environment["SQUINT_BENCH_THREADS"] ?? "1") ?? 1
            let r = try GPTQ.fasterquant(weight: consume W, rows: rows, columns: cols, hessian: h.takeMatrix(), options: opts)
            let tQ = Date().timeIntervalSince(t1)
            print(String(format: "[bench] fasterquant %dx%d (hinv %@): %.2f s [prepare %.2f, column loop %.2f, trailing sgemm %.2f] (H from %d tokens: %.2f s), avg loss %.4f",
                         rows, cols, precision.rawValue, tQ, r.timings.prepare, r.timings.columnLoop, r.timings.trailingUpdate,
                         tokens, tH, r.avgLoss(nsamples: 1)))
        }
    }
}


/// Agreement with a torch transcription of fasterquant at a realistic size (2048x4096): set
/// SQUINT_BENCH_COMPARE to a safetensors file with W, H and torch's codes (written by a local torch run;
/// not a fixture because of its size). Reports the share of identical codes per HinvPrecision.
final class GPTQScaleAgreementTests: XCTestCase {
    func testAgreementWithTorchAtScale() throws {
        guard let path = ProcessInfo.processInfo.environment["SQUINT_BENCH_COMPARE"] else { throw XCTSkip("set SQUINT_BENCH_COMPARE") }
        let f = try SafetensorsFile(path: path)
        let W = try f32(f, "W"), H = try f32(f, "H"), codes = try u8(f, "codes").values
        for p in HinvPrecision.allCases {
            var opts = GPTQOptions(quantizer: try QuantizerConfig())
            opts.hinvPrecision = p
            let r = try GPTQ.fasterquant(weight: W.values, rows: W.shape[0], columns: W.shape[1], hessian: H.values, options: opts)
            let same = zip(r.codes, codes).filter { $0 == $1 }.count
            print(String(format: "[agree] %@: %d/%d = %.4f%% identical codes (%.2f s)", p.rawValue, same, codes.count,
                         100 * Double(same) / Double(codes.count), r.timings.prepare + r.timings.columnLoop + r.timings.trailingUpdate))
        }
    }
}
