import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// The shared decoder on real weights: Qwen2.5-Coder-0.5B-Instruct (qwen2: 24 layers, 14 heads over
/// 2 KV heads, q/k/v biases, separate lm_head) and SmolLM2-135M-Instruct (llama: 30 layers, 9 heads
/// over 3, tied) as transformers dequantises their GGUF files, against transformers' own float32
/// outputs. The float32 folders live in the cache (`scripts/fixtures/make_real_decoder_references.py`
/// writes them from scripts/models.sh's GGUF files); without them these tests skip. The committed
/// fixtures (fixtures/decoders/real/) hold the prompt, each position's top-5 logits, logsumexp and
/// transformers' greedy ids.
///
/// Tolerance: the same float32 graph as the tiny-model parity tests but 24-30 layers deep, with
/// 896/4864-term dot products and Qwen2's outlier activations, so summation-order differences
/// compound: observed max |diff| over all logits (|x| up to 28) is 2.4e-5 (Qwen) and 4.4e-5 (SmolLM2)
/// on this machine (print with SQUINT_PARITY_VERBOSE=1). `realLogits` (rtol 2e-5, atol 2e-4) leaves
/// 4-5x for other summation orders (AVX2-only, 1 thread). Greedy ids must match exactly: the smallest
/// top-1/top-2 gap over the greedy steps is 4.1e-3 (SmolLM2; fixture `greedy_gaps`), ~100x the
/// observed difference.
final class RealDecoderTests: XCTestCase {
    static let realLogits = (rtol: Float(2e-5), atol: Float(2e-4))
    static var cache: String {
        ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
    }

    func check(_ name: String, family: String) throws {
        let folder = Self.cache + "/hf/" + name
        try XCTSkipUnless(FileManager.default.fileExists(atPath: folder + "/model.safetensors"),
                          "no \(folder): run scripts/models.sh, then python3 scripts/fixtures/make_real_decoder_references.py")
        let fx = try FixtureSafetensors(path: fixturePath("decoders/real/\(name).safetensors"))
        let model = try DecoderLM.load(folder: folder)
        XCTAssertEqual(model.architecture.name, family)
        let ids = try fx.ints("input_ids").values
        let logits = try model.prefill(tokens: ids, cache: model.makeCache()).logits
        let v = model.dims.vocab, k = 5
        let topIds = try fx.ints("top_ids").values, topLogits = try fx.floats("top_logits").values
        var ours: [Float] = [], lse: [Float] = []
        for s in 0..<ids.count {
            let row = logits.row(s)
            for j in 0..<k { ours.append(row[row.startIndex + Int(topIds[s * k + j])]) }
            lse.append(Float(DecoderLM.logSumExp(row)))
            XCTAssertEqual(argmax(Array(row)), Int(topIds[s * k]), "\(name) top-1 at position \(s)")
        }
        assertClose(ours, topLogits, Self.realLogits, "\(name) top-5 logits")
        assertClose(lse, try fx.floats("logsumexp").values, Self.realLogits, "\(name) logsumexp")
        let full = folder + "/reference.safetensors"
        if FileManager.default.fileExists(atPath: full) {
            let e = try FixtureSafetensors(path: full).floats("logits")
            XCTAssertEqual(e.shape, [ids.count, v])
            assertClose(logits.data, e.values, Self.realLogits, "\(name) all logits")
        }
        let expected = try fx.ints("greedy_ids").values
        XCTAssertEqual(try model.generate(prompt: ids, maxNewTokens: expected.count), expected, "\(name) greedy ids")
    }

    func testQwen25Coder05BMatchesTransformers() throws { try check("qwen2.5-coder-0.5b-instruct", family: "qwen2") }
    func testSmolLM2135MMatchesTransformers() throws { try check("smollm2-135m-instruct", family: "llama") }
}
