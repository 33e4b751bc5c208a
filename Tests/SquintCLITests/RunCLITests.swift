import Foundation
import XCTest
import SquintFormats
import TestSupport

/// `squint run` end to end on the reference's tiny model (written by `synth`) and its prompt: the
/// greedy answer, the dumped prompt ids, logits and image features equal the official outputs in
/// fixtures/qwen-vl-tiny/reference.safetensors.
final class RunCLITests: XCTestCase {
    static var tmp = ""
    let squint = Fixtures.squintExecutable()

    override class func setUp() {
        tmp = Fixtures.temporaryFolder("run")
        let r = try! Fixtures.run(Fixtures.squintExecutable(), ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"),
                                                                "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "-o", tmp + "/model"])
        precondition(r.status == 0, r.err)
        // The reference prompt names "image.png" relative to the working directory (= skimage chelsea).
        try! FileManager.default.copyItem(atPath: Fixtures.path("images/photos/skimage_chelsea.png"), toPath: tmp + "/image.png")
    }
    override class func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func testGreedyAnswerAndDumpMatchTheOfficialImplementation() throws {
        let tmp = Self.tmp
        let r = try Fixtures.run(squint, ["run", "model", "--image", "image.png", "--prompt", "What is in this picture? Answer briefly.",
                                          "--greedy", "--max-new-tokens", "8", "--dump", "dump.safetensors", "--json"], cwd: tmp)
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        let ref = try FixtureSafetensors(path: Fixtures.path("qwen-vl-tiny/reference.safetensors"))
        XCTAssertEqual(obj["generated_ids"] as? [Int], try ref.ints("greedy_ids").values.map(Int.init))

        let dump = try FixtureSafetensors(path: tmp + "/dump.safetensors")
        XCTAssertEqual(try dump.ints("input_ids").values, try ref.ints("input_ids").values)
        let logits = try dump.floats("logits"), topk = try ref.ints("topk_ids"), topv = try ref.floats("topk_logits")
        let vocab = logits.shape[1], positions = logits.shape[0]
        XCTAssertEqual(positions, topk.shape[0])
        for p in 0..<positions {
            let row = logits.values[(p * vocab)..<((p + 1) * vocab)]
            XCTAssertEqual(top20(row, base: p * vocab), Array(topk.values[(p * 20)..<((p + 1) * 20)]), "top-20 at position \(p)")
            // Same tolerance as the model parity tests: rtol 1e-5, atol 1e-4 on logits of magnitude ~20.
            for k in 0..<20 {
                let want = topv.values[p * 20 + k], got = row[p * vocab + Int(topk.values[p * 20 + k])]
                XCTAssertEqual(got, want, accuracy: 1e-4 + 1e-5 * abs(want))
            }
        }
        let feats = try dump.floats("image_features"), refFeats = try ref.floats("image_features")
        XCTAssertEqual(feats.shape, refFeats.shape)
        for (a, b) in zip(feats.values, refFeats.values) { XCTAssertEqual(a, b, accuracy: 1e-5 + 1e-5 * abs(b)) }
    }

    /// Ids of the 20 largest values, largest first, lower id first on ties (torch.topk order here).
    func top20(_ row: ArraySlice<Float>, base: Int) -> [Int32] {
        var best: [(v: Float, i: Int)] = []
        for i in row.indices {
            let v = row[i]
            if best.count == 20, v <= best[19].v { continue }
            let at = best.firstIndex { v > $0.v } ?? best.count
            best.insert((v, i), at: at)
            if best.count > 20 { best.removeLast() }
        }
        return best.map { Int32($0.i - base) }
    }

    /// An interactive session through stdin: the first turn is the same prompt as `run`, so the answer
    /// is the official greedy decode text; the second turn carries the first as history.
    func testChatAnswersAndKeepsHistory() throws {
        let input = ":image image.png\nWhat is in this picture? Answer briefly.\nAnd now?\n:quit\n"
        let r = try Fixtures.run(squint, ["chat", "model", "--greedy", "--max-new-tokens", "8"], cwd: Self.tmp, stdin: input)
        XCTAssertEqual(r.status, 0, r.err)
        let expected = (try Fixtures.json("tokenizer/qwen_vl_tiny_prompt.json") as! [String: Any])["greedy_decode"] as! [String: Any]
        let text = (expected["text"] as! String).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(r.out.contains("(image 1 attached: image.png)"), r.out)
        XCTAssertTrue(r.out.contains(text), r.out)
        // Two answers were produced (one per question), each on its own line after a prompt.
        XCTAssertEqual(r.out.components(separatedBy: "> ").count - 1, 4, r.out)
    }

    func testUnreadableImageNamesTheFile() throws {
        FileManager.default.createFile(atPath: Self.tmp + "/broken.png", contents: Data("not a png".utf8))
        let r = try Fixtures.run(squint, ["run", "model", "--image", "broken.png", "--prompt", "hi", "--max-new-tokens", "2"], cwd: Self.tmp)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("broken.png"), r.err)
    }

    func testMissingVocabularyIsExplained() throws {
        let bare = Self.tmp + "/bare"
        let s = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "-o", bare])
        XCTAssertEqual(s.status, 0, s.err)
        let r = try Fixtures.run(squint, ["run", bare, "--prompt", "hi"], cwd: Self.tmp)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("qwen.tiktoken"), r.err)
    }
}
