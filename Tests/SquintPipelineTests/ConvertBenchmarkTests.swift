import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintQuant
@testable import SquintPipeline
import TestSupport

/// Timing of one real-size Qwen-VL block (hidden 4096, MLP 11008) through the convert driver, on
/// synthetic weights and random calibration activations. Skipped unless SQUINT_BENCH=1; never part of
/// the normal suite (timings are not assertions).
///
///     SQUINT_BENCH=1 swift test -c release --filter ConvertBenchmarkTests
///     (SQUINT_BENCH_SAMPLES=8, SQUINT_BENCH_TOKENS=512, SQUINT_BENCH_BUDGET=4GB as --memory-budget;
///     OPENBLAS_NUM_THREADS to pin BLAS threads)
final class ConvertBenchmarkTests: XCTestCase {
    func testOneRealSizeBlock() throws {
        let env = ProcessInfo.processInfo.environment
        try XCTSkipUnless(env["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run the convert benchmark")
        let samples = Int(env["SQUINT_BENCH_SAMPLES"] ?? "") ?? 8
        let tokens = Int(env["SQUINT_BENCH_TOKENS"] ?? "") ?? 512
        // The real LLM widths; one block, a small vocabulary and a one-layer ViT keep the synthetic
        // checkpoint to what the block needs.
        var config = try QwenVLConfig.load(path: Fixtures.path("qwen-vl/config-bf16.json"))
        config.numHiddenLayers = 1
        config.vocabSize = 1024
        config.visual.layers = 1; config.visual.width = 64; config.visual.heads = 4
        let t0 = Date()
        let weights = syntheticCheckpoint(config: config, seed: 1)
        let model = try QwenVLModel(config: config, weights: weights)
        print(String(format: "bench: synthetic weights %.1f s", Date().timeIntervalSince(t0)))

        let tmp = Fixtures.temporaryFolder("convert-bench")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let h = config.hiddenSize
        let lengths = [Int](repeating: tokens, count: samples)
        // The driver's budget split (`--memory-budget`, default 4 GB): a quarter each for the block's
        // inputs and outputs, the rest for the activations kept between group passes.
        let budget = env["SQUINT_BENCH_BUDGET"].flatMap { Synth.parseSize($0) } ?? (4 << 30)
        let inputs = try ActivationStore(folder: "\(tmp)/acts-0", hidden: h, tokens: lengths, budget: budget / 4)
        let outputs = try ActivationStore(folder: "\(tmp)/acts-1", hidden: h, tokens: lengths, budget: budget / 4)
        var g = SystemRandomNumberGenerator()
        for i in 0..<samples {
            // Residual-stream-like values: N(0, 1)-ish from a sum of uniforms.
            try inputs.put(i, (0..<(tokens * h)).map { _ in Float.random(in: -1...1, using: &g) + Float.random(in: -1...1, using: &g) })
        }
        var o = ConvertOptions(model: "<bench>", calibration: "<bench>", output: "\(tmp)/out")
        o.memoryBudget = budget
        let qc = try QuantizerConfig(bits: 4, symmetric: true, perChannel: true)
        var gopts = GPTQOptions(quantizer: qc)
        gopts.hinvPrecision = .mixed
        var stages: [String: Double] = [:]
        let tb = Date()
        let (_, logs, _) = try Converter.quantizeBlock(0, model: model, weights: weights, inputs: inputs, outputs: outputs, options: o,
                                                    gptq: gopts, quantizer: qc, stageSeconds: &stages, tick: { _, _ in })
        let total = Date().timeIntervalSince(tb)
        for m in logs { print(String(format: "bench: %@ fasterquant %.2f s", m.module, m.quantSeconds)) }
        let scale = 128.0 / Double(samples) * 512.0 / Double(tokens)
        let hess = stages["hessian"] ?? 0, fwd = stages["group_forward"] ?? 0, gptq = stages["gptq"] ?? 0
        let rerun = stages["block_outputs"] ?? 0
        print(String(format: "bench: %d samples x %d tokens: Hessian %.1f s, group passes (forward) %.1f s, GPTQ %.1f s, "
                     + "block re-run %.1f s, total %.1f s; peak RSS %.0f MiB",
                     samples, tokens, hess, fwd, gptq, rerun, total, Double(peakRSSBytes()) / 1048576))
        let perBlock = (hess + fwd + rerun) * scale + gptq
        print(String(format: "bench: extrapolated to 128 x 512 tokens: Hessian %.0f s, group passes %.0f s, GPTQ %.0f s, re-run %.0f s "
                     + "-> %.0f s per block, %.2f h for 32 blocks (ViT not included)",
                     hess * scale, fwd * scale, gptq, rerun * scale, perBlock, perBlock * 32 / 3600))
    }

    /// The calibration forward outside the blocks: the real ViT (48 layers, width 1664) + resampler
    /// on one 448x448 image.
    func testRealViTPerImage() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SQUINT_BENCH"] == "1", "set SQUINT_BENCH=1 to run the convert benchmark")
        var config = try QwenVLConfig.load(path: Fixtures.path("qwen-vl/config-bf16.json"))
        config.numHiddenLayers = 1
        config.vocabSize = 1024
        let weights = syntheticCheckpoint(config: config, seed: 1)
        let model = try QwenVLModel(config: config, weights: weights)
        let px = try Runner.pixelValues([Fixtures.path("calibration/images/skimage_chelsea.png")])!
        var times: [Double] = []
        for _ in 0..<2 {
            let t = Date()
            let f = try model.vision.encode(pixelValues: px)
            times.append(Date().timeIntervalSince(t))
            XCTAssertEqual(f.shape, [1, 256, 4096])
        }
        print(String(format: "bench: real ViT + resampler per image: %.1f s, %.1f s; peak RSS %.0f MiB; x128 images = %.0f s",
                     times[0], times[1], Double(peakRSSBytes()) / 1048576, times.min()! * 128))
    }
}
