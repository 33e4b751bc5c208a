import Foundation
import XCTest
import TestSupport

/// `squint validate` with text models and `--llama-base`: which combinations of arguments are usage
/// errors (exit 64, before anything is read) and how files that are not text models are refused
/// (exit 1, one line naming the file). The figures themselves are checked in TextValidateTests and
/// RealLlamaAgreementTests.
final class TextValidateCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    let kld = Fixtures.path("llamacpp/kld/smollm2-c8-2.kld")
    let text = Fixtures.path("llamacpp/kld/text.txt")

    func testContradictoryArgumentsAreUsageErrors() throws {
        for (args, message) in [
            (["validate", "a.gguf", "b.gguf"], "--eval PAIRS.jsonl (Qwen-VL) or --text FILE"),
            (["validate", "a.gguf", "b.gguf", "--eval", "p.jsonl", "--text", text], "exclude each other"),
            (["validate", "a.gguf", "--text", text], "the quantized model"),
            (["validate", "a.gguf", "b.gguf", "--llama-base", kld], "give only MODEL"),
            (["validate", "a.gguf", "--llama-base", kld, "--save-base", "x"], "do not apply"),
            (["validate", "a.gguf", "b.gguf", "--text", text, "--limit", "2"], "--limit applies to --eval"),
            (["validate", "a.gguf", "b.gguf", "--eval", "p.jsonl", "--chunks", "2"], "--chunks applies to --text"),
            (["validate", "a.gguf", "b.gguf", "--text", text, "--ctx", "2"], "--ctx must be between"),
        ] {
            let r = try Fixtures.run(squint, args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains(message), "\(args): \(r.err)")
        }
    }

    func testAFolderThatIsNotATextModelIsRefusedByName() throws {
        let folder = Fixtures.path("qwen-vl-tiny")
        let r = try Fixtures.run(squint, ["validate", folder, "--llama-base", kld])
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("\(folder): not a text model"), r.err)
        XCTAssertEqual(r.err.split(separator: "\n").filter { $0.hasPrefix("squint: error") }.count, 1, r.err)
    }

    func testABrokenBaseFileIsRefusedBeforeAnyModelLoads() throws {
        let r = try Fixtures.run(squint, ["validate", Fixtures.path("qwen-vl-tiny"), "--llama-base", text])
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("\(text): invalid: not a llama-perplexity log-probability file"), r.err)
    }
}
