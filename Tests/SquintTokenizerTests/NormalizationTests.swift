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

    func testPartialNormalisationEqualsFoundationsWholeTextNfc() throws {
        // nfcBytes normalises only the runs around unstable scalars; Foundation's NFC of the whole
        // text is the reference. Boundaries of every fast-path range, composition across a stable
        // starter, reordering of combining marks, Hangul LV + T, kana + voicing mark, singletons.
        var samples = [
            "e\u{301}", "\u{301}start", "a\u{323}\u{302}b", "a\u{302}\u{323}", "\u{AC00}\u{11A8}", "\u{1100}\u{1161}\u{11A8}",
            "\u{304B}\u{3099}", "\u{30AB}\u{3099}x", "\u{2000}\u{2001}", "\u{212B}\u{2126}", "\u{F900}\u{FA10}",
            "\u{2FF}\u{300}\u{301}", "\u{3029}\u{302A}\u{302B}\u{302F}\u{3030}", "\u{D7A3}\u{D7A4}\u{FF5E}\u{FF5F}",
            "中文\u{301}", "x\u{1F600}\u{301}\u{1F600}", "", "plain ascii", "\u{1E0A}\u{323}", "\u{0CC6}\u{0CC2}\u{0CD5}",
        ]
        for c in try XCTUnwrap(try TokenizerFixtures.json("tokenizer_cases.json")["cases"] as? [[String: Any]]) {
            samples.append(try XCTUnwrap(c["text"] as? String))
        }
        for s in samples + samples.map({ $0 + "\u{301}" + $0 }) {
            XCTAssertEqual(QwenTokenizer.nfcBytes(s), Array(s.precomposedStringWithCanonicalMapping.utf8), s.debugDescription)
        }
    }
}
