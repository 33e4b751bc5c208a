import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// The strict binder: a checkpoint binds only if it holds exactly the declared tensors.
final class BindingTests: XCTestCase {
    func tinyConfig() throws -> QwenVLConfig { try QwenVLConfig.load(path: fixturePath("qwen-vl-tiny/config.json")) }

    func testSyntheticCheckpointHoldsEveryDeclaredTensorInStateDictOrder() throws {
        let cfg = try tinyConfig()
        let file = syntheticCheckpoint(config: cfg, seed: 20240611)
        XCTAssertEqual(file.tensors.map(\.name), cfg.bf16TensorSpecs().map(\.name))
        XCTAssertEqual(file.tensors.map(\.shape), cfg.bf16TensorSpecs().map(\.shape))
        XCTAssertTrue(file.tensors.allSatisfy { $0.dtype == .bf16 })
        // Values come from SyntheticWeights (norm weights are 1 + r*0.2, within [0.8, 1.2]).
        let ln = Kernels.floats(try file.view("transformer.ln_f.weight"))
        XCTAssertTrue(ln.allSatisfy { $0 >= 0.8 && $0 <= 1.2 })
        XCTAssertThrowsError(try file.view("nope")) { XCTAssertEqual($0 as? FormatError, .missingTensor(path: file.path, name: "nope")) }
    }

    func testBindingReportsMissingUnexpectedWrongShapeAndWrongDTypeTogether() throws {
        let cfg = try tinyConfig()
        let file = syntheticCheckpoint(config: cfg, seed: 1)
        file.remove("transformer.h.1.mlp.w2.weight")
        file.remove("lm_head.weight")
        try file.add(name: "transformer.h.7.extra", shape: [2], f32: [1, 2])
        file.remove("transformer.ln_f.weight")
        try file.add(name: "transformer.ln_f.weight", shape: [127], f32: [Float](repeating: 1, count: 127))
        file.remove("transformer.visual.ln_pre.bias")
        try file.add(name: "transformer.visual.ln_pre.bias", dtype: .i32, shape: [64]) { _ in }
        XCTAssertThrowsError(try QwenVLModel(config: cfg, weights: file)) { error in
            guard case let .binding(path, problems)? = error as? ModelError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, file.path)
            XCTAssertEqual(problems.count, 5, "\(problems)")
            let text = problems.joined(separator: "\n")
            for needle in ["missing tensor transformer.h.1.mlp.w2.weight", "missing tensor lm_head.weight",
                           "unexpected tensor transformer.h.7.extra",
                           "transformer.ln_f.weight: shape [127], expected [128]",
                           "transformer.visual.ln_pre.bias: dtype I32"] {
                XCTAssertTrue(text.contains(needle), "no '\(needle)' in \(text)")
            }
        }
    }

    func testF32CheckpointBindsAndMatchesBF16() throws {
        // The same values stored as F32 (widening is exact) bind too; only summation order differs.
        let cfg = try tinyConfig()
        let bf = syntheticCheckpoint(config: cfg, seed: 5)
        let f32 = InMemoryTensorFile()
        for t in bf.tensors { try f32.add(name: t.name, shape: t.shape, f32: Kernels.floats(try bf.view(t.name))) }
        let ids: [Int32] = [151644, 8948, 198, 2610, 525]
        func lastLogits(_ w: TensorFile) throws -> [Float] {
            let m = try QwenVLModel(config: cfg, weights: w)
            let cache = KVCache(config: cfg, capacity: 8)
            _ = try m.language.prefill(ids: Array(ids.dropLast()), imageFeatures: nil, cache: cache)
            return try m.language.decodeStep(ids.last!, cache: cache)
        }
        let a = try lastLogits(bf), b = try lastLogits(f32)
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(worst, 1e-4, "bf16 fused matvec vs f32 sgemv differ only in summation order")
    }

    func testPromptWithImageTagButNoImageIsRejected() throws {
        let cfg = try tinyConfig()
        let m = try QwenVLModel(config: cfg, weights: syntheticCheckpoint(config: cfg, seed: 1))
        let cache = KVCache(config: cfg, capacity: 300)
        XCTAssertThrowsError(try m.language.prefill(ids: [1, 151857, 2], imageFeatures: nil, cache: cache))
        XCTAssertThrowsError(try m.language.prefill(ids: [1, 999_999], imageFeatures: nil, cache: cache))
        // An image span that is not exactly <img> + 256 ids + </img> is refused.
        let features = FloatTensor(shape: [1, 256, 128], data: [Float](repeating: 0, count: 256 * 128))
        let short = [Int32(151857)] + [Int32](repeating: 151859, count: 255) + [151858, 1]
        XCTAssertThrowsError(try m.language.embed(ids: short, imageFeatures: features))
        let good = [Int32(151857)] + [Int32](repeating: 151859, count: 256) + [151858]
        XCTAssertEqual(try m.language.embed(ids: good, imageFeatures: features).shape, [258, 128])
        XCTAssertThrowsError(try m.language.decodeStep(-1, cache: cache))
    }

    func testChunkedPrefillEqualsOneShotPrefill() throws {
        // Prefill of 7 tokens vs 4 + 3 with the cache: the causal mask over past keys must match.
        let cfg = try tinyConfig()
        let m = try QwenVLModel(config: cfg, weights: syntheticCheckpoint(config: cfg, seed: 3))
        let ids: [Int32] = [151644, 8948, 198, 2610, 525, 264, 10950]
        let one = try m.language.prefill(ids: ids, imageFeatures: nil, cache: KVCache(config: cfg, capacity: 7))
        let cache = KVCache(config: cfg, capacity: 7)
        _ = try m.language.prefill(ids: Array(ids[0..<4]), imageFeatures: nil, cache: cache)
        let two = try m.language.prefill(ids: Array(ids[4...]), imageFeatures: nil, cache: cache)
        let v = cfg.vocabSize
        for r in 0..<3 {
            let a = Array(one.logits.data[((4 + r) * v)..<((5 + r) * v)]), b = Array(two.logits.data[(r * v)..<((r + 1) * v)])
            XCTAssertLessThanOrEqual(zip(a, b).map { abs($0 - $1) }.max()!, 1e-4)
        }
        XCTAssertThrowsError(try m.language.decodeStep(1, cache: cache), "the cache is full")
    }
}
