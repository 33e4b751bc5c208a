import COpenBLAS
import CSquintKernels
import Dispatch
import Foundation
import SquintFormats
import SquintTensor
import XCTest

/// Throughput of the Int4 kernels on Qwen-VL-sized matrices. Skipped unless SQUINT_BENCH=1 (timing
/// never decides a test); run with `SQUINT_BENCH=1 swift test -c release --filter QuantKernelBenchTests`.
/// Prints: weight GB/s and ms of the decode products (1 and 2 threads) vs a BF16 matvec of the same
/// matrix and vs a plain AVX2 read of the same bytes, and prefill GFLOP/s for 512 tokens.
final class QuantKernelBenchTests: XCTestCase {
    func best(_ reps: Int, _ body: () -> Void) -> Double {
        var b = Double.infinity
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            b = min(b, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return b
    }

    func testBenchmarkInt4Kernels() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        print("avx2+fma: \(sq_has_avx2_fma())")
        for (out, inF) in [(4096, 11008), (12288, 4096), (11008, 4096)] {
            let g = 128
            let (rec, _) = try Int4Pack.record(out: out, inF: inF, groupSize: g, symmetric: true, actOrder: false, seed: 42)
            let layer = QuantizedLinear(record: rec)
            // The codes (22-24 MB) fit the 32 MB L3; cycle through copies totalling > 160 MB so every
            // product streams its weights from DRAM, as in a real decode step over 32 layers.
            let q4Bytes = Double(out * inF / 2 + out * (inF / g) * 4)   // codes + float32 scales per product
            let copies = Int((160e6 / q4Bytes).rounded(.up))
            let layers = try (0..<copies).map { _ in
                QuantizedLinear(record: try QuantizedLinearRecord(
                    spec: rec.spec, codes: OwnedBytes.view(name: rec.codes.info.name, dtype: .u8, shape: rec.codes.info.shape, Array(rec.codes.bytes)),
                    scales: OwnedBytes.view(name: rec.scales.info.name, dtype: .f16, shape: rec.scales.info.shape, Array(rec.scales.bytes)),
                    zeros: nil, perm: nil, bias: nil, path: "<bench>"))
            }
            var r = SplitMix64(state: 1)
            let x = (0..<inF).map { _ in r.symmetric() }
            var y = [Float](repeating: 0, count: out)
            var line = "W [\(out), \(inF)] g\(g) (\(copies) copies):"
            for threads in [1, 2] {
                for path in [QuantizedLinear.DecodePath.float32, .int8] {
                    for l in layers { l.threads = threads; l.decodePath = path }
                    let t = best(5) { for l in layers { l.forward(x: x, tokens: 1, into: &y) } } / Double(copies)
                    line += String(format: "  q4-%@ %dT %.2f ms %.1f GB/s", path == .float32 ? "f32" : "q8", threads, t * 1e3, q4Bytes / t / 1e9)
                }
            }
            // Accuracy cost of the int8 path: relative L2 error of y against the float32 path.
            do {
                let l = layers[0]
                var yf = [Float](repeating: 0, count: out), yq = yf
                l.decodePath = .float32; l.forward(x: x, tokens: 1, into: &yf)
                l.decodePath = .int8; l.forward(x: x, tokens: 1, into: &yq)
                let num = zip(yf, yq).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
                let den = yf.reduce(0.0) { $0 + Double($1 * $1) }
                line += String(format: "  q8 rel.L2 err %.2e", (num / den).squareRoot())
            }
            // BF16 of the same matrix (the dequantised weight rounded to bf16).
            var wbf = [UInt16](repeating: 0, count: out * inF)
            let w = layer.dequantizedStored()
            sq_f32_to_bf16(w, &wbf, w.count)
            let bfBytes = Double(out * inF * 2)
            for threads in [1, 2] {
                let t = best(5) {
                    wbf.withUnsafeBufferPointer { wb in
                        y.withUnsafeMutableBufferPointer { yb in
                            let wp = wb.baseAddress!, yp = yb.baseAddress!
                            DispatchQueue.concurrentPerform(iterations: threads) { i in
                                sq_matvec_bf16(wp, x, nil, yp, inF, out * i / threads, out * (i + 1) / threads)
                            }
                        }
                    }
                }
                line += String(format: "  bf16 %dT %.2f ms %.1f GB/s", threads, t * 1e3, bfBytes / t / 1e9)
            }
            // Plain read of the BF16 bytes (the machine's one-core streaming bandwidth) and of the q4 codes.
            var sink: UInt64 = 0
            let tr = best(5) { sink &+= wbf.withUnsafeBytes { sq_read_bandwidth_probe($0.baseAddress!, $0.count) } }
            let tr2 = best(5) {
                wbf.withUnsafeBytes { b in
                    let n = b.count / 2 / 64 * 64
                    DispatchQueue.concurrentPerform(iterations: 2) { i in _ = sq_read_bandwidth_probe(b.baseAddress! + i * n, n) }
                }
            }
            line += String(format: "  read(bf16 bytes) 1T %.1f GB/s 2T %.1f GB/s [%llu]", bfBytes / tr / 1e9, bfBytes / tr2 / 1e9, sink & 1)
            print(line)
            // Prefill: 512 tokens.
            let tokens = 512
            let X = (0..<tokens * inF).map { _ in r.symmetric() }
            var Y = [Float](repeating: 0, count: tokens * out)
            layer.threads = 2
            let tp = best(2) { layer.forward(x: X, tokens: tokens, into: &Y) }
            // The same product as one dense float32 sgemm (the ceiling the tiled path approaches).
            let td = best(2) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(out), Int32(inF), 1, X, Int32(inF), w, Int32(inF),
                            0, &Y, Int32(out))
            }
            let flops = 2.0 * Double(tokens * out * inF)
            print(String(format: "  prefill 512 tokens: int4 tiles %.1f ms %.1f GFLOP/s; dense f32 sgemm %.1f ms %.1f GFLOP/s",
                         tp * 1e3, flops / tp / 1e9, td * 1e3, flops / td / 1e9))
        }
    }
}
