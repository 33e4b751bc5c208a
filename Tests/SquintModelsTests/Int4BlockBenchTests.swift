import Dispatch
import Foundation
import SquintFormats
import SquintTensor
import SquintModels
import SquintPipeline
import TestSupport
import XCTest

/// Int4 vs BF16 through one real-size Qwen-7B block (hidden 4096, MLP 11008, group 128; synthetic
/// weights, random codes), and what `validate` costs beyond the forward passes. Skipped unless
/// SQUINT_BENCH=1 (timing never decides a test):
/// `SQUINT_BENCH=1 swift test -c release --filter Int4BlockBenchTests`.
final class Int4BlockBenchTests: XCTestCase {
    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    func testBenchmarkOneRealSizeBlock() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        var config = try QwenVLConfig.load(path: fixturePath("qwen-vl/config-bf16.json"))
        config.numHiddenLayers = 1
        config.vocabSize = 1024          // keep lm_head out of the picture: the block is measured
        config.visual.layers = 1
        let synthetic = syntheticCheckpoint(config: config, seed: 7)
        let bf16 = try QwenVLModel(config: config, weights: synthetic)
        let int4 = try QwenVLModel(config: config, weights: synthetic)
        let int4q8 = try QwenVLModel(config: config, weights: synthetic)   // same codes, Q8 decode path
        var q4Bytes = 0, bfBytes = 0, params = 0
        for (i, m) in QwenLM.BlockLinear.allCases.enumerated() {
            let old = int4.language.linear(layer: 0, m)
            let (rec, _) = try Int4Pack.record(out: old.outFeatures, inF: old.inFeatures, groupSize: 128, symmetric: true,
                                               actOrder: false, seed: UInt64(i + 1))
            int4.language.replaceLinear(layer: 0, m, with: QuantizedLinear(record: rec))
            let q8 = QuantizedLinear(record: rec)
            q8.decodePath = .int8
            int4q8.language.replaceLinear(layer: 0, m, with: q8)
            // Bytes streamed per decode product: codes + float32 scales (widened at load) vs BF16 weights.
            q4Bytes += old.outFeatures * old.inFeatures / 2 + old.outFeatures * (old.inFeatures / 128) * 4
            bfBytes += old.outFeatures * old.inFeatures * 2
            params += old.outFeatures * old.inFeatures
        }
        print(String(format: "block: %.1f M params, BF16 %.1f MB, Int4 %.1f MB streamed per token", Double(params) / 1e6,
                     Double(bfBytes) / 1e6, Double(q4Bytes) / 1e6))
        let ids: [Int32] = (0..<512).map { Int32($0 % 1000) }
        // validate on this block: a 340-token sample (287 context + 53 caption, like a calibration
        // pair, without the image), 16 greedy tokens per model; cost over the two teacher-forced passes.
        let sample = ValidationSample(label: "synthetic", ids: Array(ids.prefix(340)), contextLength: 287, pixelValues: nil)
        for greedy in [16, 0] {
            let r = try Validator.run(bf16: bf16, int4: int4, samples: [sample], options: ValidateOptions(greedyTokens: greedy))
            print(String(format: "validate, one block, 340 tokens, greedy %d: %.2f s = %.2fx the two teacher-forced passes (%.2f s)",
                         greedy, r.seconds, r.seconds / r.forwardSeconds, r.forwardSeconds))
        }
        for (label, model, bytes) in [("bf16", bf16, bfBytes), ("int4", int4, q4Bytes), ("int4-q8", int4q8, q4Bytes),
                                      ("bf16", bf16, bfBytes), ("int4", int4, q4Bytes), ("int4-q8", int4q8, q4Bytes)] {
            // Decode: 32 steps after a 64-token prompt, 1 block + ln_f + a 1024-row lm_head.
            let cache = KVCache(config: config, capacity: 600)
            _ = try model.language.prefill(ids: Array(ids.prefix(64)), imageFeatures: nil, cache: cache, allLogits: false)
            let steps = 32
            let td = try seconds { for k in 0..<steps { _ = try model.language.decodeStep(Int32(k), cache: cache) } } / Double(steps)
            // The five linears alone at one token (what streams the weights).
            let x = [Float](repeating: 0.01, count: config.mlpWidth)
            var y = [Float](repeating: 0, count: 3 * config.hiddenSize)
            let scratch = FloatBuffer()
            let tl = seconds {
                for _ in 0..<8 {
                    for m in QwenLM.BlockLinear.allCases { model.language.linear(layer: 0, m).forward(x, tokens: 1, &y, scratch: scratch) }
                }
            } / 8
            // Prefill: 512 tokens on a fresh cache.
            let cache2 = KVCache(config: config, capacity: 512)
            let tp = try seconds { _ = try model.language.prefill(ids: ids, imageFeatures: nil, cache: cache2, allLogits: false) }
            print(String(format: "%@: decode %.1f ms/token = %.2f tokens/s (block linears %.1f ms = %.1f GB/s of weights); "
                         + "prefill 512 tokens %.2f s = %.1f GFLOP/s (block linears' 2*params*tokens)", label, td * 1e3, 1 / td,
                         tl * 1e3, Double(bytes) / tl / 1e9, tp, 2 * Double(params) * 512 / tp / 1e9))
        }
    }

    /// Loading an AutoGPTQ checkpoint converts each module once to the SQ4 layout: its cost per weight.
    func testBenchmarkAutoGPTQConversionAtLoad() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        let (rec, _) = try Int4Pack.record(out: 4096, inF: 11008, groupSize: 128, symmetric: true, actOrder: false, seed: 3)
        let gptq = try AutoGPTQLayout.toAutoGPTQ(rec, path: "<bench>")
        let t = try seconds { _ = try AutoGPTQLayout.toSQ4(gptq, name: "m", path: "<bench>") }
        print(String(format: "AutoGPTQ -> SQ4, [4096, 11008]: %.3f s = %.2f ns/weight (x 6.5e9 block weights of Qwen-VL-Chat = %.0f s at load)",
                     t, t / (4096 * 11008) * 1e9, t / (4096 * 11008) * 6.5e9))
    }

    /// validate's cost beyond the two teacher-forced passes: the statistics over the real 151936-word
    /// vocabulary and the greedy continuations, on the tiny model (its forward passes are cheap, so
    /// the overhead per position is what is seen).
    func testBenchmarkValidateOverheadPerPosition() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run")
        let config = try QwenVLConfig.load(path: fixturePath("qwen-vl-tiny/config.json"))
        let synthetic = syntheticCheckpoint(config: config, seed: 20240611)
        let a = try QwenVLModel(config: config, weights: synthetic)
        let ref = try FixtureSafetensors(path: fixturePath("qwen-vl-tiny/reference.safetensors"))
        let ids = try ref.ints("input_ids").values
        let px = try ref.floats("pixel_values")
        let sample = ValidationSample(label: "ref", ids: ids, contextLength: 1, pixelValues: FloatTensor(shape: px.shape, data: px.values))
        for greedy in [0, 16] {
            let r = try Validator.run(bf16: a, int4: a, samples: [sample], options: ValidateOptions(greedyTokens: greedy))
            print(String(format: "validate tiny, %d positions, greedy %d: %.2f s, forward passes %.2f s, statistics+greedy %.2f s = %.2f ms/position",
                         r.positions, greedy, r.seconds, r.forwardSeconds, r.seconds - r.forwardSeconds,
                         (r.seconds - r.forwardSeconds) / Double(r.positions) * 1e3))
        }
    }
}
