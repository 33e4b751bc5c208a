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

    /// GPTQ's staged passes (blockInputs to c_proj, then blockFrom c_proj / w1 / mlp.c_proj with the
    /// activations kept from the previous stage) end exactly where one full run does, bit for bit, and
    /// each stage observes the same linear inputs as the full run.
    func testStagedBlockPassesEqualOneFullRunBitForBit() throws {
        let (shape, hs) = try run.reference.floats("hidden_states")
        let S = shape[1], h = shape[2], f = run.config.mlpWidth
        let input = Array(hs[(S * h)..<(2 * S * h)])     // block 1's input, through block 1
        let lm = run.model.language
        var seen: [QwenLM.BlockLinear: [Float]] = [:]
        lm.linearInputObserver = { l, m, p, n in
            if l == 1 { seen[m] = Array(UnsafeBufferPointer(start: p, count: n * (m == .mlpProj ? f : h))) }
        }
        defer { lm.linearInputObserver = nil }
        var full = FloatTensor(shape: [S, h], data: input)
        lm.block(1, &full)
        let fullSeen = seen
        XCTAssertEqual(Set(fullSeen.keys), Set(QwenLM.BlockLinear.allCases))

        seen = [:]
        var x = FloatTensor(shape: [S, h], data: input)
        lm.blockInputs(1, &x, upTo: .cProj)
        let attention = try XCTUnwrap(seen[.cProj])
        XCTAssertEqual(x.data, input, "stopping at c_proj's input leaves the residual untouched")
        lm.blockFrom(1, &x, start: .cProj, input: attention, upTo: .w1)
        let residual = x.data
        XCTAssertNotEqual(residual, input)
        x = FloatTensor(shape: [S, h], data: residual)
        lm.blockFrom(1, &x, start: .w1, input: nil, upTo: .mlpProj)
        let mlpInput = try XCTUnwrap(seen[.mlpProj])
        x = FloatTensor(shape: [S, h], data: residual)
        lm.blockFrom(1, &x, start: .mlpProj, input: mlpInput, upTo: nil)
        XCTAssertEqual(x.data, full.data, "staged passes must reproduce the full block exactly")
        for m in QwenLM.BlockLinear.allCases { XCTAssertEqual(seen[m], fullSeen[m], "\(m.rawValue) input") }
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

    func testTwoImagesAreEncodedIndependentlyAndSplicedInOrder() throws {
        let px = try run.reference.floats("pixel_values").values
        // Image 0 = the reference picture, image 1 = its negative (a different input).
        let pair = FloatTensor(shape: [2, 3, 448, 448], data: px + px.map { -$0 })
        let f = try run.model.vision.encode(pixelValues: pair)
        XCTAssertEqual(f.shape, [2, 256, 128])
        let per = 256 * 128
        XCTAssertEqual(Array(f.data[0..<per]), run.features.data, "image 0 does not depend on image 1")
        XCTAssertNotEqual(Array(f.data[per...]), run.features.data)
        let span = [Int32(151857)] + [Int32](repeating: 151859, count: 256) + [151858]
        let ids = [Int32(198)] + span + [198] + span
        let e = try run.model.language.embed(ids: ids, imageFeatures: f)
        let h = 128
        XCTAssertEqual(Array(e.data[(2 * h)..<((2 + 256) * h)]), Array(f.data[0..<per]))
        XCTAssertEqual(Array(e.data[((260 + 1) * h)..<((260 + 257) * h)]), Array(f.data[per...]))
        XCTAssertThrowsError(try run.model.language.embed(ids: ids, imageFeatures: run.features), "2 <img> tags, 1 image")
    }
}
