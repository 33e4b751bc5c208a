import Foundation
import XCTest
@testable import SquintTokenizer

/// `ByteLevelBPETokenizer.tokenizerJSON`: a GGUF vocabulary written as tokenizer.json (what converted
/// SQ4 files and AutoGPTQ folders carry) and read back tokenizes the fixture texts exactly as
/// llama.cpp's `llama-tokenize` did on the original GGUF (fixtures/tokenizer-gguf/samples.json), and
/// keeps the token types, BOS/EOS rule and vocabulary.
final class TokenizerJSONWriterTests: XCTestCase {
    func roundTrip(_ tok: ByteLevelBPETokenizer, merges: [String]) throws -> ByteLevelBPETokenizer {
        let json = tok.tokenizerJSON(merges: merges)
        return try ByteLevelBPETokenizer(tokenizerJSON: Data(json.utf8), source: "written tokenizer.json")
    }

    func assertSameAsSource(_ tok: ByteLevelBPETokenizer, _ back: ByteLevelBPETokenizer, vocabulary: String,
                            line: UInt = #line) throws {
        XCTAssertEqual(back.tokens.count, tok.tokens.count, line: line)
        let differing = tok.tokens.indices.filter { $0 >= back.tokens.count || back.tokens[$0] != tok.tokens[$0] || back.tokenTypes[$0] != tok.tokenTypes[$0] }
        XCTAssertEqual(differing.count, 0, "first differing ids: \(differing.prefix(5).map { "\($0): \(tok.tokens[$0]) \(tok.tokenTypes[$0]) vs \($0 < back.tokens.count ? "\(back.tokens[$0]) \(back.tokenTypes[$0])" : "-")" })", line: line)
        XCTAssertEqual(back.preTokenizer, tok.preTokenizer, line: line)
        XCTAssertEqual(back.addBOS, tok.addBOS, line: line)
        if tok.addBOS { XCTAssertEqual(back.bosTokenID, tok.bosTokenID, line: line) }
        let samples = try ByteLevelBPETests.fixture("samples.json")
        let texts = try XCTUnwrap(samples["texts"] as? [String: String])
        let ids = try XCTUnwrap((samples["ids"] as? [String: Any])?[vocabulary] as? [String: Any])
        for (name, text) in texts.sorted(by: { $0.key < $1.key }) {
            let ref = try XCTUnwrap(ids[name] as? [String: Any])
            XCTAssertEqual(back.encode(text, addSpecial: true, parseSpecial: true), try intArray(ref["special"]),
                           "\(vocabulary) \(name), special tokens parsed", line: line)
            XCTAssertEqual(back.encode(text, addSpecial: false, parseSpecial: false), try intArray(ref["plain"]),
                           "\(vocabulary) \(name), plain", line: line)
        }
    }

    func testQwen2VocabularyRoundTripsToLlamaTokenizesIds() throws {
        let tok = try ByteLevelBPETests.qwen("qwen2")
        let a = try ByteLevelBPETests.qwenArrays.get()
        try assertSameAsSource(tok, try roundTrip(tok, merges: a.merges), vocabulary: "qwen2")
    }

    func testSmolLM2VocabularyRoundTripsToLlamaTokenizesIds() throws {
        let v = try ByteLevelBPETests.fixture("smollm2-vocab.json")
        let tok = try ByteLevelBPETests.fromVocabJSON(v, source: "smollm2-vocab.json")
        try assertSameAsSource(tok, try roundTrip(tok, merges: try XCTUnwrap(v["merges"] as? [String])), vocabulary: "smollm")
    }

    /// Llama 3's rules (digits in threes, whole-token pre-tokens) and an added BOS survive the trip.
    func testLlamaBPEVocabularyWithBOSRoundTrips() throws {
        var v = try ByteLevelBPETests.fixture("smollm2-vocab.json")
        let extra = try XCTUnwrap(try ByteLevelBPETests.fixture("samples.json")["llama_bpe_extra"] as? [String: [String]])
        v["merges"] = try XCTUnwrap(v["merges"] as? [String]) + XCTUnwrap(extra["merges"])
        let tok = try ByteLevelBPETests.llamaBPE()
        XCTAssertTrue(tok.addBOS)
        try assertSameAsSource(tok, try roundTrip(tok, merges: try XCTUnwrap(v["merges"] as? [String])), vocabulary: "llama-bpe")
    }
}
