import Foundation
import XCTest
import TestSupport
@testable import SquintTokenizer

/// ByteLevelBPETokenizer against llama.cpp's `llama-tokenize` (fixtures/tokenizer-gguf, made by
/// scripts/fixtures/make_tokenizer_gguf_fixtures.sh from the real GGUF files). The committed tests
/// always run; the full-text tests need the cache and skip with a message when it is absent.
final class ByteLevelBPETests: XCTestCase {
    // MARK: - Committed fixtures

    static func fixture(_ name: String) throws -> [String: Any] {
        try XCTUnwrap(Fixtures.json("tokenizer-gguf/" + name) as? [String: Any])
    }

    /// Qwen2.5's vocabulary rebuilt from qwen.tiktoken (tokens, derived merges) plus the added tokens
    /// of qwen25-added.json; built once (a few seconds in debug builds).
    static let qwenArrays: Result<(tokens: [String], types: [Int32], merges: [String]), Error> = Result {
        let added = try fixture("qwen25-added.json")
        let ranks = TokenizerFixtures.tokenizer.ranks
        var tokens = ByteLevelBPETokenizer.tokens(fromTiktoken: ranks)
        var types = [Int32](repeating: 1, count: tokens.count)
        tokens += try XCTUnwrap(added["tokens"] as? [String])
        types += try intArray(added["token_types"]).map { Int32($0) }
        return (tokens, types, try ByteLevelBPETokenizer.merges(fromTiktoken: ranks))
    }

    static func qwen(_ pre: String = "qwen2", addBOS: Bool? = nil) throws -> ByteLevelBPETokenizer {
        let a = try qwenArrays.get()
        let added = try fixture("qwen25-added.json")
        return try ByteLevelBPETokenizer(
            tokens: a.tokens, tokenTypes: a.types, merges: a.merges, preTokenizer: pre,
            bosTokenID: (added["bos_token_id"] as? NSNumber)?.intValue,
            eosTokenID: (added["eos_token_id"] as? NSNumber)?.intValue,
            addBOS: addBOS ?? (added["add_bos_token"] as? Bool), addEOS: added["add_eos_token"] as? Bool)
    }

    static func fromVocabJSON(_ v: [String: Any], source: String) throws -> ByteLevelBPETokenizer {
        try ByteLevelBPETokenizer(
            tokens: try XCTUnwrap(v["tokens"] as? [String]),
            tokenTypes: try intArray(v["token_types"]).map { Int32($0) },
            merges: try XCTUnwrap(v["merges"] as? [String]),
            preTokenizer: try XCTUnwrap(v["pre"] as? String),
            bosTokenID: (v["bos_token_id"] as? NSNumber)?.intValue,
            eosTokenID: (v["eos_token_id"] as? NSNumber)?.intValue,
            addBOS: v["add_bos_token"] as? Bool, addEOS: v["add_eos_token"] as? Bool, source: source)
    }

    /// FNV-1a 64 over the UTF-8 of each string followed by 0x0A (the fixture script's fingerprint).
    static func fnv1a64(_ strings: [String]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for s in strings {
            for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
            h = (h ^ 0x0A) &* 0x100_0000_01B3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    func testByteLevelAlphabetIsABijectionWithGPT2Spellings() throws {
        var seen = Set<UInt32>()
        for b in 0 ... 255 {
            let s = ByteLevel.encode([UInt8(b)])
            XCTAssertEqual(ByteLevel.decode(s), [UInt8(b)])
            seen.insert(s.unicodeScalars.first!.value)
        }
        XCTAssertEqual(seen.count, 256)
        // SmolLM2's first merges (from its GGUF) spell a space as U+0120.
        let smol = try Self.fixture("smollm2-vocab.json")
        let merges = try XCTUnwrap(smol["merges"] as? [String])
        XCTAssertEqual(merges[0], "\u{120} t")
        XCTAssertEqual(ByteLevel.decode("\u{120}t"), Array(" t".utf8))
        XCTAssertNil(ByteLevel.decode("a b"))  // U+0020 itself is not in the alphabet
    }

    /// The Qwen2.5 GGUF vocabulary is qwen.tiktoken respelled, plus 293 added tokens, and its merges
    /// are derivable: fingerprints of the real file's 151,936 tokens and 151,387 merges.
    func testQwen25GGUFVocabularyIsDerivableFromQwenTiktoken() throws {
        let added = try Self.fixture("qwen25-added.json")
        let a = try Self.qwenArrays.get()
        XCTAssertEqual(a.tokens.count, (added["token_count"] as? NSNumber)?.intValue)
        XCTAssertEqual(a.merges.count, (added["merge_count"] as? NSNumber)?.intValue)
        let sample = try XCTUnwrap(added["merges_sample"] as? [String: String])
        for (k, v) in sample { XCTAssertEqual(a.merges[try XCTUnwrap(Int(k))], v, "merge \(k)") }
        XCTAssertEqual(Self.fnv1a64(a.tokens), added["tokens_fnv1a64"] as? String)
        XCTAssertEqual(Self.fnv1a64(a.merges), added["merges_fnv1a64"] as? String)
    }

    func assertSamples(_ tok: ByteLevelBPETokenizer, vocabulary: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let s = try Self.fixture("samples.json")
        let texts = try XCTUnwrap(s["texts"] as? [String: String])
        let ids = try XCTUnwrap((s["ids"] as? [String: Any])?[vocabulary] as? [String: Any])
        XCTAssertEqual(Set(ids.keys), Set(texts.keys), file: file, line: line)
        for (name, text) in texts.sorted(by: { $0.key < $1.key }) {
            let ref = try XCTUnwrap(ids[name] as? [String: Any])
            XCTAssertEqual(tok.encode(text, addSpecial: true, parseSpecial: true), try intArray(ref["special"]),
                           "\(vocabulary) \(name), special tokens parsed", file: file, line: line)
            XCTAssertEqual(tok.encode(text, addSpecial: false, parseSpecial: false), try intArray(ref["plain"]),
                           "\(vocabulary) \(name), plain", file: file, line: line)
            // Byte-level BPE loses nothing: the plain ids decode to the text.
            XCTAssertEqual(try tok.decode(tok.encode(text, addSpecial: false)), text, file: file, line: line)
        }
    }

    func testQwen2SamplesMatchLlamaTokenize() throws {
        try assertSamples(try Self.qwen("qwen2"), vocabulary: "qwen2")
    }

    /// SmolLM2's vocabulary plus the fixture's extra digit tokens and merges, read as llama-bpe with
    /// add-BOS: the vocabulary llama.cpp judged the Llama-3 rules on (neither real vocabulary has a
    /// multi-digit token, so the digit grouping needs these extras to be visible).
    static func llamaBPE() throws -> ByteLevelBPETokenizer {
        var v = try fixture("smollm2-vocab.json")
        let extra = try XCTUnwrap(try fixture("samples.json")["llama_bpe_extra"] as? [String: [String]])
        let extraTokens = try XCTUnwrap(extra["tokens"]), extraMerges = try XCTUnwrap(extra["merges"])
        v["tokens"] = try XCTUnwrap(v["tokens"] as? [String]) + extraTokens
        v["token_types"] = try intArray(v["token_types"]) + extraTokens.map { _ in 1 }
        v["merges"] = try XCTUnwrap(v["merges"] as? [String]) + extraMerges
        v["pre"] = "llama-bpe"
        v["add_bos_token"] = true
        return try fromVocabJSON(v, source: "smollm2-vocab.json + llama_bpe_extra")
    }

    /// Llama 3's rules: digits in threes, a pre-token that is a token taken whole, BOS added.
    func testLlamaBPESamplesMatchLlamaTokenize() throws {
        let tok = try Self.llamaBPE()
        XCTAssertEqual(tok.preTokenizer, .llama3)
        try assertSamples(tok, vocabulary: "llama-bpe")
    }

    func testSmolLM2SamplesMatchLlamaTokenize() throws {
        let tok = try Self.fromVocabJSON(try Self.fixture("smollm2-vocab.json"), source: "smollm2-vocab.json")
        XCTAssertEqual(tok.preTokenizer, .smollm)
        try assertSamples(tok, vocabulary: "smollm")
    }

    func testSpecialTokensDecodeAndLookUp() throws {
        let tok = try Self.qwen("qwen2")
        XCTAssertEqual(tok.tokenID(of: "<|im_end|>"), 151645)
        XCTAssertEqual(tok.tokenID(of: "<tool_call>"), 151657)
        let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", parseSpecial: true)
        XCTAssertEqual(try tok.decode(ids), "<|im_start|>user\nhi<|im_end|>")
        XCTAssertEqual(try tok.decode(ids, skipSpecialTokens: true), "user\nhi")
        XCTAssertThrowsError(try tok.decode([151936])) { error in
            XCTAssertEqual(error as? TokenizerError, .tokenIDOutOfRange(id: 151936, index: 0, vocabularySize: 151936))
        }
    }

    // MARK: - Refusals

    func assertRefused(_ make: () throws -> ByteLevelBPETokenizer, containing needle: String,
                       file: StaticString = #filePath, line: UInt = #line)
    {
        XCTAssertThrowsError(try make(), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(needle), "\(error)", file: file, line: line)
        }
    }

    func testBadVocabulariesAreRefusedWithTheirProblem() {
        let bytes = (0 ... 255).map { ByteLevel.encode([UInt8($0)]) }
        assertRefused({ try ByteLevelBPETokenizer(tokens: bytes, merges: [], preTokenizer: "tekken") },
                      containing: "pre-tokenizer 'tekken' is not supported")
        assertRefused({ try ByteLevelBPETokenizer(tokens: bytes, merges: ["ab"], preTokenizer: "qwen2") },
                      containing: "merge 0 'ab' has no space")
        assertRefused({ try ByteLevelBPETokenizer(tokens: bytes + ["a"], merges: [], preTokenizer: "gpt2") },
                      containing: "tokens 97 and 256 are both 'a'")
        assertRefused({ try ByteLevelBPETokenizer(tokens: bytes, tokenTypes: [1], merges: [], preTokenizer: "gpt2") },
                      containing: "1 token types for 256 tokens")
        assertRefused({ try ByteLevelBPETokenizer(tokens: bytes, merges: [], preTokenizer: "gpt2", bosTokenID: 256) },
                      containing: "bos token id 256 is outside 0..<256")
        assertRefused({ try ByteLevelBPETokenizer(tokens: bytes, merges: [], preTokenizer: "llama-bpe") },
                      containing: "add-BOS is set but there is no BOS token id")
        assertRefused({ try ByteLevelBPETokenizer(tokens: [], merges: [], preTokenizer: "gpt2") },
                      containing: "0 tokens")
    }

    // MARK: - Real files in the cache (full texts)

    static var cache: String {
        ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
    }

    static func cacheJSON(_ name: String) throws -> [String: Any] {
        let path = cache + "/tokenizer-gguf/" + name
        guard let data = FileManager.default.contents(atPath: path) else {
            throw XCTSkip("\(path) is absent: run scripts/models.sh, scripts/llamacpp.sh and "
                + "scripts/fixtures/make_tokenizer_gguf_fixtures.sh to test on the real GGUF files")
        }
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func assertFullTexts(_ tok: ByteLevelBPETokenizer, vocabulary: String) throws {
        let reference = try Self.cacheJSON("reference.json")
        let texts = try XCTUnwrap(reference["texts"] as? [String: [String: String]])
        let ids = try XCTUnwrap((reference["ids"] as? [String: Any])?[vocabulary] as? [String: Any])
        for (name, info) in texts.sorted(by: { $0.key < $1.key }) {
            let path = try XCTUnwrap(info["path"])
            guard let data = FileManager.default.contents(atPath: path) else {
                throw XCTSkip("\(path) is absent: run scripts/models.sh")
            }
            let text = String(decoding: data, as: UTF8.self)
            let ref = try XCTUnwrap(ids[name] as? [String: Any])
            let plain = tok.encode(text, addSpecial: false, parseSpecial: false)
            let want = try intArray(ref["plain"])
            XCTAssertEqual(plain.count, want.count, "\(vocabulary) \(name): token count")
            if let i = (0 ..< min(plain.count, want.count)).first(where: { plain[$0] != want[$0] }) {
                XCTFail("\(vocabulary) \(name): first difference at token \(i): \(plain[i]) vs llama.cpp \(want[i])")
            }
            XCTAssertEqual(tok.encode(text, addSpecial: true, parseSpecial: true), try intArray(ref["special"]),
                           "\(vocabulary) \(name): special mode")
        }
    }

    func testRealQwen25VocabularyMatchesLlamaTokenizeOnFullTexts() throws {
        let v = try Self.cacheJSON("qwen25-0.5b.vocab.json")
        let tok = try Self.fromVocabJSON(v, source: "qwen25-0.5b.vocab.json")
        // The real arrays are the derived ones, element for element.
        let a = try Self.qwenArrays.get()
        XCTAssertEqual(tok.tokens, a.tokens)
        XCTAssertEqual(v["merges"] as? [String], a.merges)
        // The 1.5B file carries the same vocabulary, so the same ids hold for it.
        let v15 = try Self.cacheJSON("qwen25-1.5b.vocab.json")
        XCTAssertEqual(v15["tokens"] as? [String], a.tokens)
        XCTAssertEqual(v15["merges"] as? [String], a.merges)
        XCTAssertEqual(v15["pre"] as? String, "qwen2")
        try assertFullTexts(tok, vocabulary: "qwen2")
    }

    func testRealSmolLM2VocabularyMatchesLlamaTokenizeOnFullTexts() throws {
        let tok = try Self.fromVocabJSON(try Self.cacheJSON("smollm2.vocab.json"), source: "smollm2.vocab.json")
        try assertFullTexts(tok, vocabulary: "smollm")
    }

    func testLlamaBPERulesMatchLlamaTokenizeOnFullTexts() throws {
        try assertFullTexts(try Self.llamaBPE(), vocabulary: "llama-bpe")
    }
}

/// The `tokenizer.json` reader against Hugging Face `tokenizers` (fixtures/tokenizer-gguf/hf-samples.json)
/// on files of the real releases' shapes built from the same vocabularies.
final class TokenizerJSONTests: XCTestCase {
    /// The tokenizer.json the fixture script's `hf_tokenizer_json` writes, rebuilt here from the arrays.
    static func tokenizerJSON(tokens: [String], types: [Int32], merges: [String], shape: String, bos: Int? = nil) throws -> Data {
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            vocab[t] = i
            if types[i] == 3 || types[i] == 4 {
                added.append(["id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": types[i] == 3])
            }
        }
        let byteLevelNoRegex: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false]
        var model: [String: Any] = ["type": "BPE", "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges]
        var root: [String: Any] = ["version": "1.0", "added_tokens": added, "model": model,
                                   "post_processor": byteLevelNoRegex, "decoder": byteLevelNoRegex]
        switch shape {
        case "qwen2-nfc":
            root["normalizer"] = ["type": "NFC"]
            root["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": ByteLevelBPETokenizer.qwen2Pattern], "behavior": "Isolated", "invert": false],
                byteLevelNoRegex]]
        case "smollm":
            root["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]]]
        case "llama3", "llama3-sequence":
            root["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": ByteLevelBPETokenizer.llama3Pattern], "behavior": "Isolated", "invert": false],
                byteLevelNoRegex]]
            model["ignore_merges"] = true
            root["model"] = model
            let b = tokens[try XCTUnwrap(bos)]
            let template: [String: Any] = ["type": "TemplateProcessing",
                                           "single": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]]]
            // Meta's Llama 3 files wrap it: Sequence[ByteLevel, TemplateProcessing].
            root["post_processor"] = shape == "llama3" ? template
                : ["type": "Sequence", "processors": [["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true], template]]
        default:
            XCTFail("unknown shape \(shape)")
        }
        return try JSONSerialization.data(withJSONObject: root)
    }

    func assertHuggingFaceSamples(_ tok: ByteLevelBPETokenizer, shape: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let texts = try XCTUnwrap(try ByteLevelBPETests.fixture("samples.json")["texts"] as? [String: String])
        let ids = try XCTUnwrap((try ByteLevelBPETests.fixture("hf-samples.json")["ids"] as? [String: Any])?[shape] as? [String: Any])
        for (name, text) in texts.sorted(by: { $0.key < $1.key }) {
            let ref = try XCTUnwrap(ids[name] as? [String: Any])
            XCTAssertEqual(tok.encode(text, addSpecial: true, parseSpecial: true), try intArray(ref["special"]),
                           "\(shape) \(name), special", file: file, line: line)
            XCTAssertEqual(tok.encode(text, addSpecial: false, parseSpecial: false), try intArray(ref["plain"]),
                           "\(shape) \(name), plain", file: file, line: line)
        }
    }

    func testQwen2TokenizerJSONWithNFCMatchesHuggingFace() throws {
        let a = try ByteLevelBPETests.qwenArrays.get()
        let tok = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerJSON(tokens: a.tokens, types: a.types, merges: a.merges, shape: "qwen2-nfc"))
        XCTAssertTrue(tok.normalizesNFC)
        XCTAssertEqual(tok.preTokenizer, .qwen2)
        XCTAssertFalse(tok.addBOS)
        try assertHuggingFaceSamples(tok, shape: "qwen2-nfc")
    }

    func smolArrays(extra: Bool) throws -> ([String], [Int32], [String]) {
        let v = try ByteLevelBPETests.fixture("smollm2-vocab.json")
        var tokens = try XCTUnwrap(v["tokens"] as? [String]), merges = try XCTUnwrap(v["merges"] as? [String])
        var types = try intArray(v["token_types"]).map { Int32($0) }
        if extra {
            let e = try XCTUnwrap(try ByteLevelBPETests.fixture("samples.json")["llama_bpe_extra"] as? [String: [String]])
            tokens += try XCTUnwrap(e["tokens"])
            types += [Int32](repeating: 1, count: try XCTUnwrap(e["tokens"]).count)
            merges += try XCTUnwrap(e["merges"])
        }
        return (tokens, types, merges)
    }

    func testSmolLMTokenizerJSONMatchesHuggingFace() throws {
        let (t, ty, m) = try smolArrays(extra: false)
        let tok = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerJSON(tokens: t, types: ty, merges: m, shape: "smollm"))
        XCTAssertEqual(tok.preTokenizer, .smollm)
        try assertHuggingFaceSamples(tok, shape: "smollm")
    }

    func testLlama3TokenizerJSONMatchesHuggingFace() throws {
        let (t, ty, m) = try smolArrays(extra: true)
        let tok = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerJSON(tokens: t, types: ty, merges: m, shape: "llama3", bos: 1))
        XCTAssertEqual(tok.preTokenizer, .llama3)
        XCTAssertTrue(tok.addBOS)
        XCTAssertEqual(tok.bosTokenID, 1)
        try assertHuggingFaceSamples(tok, shape: "llama3")
    }

    /// The same template inside a `Sequence` post-processor (the shape of Meta's Llama 3 files) still
    /// adds BOS (it was missed before 2026-12-06, so Llama 3 folders ran without their BOS), and the
    /// ids are the ones `tokenizers` gives (a ByteLevel post-processor changes offsets only).
    func testLlama3TemplateInsideASequencePostProcessorAddsBOS() throws {
        let (t, ty, m) = try smolArrays(extra: true)
        let tok = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerJSON(tokens: t, types: ty, merges: m, shape: "llama3-sequence", bos: 1))
        XCTAssertTrue(tok.addBOS)
        XCTAssertEqual(tok.bosTokenID, 1)
        try assertHuggingFaceSamples(tok, shape: "llama3")
    }

    /// The files the fixture script wrote (and fed to `tokenizers`), read through the file API.
    func testTokenizerJSONFilesInTheCacheMatchHuggingFace() throws {
        for shape in ["qwen2-nfc", "smollm", "llama3"] {
            let path = ByteLevelBPETests.cache + "/tokenizer-gguf/hf-\(shape).tokenizer.json"
            guard FileManager.default.fileExists(atPath: path) else {
                throw XCTSkip("\(path) is absent: run scripts/fixtures/make_tokenizer_gguf_fixtures.sh")
            }
            try assertHuggingFaceSamples(try ByteLevelBPETokenizer(tokenizerJSONFile: path), shape: shape)
        }
    }

    func testUnsupportedTokenizerJSONIsRefusedByName() throws {
        func refused(_ root: [String: Any], _ needle: String, line: UInt = #line) throws {
            let data = try JSONSerialization.data(withJSONObject: root)
            XCTAssertThrowsError(try ByteLevelBPETokenizer(tokenizerJSON: data, source: "t.json"), line: line) { error in
                XCTAssertTrue("\(error)".hasPrefix("t.json: unusable BPE vocabulary: "), "\(error)", line: line)
                XCTAssertTrue("\(error)".contains(needle), "\(error)", line: line)
            }
        }
        let vocab = Dictionary(uniqueKeysWithValues: (0 ... 255).map { (ByteLevel.encode([UInt8($0)]), $0) })
        let model: [String: Any] = ["type": "BPE", "vocab": vocab, "merges": [String]()]
        let gpt2: [String: Any] = ["type": "ByteLevel", "use_regex": true, "add_prefix_space": false]
        try refused(["model": ["type": "WordPiece", "vocab": vocab]], "model type WordPiece is not BPE")
        try refused(["model": model.merging(["byte_fallback": true]) { $1 }, "pre_tokenizer": gpt2], "byte_fallback")
        try refused(["model": model, "pre_tokenizer": gpt2, "normalizer": ["type": "Lowercase"]], "normalizer Lowercase")
        try refused(["model": model, "pre_tokenizer": ["type": "Whitespace"]], "pre_tokenizer {\"type\":\"Whitespace\"} is not supported")
        try refused(["model": model, "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": "\\s+"], "behavior": "Isolated"],
            ["type": "ByteLevel", "use_regex": false]]]], "Split pattern \\s+ is not one we implement")
        try refused(["model": ["type": "BPE", "vocab": ["a": 0, "b": 0], "merges": [String]()], "pre_tokenizer": gpt2],
                    "id 0 is both")
        try refused(["model": model, "pre_tokenizer": gpt2, "added_tokens": [["id": 65, "content": "<s>", "special": true]]],
                    "added token 65 '<s>' conflicts with vocab entry 'A'")
        // Ids far beyond the entries would be filled with `[PAD<id>]` tokens: a 46-byte file asked for
        // 16 MB (fuzz finding 4). With n entries, ids up to 2n + 1023 are read, the gaps filled.
        try refused(["model": ["type": "BPE", "vocab": ["a": 1_000_000]]], "ids reach 1000000 for 1 tokens")
        try refused(["model": model, "pre_tokenizer": gpt2, "added_tokens": [["id": 2 * 257 + 1024, "content": "<s>", "special": true]]],
                    "more than half of the ids would be missing")
        let gaps = try ByteLevelBPETokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: [
            "model": model, "pre_tokenizer": gpt2, "added_tokens": [["id": 2 * 257 + 1023, "content": "<s>", "special": true]]]))
        XCTAssertEqual(gaps.vocabularySize, 2 * 257 + 1024)   // 257 entries, the rest fillers
        // And a minimal valid one loads: 256 byte tokens (id = byte value), no merges, GPT-2 rules.
        let ok = try ByteLevelBPETokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: ["model": model, "pre_tokenizer": gpt2]))
        XCTAssertEqual(ok.encode("a b\n", addSpecial: false), [0x61, 0x20, 0x62, 0x0A])
    }
}
