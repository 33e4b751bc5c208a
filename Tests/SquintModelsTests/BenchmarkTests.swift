import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels

/// Real-size throughput of one LLM block (hidden 4096, mlp 11008, 32 heads) and one ViT block
/// (1024 tokens, width 1664), on synthetic BF16 weights. Skipped unless SQUINT_BENCH=1; prints
/// numbers and asserts nothing about time (timing never decides a test). Run it in release:
///   SQUINT_BENCH=1 swift test -c release --filter SquintModelsTests.BenchmarkTests
final class BenchmarkTests: XCTestCase {
    /// The real Qwen-VL-Chat widths with one layer each and a small vocabulary.
    func oneLayerConfig() throws -> QwenVLConfig {
        let json = """
        {"hidden_size": 4096, "intermediate_size": 22016, "kv_channels": 128, "layer_norm_epsilon": 1e-06,
         "num_attention_heads": 32, "num_hidden_layers": 1, "rotary_emb_base": 10000, "rotary_pct": 1.0,
         "seq_length": 2048, "vocab_size": 1024, "use_dynamic_ntk": true, "use_logn_attn": true,
         "tie_word_embeddings": false,
         "visual": {"heads": 16, "image_size": 448, "image_start_id": 151857, "layers": 1, "mlp_ratio": 4.9231,
                    "output_dim": 4096, "patch_size": 14, "width": 1664}}
        """
        let c = try JSONDecoder().decode(QwenVLConfig.self, from: Data(json.utf8))
        try c.validate()
        return c
    }

    func time(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    func testRealSizeBlocks() throws {
        guard ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1" else {
            throw XCTSkip("set SQUINT_BENCH=1 (and use -c release) to run the benchmark")
        }
        let cfg = try oneLayerConfig()
        let model = try QwenVLModel(config: cfg, weights: syntheticCheckpoint(config: cfg, seed: 1))
        let h = 4096.0, f = 11008.0
        let blockParams = 3 * h * h + 3 * h + h * h + 3 * h * f
        let bf16Bytes = 2 * blockParams

        // LLM prefill, 512 tokens (embedding + 1 block + ln_f + last-row lm_head over 1024 ids).
        let S = 512
        let ids = (0..<S).map { Int32(($0 * 37) % 1000) }
        var best = Double.infinity
        for _ in 0..<3 {
            let cache = KVCache(config: cfg, capacity: S + 16)
            best = min(best, try time { _ = try model.language.prefill(ids: ids, imageFeatures: nil, cache: cache, allLogits: false) })
        }
        let attnFlops = 2.0 * 2 * Double(S) * Double(S) / 2 * h   // causal q·k and p·v, half the square
        let prefillFlops = 2 * Double(S) * blockParams + attnFlops
        print(String(format: "BENCH llm-block prefill S=512: %.3f s, %.1f GFLOP/s", best, prefillFlops / best / 1e9))

        // Decode with 512 tokens already cached.
        let cache = KVCache(config: cfg, capacity: S + 16)
        _ = try model.language.prefill(ids: ids, imageFeatures: nil, cache: cache, allLogits: false)
        var steps: [Double] = []
        for i in 0..<8 { steps.append(try time { _ = try model.language.decodeStep(Int32(i), cache: cache) }) }
        let dt = steps.sorted()[steps.count / 2]
        let kvBytes = 2.0 * Double(S) * h * 4
        print(String(format: "BENCH llm-block decode KV=512: %.2f ms, %.1f GB/s (bf16 weights %.0f MB + KV %.0f MB), %.1f GFLOP/s",
                     dt * 1e3, (bf16Bytes + kvBytes) / dt / 1e9, bf16Bytes / 1e6, kvBytes / 1e6, 2 * blockParams / dt / 1e9))

        // The fused bf16 matrix-vector kernel alone (w1: [11008, 4096]), 2 threads.
        let wf = InMemoryTensorFile()
        try wf.add(name: "w1", dtype: .bf16, shape: [11008, 4096]) { raw in
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
            for i in 0..<(11008 * 4096) { p[i] = UInt16(0x3c00 + (i % 255)) }
        }
        let lin = Linear(weight: try wf.view("w1"), bias: nil)
        let xin = [Float](repeating: 0.5, count: 4096)
        var yout = [Float](repeating: 0, count: 11008)
        var mv: [Double] = []
        for _ in 0..<10 { mv.append(time { lin.forward(xin, tokens: 1, &yout, scratch: FloatBuffer()) }) }
        let mvt = mv.sorted()[mv.count / 2]
        print(String(format: "BENCH bf16 matvec 11008x4096: %.2f ms, %.1f GB/s", mvt * 1e3, 11008.0 * 4096 * 2 / mvt / 1e9))

        // One ViT block on 1024 tokens of width 1664.
        let w = 1664.0, m = 8192.0, T = 1024.0
        var x = FloatTensor(shape: [1024, 1664], data: (0..<(1024 * 1664)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 })
        var vbest = Double.infinity
        for _ in 0..<3 { vbest = min(vbest, time { model.vision.block(0, &x) }) }
        let vitFlops = 2 * T * (3 * w * w + w * w + 2 * w * m) + 2 * 2 * T * T * w
        print(String(format: "BENCH vit-block T=1024 w=1664: %.3f s, %.1f GFLOP/s", vbest, vitFlops / vbest / 1e9))
        XCTAssertTrue(x.data.allSatisfy { $0.isFinite })
    }
}
