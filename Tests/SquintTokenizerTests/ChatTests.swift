import Foundation
import XCTest
@testable import SquintTokenizer

/// Prompts built by the official make_context / the calibration rendering rule.
final class ChatTests: XCTestCase {
    let tok = TokenizerFixtures.tokenizer

    func testQwenVLTinyPromptMatchesTheOfficialMakeContext() throws {
        let ref = try TokenizerFixtures.json("qwen_vl_tiny_prompt.json")
        let list = try XCTUnwrap(ref["list_format"] as? [[String: String]])
        let elements: [ChatElement] = list.map { $0["image"].map(ChatElement.image) ?? .text($0["text"]!) }
        let query = QwenTokenizer.fromListFormat(elements)
        XCTAssertEqual(query, ref["query"] as? String)
        let ctx = try tok.makeContext(query: query, system: try XCTUnwrap(ref["system"] as? String))
        XCTAssertEqual(ctx.rawText, ref["raw_text"] as? String)
        let expected = try intArray(ref["input_ids"])
        XCTAssertEqual(expected.count, 292)
        XCTAssertEqual(ctx.tokens, expected)
        XCTAssertEqual(ctx.tokens[19], SpecialTokens.imageStart)
        XCTAssertEqual(ctx.tokens[276], SpecialTokens.imageEnd)
    }

    func testCalibrationPairZeroMatchesTheWorkedExample() throws {
        let cal = try TokenizerFixtures.json("calibration_pairs.json")
        let pair = try XCTUnwrap((cal["pairs"] as? [[String: String]])?.first)
        let expected = try intArray(cal["pair0_ids"])
        XCTAssertEqual(expected.count, 338)
        let ids = try tok.calibrationTokens(image: pair["image"]!, prompt: pair["prompt"]!, caption: pair["caption"]!)
        XCTAssertEqual(ids, expected)
        let ctx = try tok.makeContext(query: QwenTokenizer.fromListFormat([.image(pair["image"]!), .text(pair["prompt"]!)]))
        XCTAssertEqual(ctx.tokens.count, 287)
        // The README's text form of the whole sequence.
        XCTAssertEqual(try tok.decode(ids),
                       "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nPicture 1: <img>images/skimage_astronaut.png</img>\nDescribe this image.<|im_end|>\n<|im_start|>assistant\nColor image of the astronaut Eileen Collins. Photograph of Eileen Collins, an American astronaut. She was selected as an astronaut in 1992 and first piloted the space shuttle STS-63 in 1995.<|im_end|>")
    }

    func testSpecVerifiedIdsOfRolesAndSystemPrompt() throws {
        // SPEC 4.4 "Verified ids".
        XCTAssertEqual(try tok.encode("system"), [8948])
        XCTAssertEqual(try tok.encode("user"), [872])
        XCTAssertEqual(try tok.encode("assistant"), [77091])
        XCTAssertEqual(try tok.encode("You are a helpful assistant."), [2610, 525, 264, 10950, 17847, 13])
        XCTAssertEqual(try tok.encode("\n"), [198])
    }

    func testGreedyDecodeOfTheTinyModelMatchesTheOfficialText() throws {
        // Includes a token cut inside a UTF-8 character (e6 ad), decoded to U+FFFD like Python.
        let g = try XCTUnwrap(try TokenizerFixtures.json("qwen_vl_tiny_prompt.json")["greedy_decode"] as? [String: Any])
        let ids = try intArray(g["ids"])
        XCTAssertEqual(try tok.decode(ids), g["text"] as? String)
        let hex = try XCTUnwrap(g["token_bytes_hex"] as? [String])
        XCTAssertEqual(try ids.map { try tok.tokenBytes($0).map { String(format: "%02x", $0) }.joined() }, hex)
    }

    func testHistoryIsDroppedFromTheOldestTurnAndTurnsAreJoinedByNewlines() throws {
        let h = [ChatTurn(query: "one", response: "1"), ChatTurn(query: "two", response: "2")]
        let full = try tok.makeContext(query: "three", history: h)
        XCTAssertEqual(full.rawText,
                       "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\none<|im_end|>\n<|im_start|>assistant\n1<|im_end|>\n<|im_start|>user\ntwo<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\nthree<|im_end|>\n<|im_start|>assistant\n")
        // Token level = the text with every segment encoded on its own (SPEC 4.4).
        func turn(_ role: String, _ content: String) throws -> [Int] {
            [151644] + (try tok.encode(role)) + [198] + (try tok.encode(content)) + [151645]
        }
        let sys = try turn("system", "You are a helpful assistant.")
        let t1 = [198] + (try turn("user", "one")) + [198] + (try turn("assistant", "1"))
        let t2 = [198] + (try turn("user", "two")) + [198] + (try turn("assistant", "2"))
        let tail = [198] + (try turn("user", "three")) + [198, 151644, 77091, 198]
        XCTAssertEqual(full.tokens, sys + t1 + t2 + tail)
        // A window that fits system + the newest turn only (strictly below the limit).
        let window = sys.count + t2.count + 1
        let cut = try tok.makeContext(query: "three", history: h, maxWindowSize: window)
        XCTAssertEqual(cut.tokens, sys + t2 + tail)
        XCTAssertFalse(cut.rawText.contains("one"))
        // At exactly the limit the newest turn is dropped too; older turns are never tried after.
        let none = try tok.makeContext(query: "three", history: h, maxWindowSize: window - 1)
        XCTAssertEqual(none.tokens, sys + tail)
    }

    func testSpecialTokensTypedInContentStayText() throws {
        let ctx = try tok.makeContext(query: "a<|im_end|>b")
        XCTAssertEqual(ctx.tokens.filter { $0 == SpecialTokens.imEnd }.count, 2)  // system + user turn only
    }

    func testFromListFormatBuildsPicturesTextAndBoxes() {
        let q = QwenTokenizer.fromListFormat([
            .image("a.png"), .image("b.jpg"), .text("Find "),
            .box(ref: "the cat", boxes: [BoxCorners(1, 2, 3, 4), BoxCorners(5, 6, 7, 8)]), .box(ref: nil, boxes: [BoxCorners(0, 0, 999, 999)]),
        ])
        XCTAssertEqual(q, "Picture 1: <img>a.png</img>\nPicture 2: <img>b.jpg</img>\nFind <ref>the cat</ref><box>(1,2),(3,4)</box><box>(5,6),(7,8)</box><box>(0,0),(999,999)</box>")
        XCTAssertEqual(QwenTokenizer.fromListFormat([.image("x")], spaceAfterPictureColon: false), "Picture 1:<img>x</img>\n")
    }

    func testResponseExtractionStopsAtTheFirstStopTokenAndStrips() throws {
        let answer = try tok.encode("  A cat.\n")
        XCTAssertEqual(try tok.extractResponse(generated: answer + [151645, 151643] + answer), "A cat.")
        XCTAssertEqual(try tok.extractResponse(generated: answer + [151644]), "A cat.")
        XCTAssertEqual(try tok.extractResponse(generated: answer), "A cat.")
        XCTAssertEqual(QwenTokenizer.stopWords, [[151645], [151644]])
        // Official decode_tokens: prompt removed by character count; without a stop token the last id is lost.
        let ctx = try tok.makeContext(query: "Hi")
        let raw = ctx.rawText.unicodeScalars.count
        XCTAssertEqual(try tok.decodeResponseOfficially(ctx.tokens + answer + [151645], rawTextLength: raw,
                                                         contextLength: ctx.tokens.count), "A cat.")
        XCTAssertEqual(try tok.decodeResponseOfficially(ctx.tokens + answer + [13], rawTextLength: raw,
                                                         contextLength: ctx.tokens.count), "A cat.")
    }

    func testBoxesArePairedWithTheRefDirectlyBeforeThem() throws {
        let r = "图中<ref> 击掌 </ref><box>(536,509),(588,602)</box>和<box>(1,2),(3,4)</box><ref>x</ref>y<box>(5, 6),(7,8)</box>"
        XCTAssertEqual(try QwenTokenizer.extractBoxes(from: r), [
            GroundedBox(ref: "击掌", box: BoxCorners(536, 509, 588, 602)),
            GroundedBox(ref: nil, box: BoxCorners(1, 2, 3, 4)),
            GroundedBox(ref: nil, box: BoxCorners(5, 6, 7, 8)),
        ])
        XCTAssertEqual(try QwenTokenizer.toListFormat("a<img>p.png</img><quad>(1,2)</quad>"),
                       [.text("a"), .image("p.png"), .quad("(1,2)")])
        XCTAssertThrowsError(try QwenTokenizer.extractBoxes(from: "<box>(1,2),(3)</box>")) {
            XCTAssertEqual($0 as? TokenizerError, .malformedBox(text: "(1,2),(3)"))
        }
        XCTAssertThrowsError(try QwenTokenizer.extractBoxes(from: "ok <box>(1,2)")) {
            XCTAssertEqual($0 as? TokenizerError, .unclosedTag(tag: "<box>", position: 3))
        }
    }

    func testLatestPictureSearchesTheResponseThenNewerQueriesFirst() throws {
        let h = [ChatTurn(query: "Picture 1: <img>a.png</img>\nhi", response: "<img>r.png</img>"),
                 ChatTurn(query: "Picture 2: <img>b.png</img>\nPicture 3: <img>c.png</img>\n", response: "ok")]
        XCTAssertEqual(try QwenTokenizer.latestPicture(response: "<box>(1,2),(3,4)</box>", history: h), "c.png")
        XCTAssertEqual(try QwenTokenizer.latestPicture(response: "<img>d.png</img>", history: h), "d.png")
        XCTAssertEqual(try QwenTokenizer.latestPicture(response: "x", history: [h[0]]), "a.png")
        XCTAssertNil(try QwenTokenizer.latestPicture(response: "x"))
    }
}
