import Foundation
import XCTest
@testable import SquintTokenizer

/// The 30 strings of tokenizer_cases.json, encoded and decoded by the official QWenTokenizer.
final class OfficialCasesTests: XCTestCase {
    let tok = TokenizerFixtures.tokenizer

    func cases() throws -> [[String: Any]] {
        let doc = try TokenizerFixtures.json("tokenizer_cases.json")
        let cases = try XCTUnwrap(doc["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 30)
        return cases
    }

    func testEveryCaseEncodesToTheOfficialIdsWithAllSpecialsAllowed() throws {
        for c in try cases() {
            let text = try XCTUnwrap(c["text"] as? String)
            XCTAssertEqual(try tok.encode(text, allowedSpecial: .all), try intArray(c["ids"]), "\(c["name"]!)")
        }
    }

    func testEveryCaseEncodesToTheOfficialIdsWithOnlyImageSpecialsAllowed() throws {
        for c in try cases() {
            let text = try XCTUnwrap(c["text"] as? String)
            XCTAssertEqual(try tok.encode(text, allowedSpecial: .image),
                           try intArray(c["ids_allowed_special_image_st"]), "\(c["name"]!)")
        }
    }

    func testEveryCaseDecodesToTheOfficialText() throws {
        for c in try cases() {
            let ids = try intArray(c["ids"])
            let name = "\(c["name"]!)"
            XCTAssertEqual(try tok.decode(ids), c["decoded"] as? String, name)
            XCTAssertEqual(try tok.decode(ids, skipSpecialTokens: true), c["decoded_skip_special_tokens"] as? String, name)
        }
    }

    func testRoundTripsMatchTheOfficialFlags() throws {
        for c in try cases() {
            let text = try XCTUnwrap(c["text"] as? String)
            let name = "\(c["name"]!)"
            let decoded = try tok.decode(try tok.encode(text))
            // Compare scalars: Swift's == on String is canonical equivalence, Python's is not.
            XCTAssertEqual(Array(decoded.unicodeScalars) == Array(text.unicodeScalars),
                           try XCTUnwrap(c["roundtrip_equal"] as? Bool), name)
            XCTAssertEqual(Array(decoded.unicodeScalars) == Array(text.precomposedStringWithCanonicalMapping.unicodeScalars),
                           try XCTUnwrap(c["roundtrip_equal_nfc"] as? Bool), name)
            // Image-mode ids decode to the same text (specials other than IMAGE_ST were plain text).
            XCTAssertEqual(try tok.decode(try tok.encode(text, allowedSpecial: .image)), decoded, name)
        }
    }

    func testGroundingExampleOfTheSpec() throws {
        // SPEC 4.5: the model output example and its ids.
        XCTAssertEqual(try tok.encode("<ref>击掌</ref><box>(536,509),(588,602)</box>"),
                       [151851, 52726, 99933, 151852, 151853, 7, 20, 18, 21, 11, 20, 15, 24, 23547, 20, 23, 23, 11,
                        21, 15, 17, 8, 151854])
    }
}
