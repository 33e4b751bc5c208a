import Foundation
import XCTest
import SquintFormats
@testable import SquintPipeline
import TestSupport

/// Squint's logits of real models against the log-probabilities llama.cpp stored for the SAME model
/// (`llama-perplexity --kl-divergence-base`, Formats/LLAMA_KLD.md), through `validate --llama-base`'s
/// code. Skipped without the model cache (`bash scripts/models.sh`; the 0.5B's F16 file and its .kld
/// as docs/QUALITY.md "Setup" makes them).
///
/// The bound (>= 99 % same top-1, issue 14.5) is not a float32 tolerance: llama.cpp runs the F16
/// weights with F16-rounded activations in its matrix products and stores log-probabilities rounded
/// to 16 bits (<= 1.2e-4 nats); Squint runs float32. Those differences flip the arg-max only where
/// the two best tokens are within about 1e-3 nats of each other.
final class RealLlamaAgreementTests: XCTestCase {
    static var cache: String { RealPerplexityTests.cache }

    func testQwen05BF16AgreesWithLlamaCppOnAliceOnAtLeast99PercentOfPositions() throws {
        let model = Self.cache + "/quality/q05-f16.gguf", kld = Self.cache + "/quality/q05-f16-alice-c512-10.kld"
        let text = Self.cache + "/texts/alice29.txt"
        guard [model, kld, text].allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else {
            throw XCTSkip("the real model cache is absent (scripts/models.sh, then docs/QUALITY.md's q05-f16.gguf and its "
                          + "--kl-divergence-base file q05-f16-alice-c512-10.kld)")
        }
        let m = try TextModel.open(model)
        let r = try LlamaBaseComparison.run(model: m, modelName: "q05-f16.gguf", base: try LlamaKLDFile(path: kld),
                                            text: try String(contentsOfFile: text, encoding: .utf8), options: .init(chunks: 2))
        XCTAssertEqual(r.positions, 2 * 255)
        XCTAssertGreaterThanOrEqual(r.top1Agreement, 0.99)
        // The same model: KL far below any quantization's (Q8_0 gives ~1e-3 on this model).
        XCTAssertLessThan(r.klMean, 1e-3)
        XCTAssertEqual(r.pplRatio, 1, accuracy: 0.01)
    }

    /// The committed fixture (SmolLM2-135M, 6 scored positions) against Squint's run of the same file.
    func testSmolLM2AgreesWithTheCommittedFixture() throws {
        let model = Self.cache + "/models/smollm2-135m-instruct-q4_1.gguf"
        guard FileManager.default.fileExists(atPath: model) else { throw XCTSkip("the real model cache is absent (bash scripts/models.sh)") }
        let m = try TextModel.open(model)
        let text = try String(contentsOfFile: Fixtures.path("llamacpp/kld/text.txt"), encoding: .utf8)
        let r = try LlamaBaseComparison.run(model: m, modelName: "smollm2", base: try LlamaKLDFile(path: Fixtures.path("llamacpp/kld/smollm2-c8-2.kld")),
                                            text: text)
        XCTAssertEqual(r.positions, 6)
        // The reference side is the file: llama-perplexity printed PPL = 319.3224 for these 6 tokens
        // (16-bit rounding of the stored log-probabilities: <= 1.3e-4 relative).
        XCTAssertEqual(r.pplBF16, 319.3224, accuracy: 319.3224 * 1.3e-4 + 5e-5)
        // llama.cpp multiplies the Q4_1 weights with 8-bit activations, Squint with float32 ones: the
        // same model within 1 % on the perplexity and a small KL. One of the six positions is a near
        // tie that the activation rounding decides (' the' vs ' that', KL 0.004), so 5 of 6 agree.
        XCTAssertEqual(r.pplInt4, r.pplBF16, accuracy: 0.01 * r.pplBF16)
        XCTAssertLessThan(r.klMean, 0.02)
        XCTAssertGreaterThanOrEqual(r.top1Agreement, 5.0 / 6)
        // A text that does not give the file's tokens is refused.
        XCTAssertThrowsError(try LlamaBaseComparison.check(model: m, base: try LlamaKLDFile(path: Fixtures.path("llamacpp/kld/smollm2-c8-2.kld")),
                                                           text: "Another text entirely, with other words in it."))
    }
}
