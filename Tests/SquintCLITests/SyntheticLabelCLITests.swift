import Foundation
import XCTest
import SquintFormats
import TestSupport

/// A model written by `synth` says so in its config, the label survives conversion into the SQ4
/// header, and `run`, `chat` and `validate` tell the user that its answers are noise by design.
final class SyntheticLabelCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    let vocab = Fixtures.path("tokenizer/qwen.tiktoken")

    func testSyntheticWeightsAreLabelledEverywhere() throws {
        let tmp = Fixtures.temporaryFolder("synthetic-label")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let s = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "--vocab", vocab, "-o", tmp + "/bf16"])
        XCTAssertEqual(s.status, 0, s.err)
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp + "/bf16/config.json"))) as! [String: Any]
        XCTAssertEqual(cfg["squint_synthetic"] as? Bool, true)
        // Every other member is the source config's, unchanged.
        let src = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("qwen-vl-tiny/config.json")))) as! [String: Any]
        XCTAssertEqual(Set(cfg.keys), Set(src.keys).union(["squint_synthetic"]))

        try FileManager.default.createDirectory(atPath: tmp + "/alone", withIntermediateDirectories: true)
        // Converted (RTN: no calibration needed), the SQ4 file alone carries the label in its header.
        let c = try Fixtures.run(squint, ["convert", tmp + "/bf16", "--method", "rtn", "-o", tmp + "/alone/tiny.sq4"])
        XCTAssertEqual(c.status, 0, c.err)
        let r = try Fixtures.run(squint, ["run", tmp + "/alone/tiny.sq4", "--vocab", vocab, "--prompt", "Hi", "--greedy", "--max-new-tokens", "1"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("has synthetic weights"), r.err)
        XCTAssertTrue(r.err.contains("noise by design"), r.err)

        // Self-contained: the SQ4 file carries the vocabulary (tokenizer.vocab_tensor), byte for byte, so
        // it runs with nothing beside it and gives the same tokens as with --vocab.
        let sq4 = try SquintInt4File(path: tmp + "/alone/tiny.sq4")
        let name = try XCTUnwrap(sq4.header.tokenizer.vocabTensor)
        XCTAssertEqual(Array(try sq4.view(name).bytes), Array(try Data(contentsOf: URL(fileURLWithPath: vocab))))
        try FileManager.default.removeItem(atPath: tmp + "/alone/tiny.sq4.log.json")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp + "/alone"), ["tiny.sq4"])
        let alone = try Fixtures.run(squint, ["run", "tiny.sq4", "--prompt", "Hi", "--greedy", "--max-new-tokens", "3", "--json"], cwd: tmp + "/alone")
        let withVocab = try Fixtures.run(squint, ["run", "tiny.sq4", "--prompt", "Hi", "--greedy", "--max-new-tokens", "3", "--json", "--vocab", vocab],
                                         cwd: tmp + "/alone")
        XCTAssertEqual(alone.status, 0, alone.err)
        func ids(_ s: String) throws -> [Int]? { (try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])?["generated_ids"] as? [Int] }
        XCTAssertEqual(try ids(alone.out), try ids(withVocab.out))
        XCTAssertEqual(try ids(alone.out)?.count, 3)

        let chat = try Fixtures.run(squint, ["chat", tmp + "/bf16", "--max-new-tokens", "1"], stdin: ":quit\n")
        XCTAssertEqual(chat.status, 0, chat.err)
        XCTAssertTrue(chat.out.contains("has synthetic weights"), chat.out)

        let v = try Fixtures.run(squint, ["validate", tmp + "/bf16", tmp + "/alone/tiny.sq4", "--eval", Fixtures.path("calibration/pairs.jsonl"),
                                          "--limit", "1", "--greedy-tokens", "0", "--report", tmp + "/report"])
        XCTAssertEqual(v.status, 0, v.err)
        XCTAssertTrue(v.out.contains("note: synthetic weights"), v.out)
        let html = try String(contentsOfFile: tmp + "/report/index.html", encoding: .utf8)
        XCTAssertTrue(html.contains("synthetic weights (squint synth)"))
    }
}
