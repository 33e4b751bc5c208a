import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// Layer-wise entry points (what a GPTQ pass needs), checked against the official hidden states.
final class BlockTests: XCTestCase {
    var run: TinyRun!
    override func setUpWithError() throws { run = try TinyRun.shared.get() }

    func testSingleLLMBlockMapsReferenceHiddenStateToTheNextOne() throws {
        let (shape, hs) = try run.reference.floats("hidden_states")
        let per = shape[1] * shape[2]
        var x = FloatTensor(shape: [shape[1], shape[2]], data: Array(hs[0..<per]))
        run.model.language.block(0, &x)
        assertClose(x.data, Array(hs[per..<(2 * per)]), Tol.hidden, "block(0)(hidden_states[0])")
    }

    func testSingleViTBlockMapsReferenceEmbeddingToBlockOutput() throws {
        var x = FloatTensor(shape: [1024, 64], data: try run.reference.floats("vit_embed").values)
        run.model.vision.block(0, &x)
        assertClose(x.data, try run.reference.floats("vit_block_out.0").values, Tol.vit, "vision.block(0)(vit_embed)")
    }

    /// Delegates to the original layer and counts calls.
    final class Counting: LinearLayer {
        let inner: any LinearLayer
        var calls = 0
        init(_ inner: any LinearLayer) { self.inner = inner }
        var name: String { inner.name }
        var inFeatures: Int { inner.inFeatures }
        var outFeatures: Int { inner.outFeatures }
        func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer) {
            calls += 1
            inner.forward(x, tokens: tokens, y, scratch: scratch)
        }
    }

    func testObserverSeesEveryBlockLinearInputAndReplacedLayersAreUsed() throws {
        let cfg = run.config
        let model = try QwenVLModel(config: cfg, weights: syntheticCheckpoint(config: cfg, seed: 20240611))
        let lm = model.language
        var seen: [String] = []
        var cAttnInput: [Float] = []
        lm.linearInputObserver = { layer, module, x, tokens in
            seen.append("\(layer).\(module.rawValue)")
            if layer == 0 && module == .cAttn { cAttnInput = Array(UnsafeBufferPointer(start: x, count: tokens * cfg.hiddenSize)) }
        }
        let wrapped = Counting(lm.linear(layer: 1, .w2))
        lm.replaceLinear(layer: 1, .w2, with: wrapped)
        let ids = Array(run.ids[0..<12])
        let out = try lm.prefill(ids: ids, imageFeatures: nil, cache: KVCache(config: cfg, capacity: 12))
        XCTAssertEqual(seen, (0..<cfg.numHiddenLayers).flatMap { l in QwenLM.BlockLinear.allCases.map { "\(l).\($0.rawValue)" } })
        XCTAssertEqual(wrapped.calls, 1)
        XCTAssertEqual(cAttnInput.count, 12 * cfg.hiddenSize)
        // The wrapper computes the same function, so logits equal the unwrapped model's exactly.
        let plain = try run.model.language.prefill(ids: ids, imageFeatures: nil, cache: KVCache(config: cfg, capacity: 12))
        XCTAssertEqual(out.logits.data, plain.logits.data)
    }
}
