import Foundation
import XCTest
@testable import SquintTokenizer

/// The strict `.tiktoken` loader: each malformed line is refused with file and line.
final class VocabularyTests: XCTestCase {
    func load(_ text: String) throws -> BPERanks { try BPERanks(tiktokenData: Array(text.utf8), file: "v.tiktoken") }

    func assertRefused(_ text: String, line: Int, containing needle: String, file: StaticString = #filePath, l: UInt = #line) {
        XCTAssertThrowsError(try load(text), file: file, line: l) { error in
            guard case let .malformedVocabulary(f, ln, problem) = error as? TokenizerError else {
                return XCTFail("unexpected \(error)", file: file, line: l)
            }
            XCTAssertEqual(f, "v.tiktoken", file: file, line: l)
            XCTAssertEqual(ln, line, file: file, line: l)
            XCTAssertTrue(problem.contains(needle), "\(problem)", file: file, line: l)
            XCTAssertTrue("\(error)".hasPrefix("v.tiktoken:\(line): "), file: file, line: l)
        }
    }

    func testTheRealFileHasTheSpecShape() throws {
        let r = TokenizerFixtures.tokenizer.ranks
        XCTAssertEqual(r.count, 151643)
        XCTAssertEqual(Array(r.tokenBytes(0)), Array("!".utf8))  // SPEC 4.1
        XCTAssertEqual(Array(r.tokenBytes(255)), [0xAD])
        XCTAssertEqual(Array(r.tokenBytes(198)), [0x0A])
        XCTAssertEqual(Array(r.tokenBytes(220)), [0x20])
        XCTAssertEqual(Array(r.tokenBytes(271)), [0x0A, 0x0A])
    }

    func testWellFormedSmallFileLoads() throws {
        let r = try load("YQ== 0\nYg== 1\nYWI= 2\n")
        XCTAssertEqual(r.count, 3)
        XCTAssertEqual(Array(r.tokenBytes(2)), Array("ab".utf8))
        XCTAssertEqual(try load("YQ== 0\nYg== 1").count, 2)  // final newline optional
    }

    func testBadBase64IsRefused() {
        assertRefused("YQ== 0\nY!== 1\n", line: 2, containing: "'!' is not in the base64 alphabet")
        assertRefused("YQ== 0\nYWJ 1\n", line: 2, containing: "not a multiple of 4")
        assertRefused("YQ=a 0\n", line: 1, containing: "after '=' padding")
        assertRefused("YR== 0\n", line: 1, containing: "non-canonical")
    }

    func testMissingRankIsRefused() {
        assertRefused("YQ== 0\nYg==\n", line: 2, containing: "missing rank")
        assertRefused("YQ== 0\nYg== \n", line: 2, containing: "not a decimal number")
        assertRefused("YQ== 0\nYg== 1 2\n", line: 2, containing: "more than one space")
    }

    func testNonContiguousRanksAreRefused() {
        assertRefused("YQ== 0\nYg== 2\n", line: 2, containing: "out of sequence")
        assertRefused("YQ== 1\n", line: 1, containing: "out of sequence")
        assertRefused("YQ== 0\nYg== 01\n", line: 2, containing: "not a decimal number")
    }

    func testBlankLinesDuplicatesAndCarriageReturnsAreRefused() {
        assertRefused("YQ== 0\n\nYg== 1\n", line: 2, containing: "empty line")
        assertRefused("YQ== 0\nYQ== 1\n", line: 2, containing: "duplicates the one of rank 0")
        assertRefused("YQ== 0\r\n", line: 1, containing: "not a decimal number")
    }

    func testWrongVocabularyAndMissingFileAreRefused() throws {
        XCTAssertThrowsError(try QwenTokenizer(ranks: load("YQ== 0\n"), file: "v.tiktoken")) {
            XCTAssertEqual($0 as? TokenizerError, .wrongVocabulary(file: "v.tiktoken", problem: "1 ranks, expected 151643"))
        }
        XCTAssertThrowsError(try QwenTokenizer(vocabularyFile: "/nonexistent/qwen.tiktoken")) {
            XCTAssertEqual($0 as? TokenizerError, .cannotRead(file: "/nonexistent/qwen.tiktoken", reason: "no such file"))
        }
    }
}
