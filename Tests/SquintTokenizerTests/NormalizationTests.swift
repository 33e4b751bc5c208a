import Foundation
import XCTest
@testable import SquintTokenizer

/// Input is NFC-normalised before anything else (official tokenize(): unicodedata.normalize("NFC")).
final class NormalizationTests: XCTestCase {
    let tok = TokenizerFixtures.tokenizer

    func testDecomposedAndPrecomposedTextGiveTheSameIds() throws {
        // U+0065 U+0301 (e + combining acute) is NFC U+00E9; U+212B ANGSTROM SIGN is NFC U+00C5;
        // U+1100 U+1161 (conjoining jamo) is NFC U+AC00.
        let pairs = [("caf\u{65}\u{301}", "caf\u{E9}"), ("\u{212B}ngstr\u{F6}m", "\u{C5}ngstr\u{F6}m"),
                     ("\u{1100}\u{1161}", "\u{AC00}")]
        for (decomposed, composed) in pairs {
            XCTAssertEqual(try tok.encode(decomposed), try tok.encode(composed))
            XCTAssertEqual(Array(try tok.decode(try tok.encode(decomposed)).unicodeScalars), Array(composed.unicodeScalars))
        }
    }

    func testOfficialAccentCaseDecodesToItsNfcForm() throws {
        // tokenizer_cases.json 'accents_nfc': the round trip equals the NFC form, not the input.
        let doc = try TokenizerFixtures.json("tokenizer_cases.json")
        let c = try XCTUnwrap((doc["cases"] as? [[String: Any]])?.first { $0["name"] as? String == "accents_nfc" })
        let text = try XCTUnwrap(c["text"] as? String)
        XCTAssertNotEqual(Array(text.unicodeScalars), Array(text.precomposedStringWithCanonicalMapping.unicodeScalars))
        XCTAssertEqual(try tok.encode(text), try intArray(c["ids"]))
        XCTAssertEqual(Array(try tok.decode(try intArray(c["ids"])).unicodeScalars),
                       Array(text.precomposedStringWithCanonicalMapping.unicodeScalars))
    }
}
