import Foundation
import XCTest
@testable import SquintTokenizer

/// `<img>PATH</img>` spans (SPEC 4.3): path bytes as ids, `<imgpad>` to 256, 258 ids per image.
final class ImageSpanTests: XCTestCase {
    let tok = TokenizerFixtures.tokenizer

    /// The span as SPEC 4.3 defines it, built independently of the encoder.
    func span(_ path: String) -> [Int] {
        let b = Array(path.utf8).map(Int.init)
        return [151857] + b + Array(repeating: 151859, count: 256 - b.count) + [151858]
    }

    func testSpecExampleUrlSpan() throws {
        let url = "https://qianwen-res.oss-cn-beijing.aliyuncs.com/Qwen-VL/assets/demo.jpeg"
        let ids = try tok.encode("<img>\(url)</img>")
        XCTAssertEqual(ids.count, 258)
        XCTAssertEqual(Array(ids[1 ... 4]), [104, 116, 116, 112])
        XCTAssertEqual(ids.filter { $0 == 151859 }.count, 184)
        XCTAssertEqual(ids, span(url))
    }

    func testPathsArePaddedAndEmptyAndFullPathsWork() throws {
        XCTAssertEqual(try tok.encode("<img></img>"), span(""))
        let full = String(repeating: "é", count: 128)  // 256 bytes: no padding at all
        XCTAssertEqual(try tok.encode("<img>\(full)</img>"), span(full))
        XCTAssertEqual(try tok.decode(span(full)), "<img>\(full)</img>")
        XCTAssertEqual(try tok.decode(span("a b.png"), skipSpecialTokens: true), "a b.png")
    }

    func testPathLongerThan256BytesIsRefused() {
        XCTAssertThrowsError(try tok.encode("<img>\(String(repeating: "x", count: 257))</img>")) {
            XCTAssertEqual($0 as? TokenizerError, .imagePathTooLong(bytes: 257, limit: 256))
        }
    }

    func testUnclosedSpanAndSpecialsInsideAreRefused() {
        XCTAssertThrowsError(try tok.encode("ab<img>x.png")) {
            XCTAssertEqual($0 as? TokenizerError, .unclosedImageSpan(position: 2))
        }
        XCTAssertThrowsError(try tok.encode("<img>a<ref>b</img>")) {
            XCTAssertEqual($0 as? TokenizerError, .specialTokenInImageSpan(token: "<ref>"))
        }
        XCTAssertThrowsError(try tok.decode([151857, 97, 151859])) {
            XCTAssertEqual($0 as? TokenizerError, .unclosedImageSpan(position: 0))
        }
        XCTAssertThrowsError(try tok.decode([151857, 300, 151858])) {
            XCTAssertEqual($0 as? TokenizerError, .malformedImageSpan(index: 0, problem: "id 300 at index 1 is not a byte"))
        }
        XCTAssertThrowsError(try tok.decode([151857, 0xFF, 151858])) {
            XCTAssertEqual($0 as? TokenizerError, .malformedImageSpan(index: 0, problem: "the path is not valid UTF-8"))
        }
    }

    func testImageTagsAreOrdinaryTextWhenNoSpecialIsAllowed() throws {
        let ids = try tok.encode("<img>x</img>", allowedSpecial: .noSpecial)
        XCTAssertFalse(ids.contains { $0 >= SpecialTokens.firstID })
        XCTAssertEqual(try tok.decode(ids), "<img>x</img>")
    }

    func testLoneClosingTagAndPadAreJustSpecialTokens() throws {
        XCTAssertEqual(try tok.encode("</img><imgpad>"), [151858, 151859])
    }

    func testOutOfRangeIdsAreRefused() {
        XCTAssertThrowsError(try tok.decode([1, 151860])) {
            XCTAssertEqual($0 as? TokenizerError, .unknownTokenID(id: 151860, index: 1))
        }
        XCTAssertThrowsError(try tok.decode([-1]))
    }

    func testSkipSpecialTokensCanKeepGroundingTags() throws {
        let ids = try tok.encode("<|im_start|><ref>a</ref><box>(1,2),(3,4)</box><img>p</img>")
        XCTAssertEqual(try tok.decode(ids, skipSpecialTokens: true), "a(1,2),(3,4)p")
        XCTAssertEqual(try tok.decode(ids, skipSpecialTokens: true, keepGroundingTags: true),
                       "<ref>a</ref><box>(1,2),(3,4)</box>p")
    }
}
