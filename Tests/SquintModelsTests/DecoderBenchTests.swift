import Dispatch
import Foundation
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport
import XCTest

/// Prefill and decode speed of `DecoderLM` at Qwen2.5-0.5B's real shape (hidden 896, 24 layers,
/// 14 heads over 2 KV heads, MLP 4864, vocab 151936, tied) with synthetic BF16 weights, in memory.
/// Skipped unless SQUINT_BENCH=1 (timing never decides a test):
/// `SQUINT_BENCH=1 swift test -c release --filter DecoderBenchTests` (SQUINT_THREADS=1 for one thread).
final class DecoderBenchTests: XCTestCase {
    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    func testBenchmarkQwen25HalfBShape() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        let dims = DecoderDims(hidden: 896, layers: 24, heads: 14, kvHeads: 2, headDim: 64, intermediate: 4864,
                               vocab: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, tiedEmbeddings: true, biases: [.q, .k, .v])
        let file = InMemoryTensorFile(path: "<synthetic qwen2.5-0.5b shape>")
        let gen = SyntheticWeights(seed: 1)
        for t in dims.tensorTable(.huggingFace) {
            let role: TensorRole, fanIn: Int
            switch t.role {
            case .embedding: (role, fanIn) = (.embedding, 0)
            case .attnNorm, .mlpNorm, .finalNorm: (role, fanIn) = (.norm, 0)
            case .bias: (role, fanIn) = (.bias, 0)
            default: (role, fanIn) = (.linear, t.shape[1])
            }
            let spec = QwenVLTensorSpec(name: t.name, shape: t.shape, role: role, fanIn: fanIn)
            try file.add(name: t.name, dtype: .bf16, shape: t.shape) { raw in
                let p = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
                parallelChunks(raw.count / 2, minPerChunk: 1 << 16) { a, b in gen.generate(spec, start: a, count: b - a, bf16: p + a) }
            }
        }
        let model = try DecoderLM(architecture: .qwen2, dims: dims, weights: file)
        let prompt = (0..<512).map { Int32(($0 * 7919) % 151936) }
        _ = try model.prefill(tokens: Array(prompt[..<16]), cache: model.makeCache(), logitRows: 15..<16)   // warm-up
        for n in [128, 512] {
            let t = try seconds { _ = try model.prefill(tokens: Array(prompt[..<n]), cache: model.makeCache(capacity: n), logitRows: (n - 1)..<n) }
            print(String(format: "decoder bench: prefill %d tokens %.2f s (%.1f tokens/s), threads %d", n, t, Double(n) / t, Threads.count))
        }
        let cache = model.makeCache(capacity: 256)
        _ = try model.prefill(tokens: Array(prompt[..<128]), cache: cache, logitRows: 127..<128)
        let steps = 32
        let t = try seconds { for i in 0..<steps { _ = try model.decode(token: prompt[128 + i], cache: cache) } }
        print(String(format: "decoder bench: decode %d tokens after 128 %.2f s (%.1f tokens/s), threads %d", steps, t, Double(steps) / t, Threads.count))
    }
}
