import Foundation
import XCTest
@testable import SquintFormats

/// Dequantisation throughput on the real GGUF files of the cache, one thread, scalar reference and
/// AVX2 kernel, the largest tensor of each ggml type. Skipped unless SQUINT_BENCH=1; figures in
/// docs/PERFORMANCE.md.
final class GGUFBenchmarkTests: XCTestCase {
    func testDequantisationThroughput() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        let cache = ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: "\(cache)/models")) ?? []).filter { $0.hasSuffix(".gguf") }.sorted()
        var largest: [GGMLType: (GGUFFile, GGUFTensorInfo)] = [:]
        for n in names {
            let g = try GGUFFile(path: "\(cache)/models/\(n)")
            for t in g.ggufTensors where t.elementCount > (largest[t.type]?.1.elementCount ?? 0) { largest[t.type] = (g, t) }
        }
        try XCTSkipIf(largest.isEmpty, "no GGUF file in \(cache)/models")
        for (type, (g, t)) in largest.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where t.elementCount >= 1 << 20 {
            let src = try g.bytes(of: t)
            var out = [Float](repeating: 0, count: t.elementCount)
            for k in [GGUFDequant.Kernel.scalar, .avx2] where k == .scalar || GGUFDequant.hasAVX2 {
                out.withUnsafeMutableBufferPointer { GGUFDequant.dequantize(type, blocks: src, into: $0, kernel: k) }  // page in
                var best = Double.infinity
                for _ in 0..<3 {
                    let t0 = Date()
                    out.withUnsafeMutableBufferPointer { GGUFDequant.dequantize(type, blocks: src, into: $0, kernel: k) }
                    best = min(best, Date().timeIntervalSince(t0))
                }
                print(String(format: "[bench] GGUF %@ %@ (%@, %d weights): %.1f ms, %.0f M weights/s, %.1f GB/s written",
                             type.name, "\(k)", t.name, t.elementCount, best * 1e3, Double(t.elementCount) / best / 1e6,
                             Double(t.elementCount * 4) / best / 1e9))
            }
        }
    }
}
