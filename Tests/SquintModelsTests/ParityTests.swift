import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// Stage-by-stage parity of the float32 forward pass with the official Qwen-VL-Chat code, on the
/// tiny synthetic model (fixtures/qwen-vl-tiny, seed 20240611). Inputs are the reference's own
/// pixel_values and input_ids, so each stage is checked in isolation from preprocessing/tokenizing.
final class ParityTests: XCTestCase {
    var run: TinyRun!
    override func setUpWithError() throws { run = try TinyRun.shared.get() }

    func ref(_ name: String) throws -> [Float] { try run.reference.floats(name).values }

    func testPositionEmbeddingBicubicInterpolationMatchesTorch() throws {
        XCTAssertEqual(run.vit.posEmbedInterp.shape, [1024, 64])
        assertClose(run.vit.posEmbedInterp.data, try ref("vit_pos_embed_interp"), Tol.interp, "vit_pos_embed_interp")
    }

    func testViTEmbeddingAfterLnPre() throws {
        assertClose(run.vit.embed[0].data, try ref("vit_embed"), Tol.vit, "vit_embed")
    }

    func testEveryViTBlockOutput() throws {
        XCTAssertEqual(run.vit.blockOutputs.count, run.config.visual.layers)
        for l in 0..<run.config.visual.layers {
            assertClose(run.vit.blockOutputs[l][0].data, try ref("vit_block_out.\(l)"), Tol.vit, "vit_block_out.\(l)")
        }
        assertClose(run.vit.vitOut[0].data, try ref("vit_out"), Tol.vit, "vit_out")
    }

    func testResamplerKeyPositionTableAndOutput() throws {
        assertClose(run.vit.resamplerPosK.data, try ref("resampler_pos_k"), Tol.interp, "resampler_pos_k")
        assertClose(run.vit.resamplerOut[0].data, try ref("resampler_out"), Tol.resampler, "resampler_out")
    }

    func testImageFeatures() throws {
        XCTAssertEqual(run.features.shape, [1, 256, 128])
        assertClose(run.features.data, try ref("image_features"), Tol.resampler, "image_features")
    }

    func testHiddenStatesEnteringEachBlockAndAfterLnF() throws {
        let (shape, hs) = try run.reference.floats("hidden_states")
        XCTAssertEqual(run.prefill.hiddenStates.count, shape[0])
        let per = shape[1] * shape[2]
        for i in 0..<shape[0] {
            assertClose(run.prefill.hiddenStates[i].data, Array(hs[(i * per)..<((i + 1) * per)]), Tol.hidden,
                        "hidden_states[\(i)]")
        }
    }

    func testImageFeaturesAreSplicedBetweenTheImageTags() throws {
        // hidden_states[0] rows 20...275 are the image features; rows 19 (<img>) and 276 (</img>) are wte rows.
        let h = run.config.hiddenSize
        let emb = run.prefill.hiddenStates[0].data
        XCTAssertEqual(Array(emb[(20 * h)..<(276 * h)]), run.features.data)
        XCTAssertEqual(run.ids[19], 151857)
        XCTAssertEqual(run.ids[276], 151858)
    }

    func testLogitsTop20IdsAtEveryPositionAndValues() throws {
        let S = run.ids.count, v = run.config.vocabSize
        let logits = run.prefill.logits
        XCTAssertEqual(logits.shape, [S, v])
        let refIds = try run.reference.ints("topk_ids").values, refTop = try ref("topk_logits")
        var ourTop: [Float] = [], ourTopAtRef: [Float] = []   // our top-20 values; our logits at the reference ids
        for p in 0..<S {
            let row = logits.row(p)
            let top = topK(row, 20)
            assertSameTopK(top, refIds[(p * 20)..<((p + 1) * 20)], refTop[(p * 20)..<((p + 1) * 20)], row: row, Tol.logits,
                           "top-20 ids at position \(p)")
            ourTop += top.map { $0.1 }
            ourTopAtRef += refIds[(p * 20)..<((p + 1) * 20)].map { row[row.startIndex + Int($0)] }
        }
        assertClose(ourTopAtRef, refTop, Tol.logits, "topk_logits (our logits at the reference ids)")
        assertClose(ourTop, refTop, Tol.logits, "topk_logits (our top-20 values)")
        let last16 = Array(logits.data[((S - 16) * v)...])
        assertClose(last16, try ref("logits_last16"), Tol.logits, "logits_last16")
    }

    func testLogSumExpAtEveryPosition() throws {
        let S = run.ids.count
        var lse: [Float] = []
        for p in 0..<S {
            let row = run.prefill.logits.row(p)
            let m = row.max()!
            let s = row.reduce(0.0) { $0 + exp(Double($1 - m)) }
            lse.append(Float(Double(m) + log(s)))
        }
        assertClose(lse, try ref("logsumexp"), Tol.logsumexp, "logsumexp")
    }

    func testGreedyDecodingWithKVCacheMatchesReference() throws {
        let refIds = try run.reference.ints("greedy_ids").values
        XCTAssertEqual(run.greedy.ids, refIds)
        let (shape, refLogits) = try run.reference.floats("greedy_logits")
        XCTAssertEqual(run.greedy.logits.count, shape[0])
        for k in 0..<shape[0] {
            assertClose(run.greedy.logits[k], Array(refLogits[(k * shape[1])..<((k + 1) * shape[1])]), Tol.logits,
                        "greedy_logits[\(k)]")
        }
    }
}
