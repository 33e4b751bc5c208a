import Foundation
import XCTest
@testable import SquintTokenizer

/// The regex scanner and BPE against tiktoken itself (tiktoken_cases.json, written by
/// scripts/fixtures/tokenizer_tiktoken_cases.py: ids from tiktoken with the Qwen setup, pieces from
/// the `regex` module's findall of the same pattern), on regex edge cases and 300 random strings.
final class PreTokenizerTests: XCTestCase {
    let tok = TokenizerFixtures.tokenizer

    func cases() throws -> [[String: Any]] {
        try XCTUnwrap(try TokenizerFixtures.json("tiktoken_cases.json")["cases"] as? [[String: Any]])
    }

    func testScannerSplitsLikeTheRegex() throws {
        for c in try cases() {
            let text = try XCTUnwrap(c["text"] as? String)
            let pieces = try XCTUnwrap(c["pieces"] as? [String])
            XCTAssertEqual(PreTokenizer.pieces(text).map { Array($0.unicodeScalars) },
                           pieces.map { Array($0.unicodeScalars) }, "\(text.debugDescription)")
        }
    }

    func testIdsMatchTiktoken() throws {
        let all = try cases()
        XCTAssertGreaterThan(all.count, 300)
        for c in all {
            let text = try XCTUnwrap(c["text"] as? String)
            let ids = try intArray(c["ids"])
            XCTAssertEqual(tok.encodeOrdinary(text), ids, "\(text.debugDescription)")
            XCTAssertEqual(try tok.encode(text, allowedSpecial: .noSpecial), ids, "\(text.debugDescription)")
            XCTAssertEqual(Array(try tok.decode(ids).unicodeScalars), Array(text.unicodeScalars))
        }
    }

    // Hand-derived from the regex (each expectation is argued in the PreTokenizer doc comment).

    func testContractionsAreCaseInsensitiveAndOnlyTheListedOnes() {
        XCTAssertEqual(PreTokenizer.pieces("I'LL DON'T we'Re"), ["I", "'LL", " DON", "'T", " we", "'Re"])
        XCTAssertEqual(PreTokenizer.pieces("'x"), ["'x"])  // not a contraction: punctuation + letters
        XCTAssertEqual(PreTokenizer.pieces("'llama"), ["'ll", "ama"])  // leftmost alternative wins
        XCTAssertEqual(PreTokenizer.pieces("'\u{17F}"), ["'\u{17F}"])  // LONG S folds to s
    }

    func testEveryDigitIsItsOwnPreToken() {
        XCTAssertEqual(PreTokenizer.pieces("x2024 ½"), ["x", "2", "0", "2", "4", " ", "½"])
    }

    func testWhitespaceRunsEndAtTheirLastNewline() {
        XCTAssertEqual(PreTokenizer.pieces("a \n \n  b"), ["a", " \n \n", " ", " b"])
        XCTAssertEqual(PreTokenizer.pieces("a\t\n\t"), ["a", "\t\n", "\t"])
    }

    func testTrailingSpacesStayTogetherButLeaveOneForTheNextWord() {
        XCTAssertEqual(PreTokenizer.pieces("a   "), ["a", "   "])
        XCTAssertEqual(PreTokenizer.pieces("a   b"), ["a", "  ", " b"])
        XCTAssertEqual(PreTokenizer.pieces("a \tb"), ["a", " ", "\tb"])
        XCTAssertEqual(PreTokenizer.pieces("a !"), ["a", " !"])
        XCTAssertEqual(PreTokenizer.pieces("a\t!"), ["a", "\t", "!"])  // only U+0020 joins punctuation
    }

    func testPunctuationKeepsItsFollowingNewlines() {
        XCTAssertEqual(PreTokenizer.pieces("x.\n\ny"), ["x", ".\n\n", "y"])
    }

    func testSpecialTokensAreNotSeenByTheLookahead() throws {
        // "and <|extra_204|>": the space before the special token ends its segment, so `\s+(?!\S)`
        // takes it alone (official ids of tokenizer_cases.json 'extra_tokens': 323, 220, 151850).
        XCTAssertEqual(try tok.encode(" and <|extra_204|>"), [323, 220, 151850])
    }
}
