import Foundation

/// A byte-level BPE tokenizer built from plain arrays (GGUF `tokenizer.ggml.tokens`,
/// `tokenizer.ggml.token_type`, `tokenizer.ggml.merges`, `tokenizer.ggml.pre`, the bos/eos ids and
/// add-bos/eos flags), giving the ids llama.cpp's `llama_tokenize` gives for the same vocabulary:
/// Qwen2 / Qwen2.5 (`qwen2`), Llama 3 (`llama-bpe`), SmolLM (`smollm`) and GPT-2 style vocabularies.
///
/// Encoding, as llama.cpp does it (facts from its `llama-vocab.cpp` / `unicode.cpp`):
/// 1. Special tokens are cut out of the text first: every user-defined token (type 4) always, control
///    (3) and unknown (2) tokens only with `parseSpecial`. They are tried one by one, longest text
///    first (equal lengths: lower id first), each splitting every remaining text fragment at all its
///    occurrences (leftmost first).
/// 2. Each remaining fragment is split into pre-tokens by the vocabulary's rules (`PreTokenizer.Rules`).
/// 3. Each pre-token is BPE-merged from single bytes by merge rank (the merge's index in the list,
///    lowest first, leftmost on ties); with `ignoreMerges` (Llama 3) a pre-token that is itself a
///    token is taken whole. Every resulting part that is a token gives its id; a part that is not (a
///    vocabulary whose merges make non-tokens) gives the ids of those of its byte-level characters
///    that are one-character tokens, as llama.cpp does.
/// 4. With `addSpecial`, BOS before and EOS after, as the flags say.
/// No Unicode normalisation is applied (llama.cpp applies none for these vocabularies).
///
/// Token types as llama.cpp loads them (`llamaCppTokenTypes`): a token whose text is on its
/// end-of-generation list (`</s>`, `<|im_end|>`, `<|endoftext|>`, ... ; `eogTexts`) becomes control
/// whatever the file says (Qwen2.5's normal token 128,247 `</s>` is the case that matters here), with
/// its two exceptions, and gpt-oss's four channel tokens become user-defined.
/// Not reproduced: the per-model LSTRIP/RSTRIP attributes (jina, phi-3, modern-bert only) and the
/// first-match-only promotions of EOT / FIM tokens when the file names none (in the Qwen2.5 and
/// SmolLM2 files every such token is control already).
///
/// Immutable after `init`; `encode`/`decode` may be called from several threads at once.
public final class ByteLevelBPETokenizer: @unchecked Sendable {
    /// llama.cpp's token types (`llama_token_type`, GGUF `tokenizer.ggml.token_type`).
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// The pre-tokenizer families we implement, by llama.cpp's `tokenizer.ggml.pre` names.
    public enum PreTokenizerKind: String, Sendable, CaseIterable {
        case qwen2, llama3, gpt2, smollm

        /// The GGUF `tokenizer.ggml.pre` names mapped to each family (as llama.cpp groups them).
        public static let llamaCppNames: [String: PreTokenizerKind] = [
            "qwen2": .qwen2, "deepseek-r1-qwen": .qwen2,
            "llama3": .llama3, "llama-v3": .llama3, "llama-bpe": .llama3,
            "gpt-2": .gpt2, "gpt2": .gpt2, "mpt": .gpt2, "olmo": .gpt2,
            "smollm": .smollm, "starcoder": .smollm, "refact": .smollm, "codeshell": .smollm,
        ]

        var rules: PreTokenizer.Rules {
            switch self {
            case .qwen2: return .qwen2
            case .llama3: return .llama3
            case .gpt2: return .gpt2
            case .smollm: return .gpt2DigitsIsolated
            }
        }

        /// The `tokenizer.ggml.pre` name a GGUF writer gives this family (llama.cpp's converter's names).
        public var llamaCppName: String {
            switch self {
            case .qwen2: return "qwen2"
            case .llama3: return "llama-bpe"
            case .gpt2: return "gpt-2"  // llama.cpp's loader knows "gpt-2", not "gpt2"
            case .smollm: return "smollm"
            }
        }

        /// llama.cpp takes a pre-token that is a whole token without merging for these.
        var ignoresMerges: Bool { self == .llama3 }
        /// llama.cpp's add-BOS default when the file does not say (`tokenizer.ggml.add_bos_token`).
        var addsBOSByDefault: Bool { self == .llama3 }
    }

    /// Token texts as given (byte-level spelling for normal tokens). [vocabularySize]
    public let tokens: [String]
    /// Token types. [vocabularySize]
    public let tokenTypes: [TokenType]
    /// The merges as given (`"left right"`, rank order): what a GGUF's `tokenizer.ggml.merges` holds.
    public let merges: [String]
    public let preTokenizer: PreTokenizerKind
    /// The splitting rules actually applied, whether whole-token pre-tokens skip merging, and
    /// whether text is NFC-normalised first (only `tokenizer.json` files ask for it).
    let rules: PreTokenizer.Rules
    let ignoreMerges: Bool
    public let normalizesNFC: Bool
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    public let addBOS: Bool
    public let addEOS: Bool
    public var vocabularySize: Int { tokens.count }

    /// Byte strings BPE can produce: every token whose text is in the byte-level alphabet, then the
    /// merge parts and results that are not tokens. Symbol index -> token id (-1: not a token).
    private let symbols: BPERanks
    private let tokenOfSymbol: [Int32]
    /// (left symbol << 32 | right symbol) -> merge rank (first occurrence wins, as in llama.cpp).
    private let mergeRank: [UInt64: Int32]
    /// Id of the token whose whole text is this one ASCII character, or -1 (the fallback of step 3).
    private let singleCharacterToken: [Int32]
    /// Special tokens to cut out of text, longest first: (id, UTF-8 bytes, needs parseSpecial).
    private let specials: [(id: Int, bytes: [UInt8], controlOrUnknown: Bool)]

    /// Builds the tokenizer from GGUF-style arrays.
    /// - `tokens`: token texts; an empty one is renamed `[EMPTY_<id>]` as llama.cpp does. Texts must be
    ///   distinct (llama.cpp asserts this too).
    /// - `tokenTypes`: one per token (missing: all normal); unknown values count as undefined.
    /// - `merges`: `"left right"` in rank order; a line without a space is refused.
    /// - `preTokenizer`: a `tokenizer.ggml.pre` name (see `PreTokenizerKind.llamaCppNames`).
    /// - `addBOS` / `addEOS`: nil = llama.cpp's default for this pre-tokenizer (BOS only for llama3).
    public convenience init(tokens: [String], tokenTypes: [Int32]? = nil, merges: [String], preTokenizer: String,
                            bosTokenID: Int? = nil, eosTokenID: Int? = nil, addBOS: Bool? = nil, addEOS: Bool? = nil,
                            source: String = "<memory>") throws
    {
        guard let kind = PreTokenizerKind.llamaCppNames[preTokenizer] else {
            throw TokenizerError.unknownPreTokenizer(
                name: preTokenizer, supported: PreTokenizerKind.llamaCppNames.keys.sorted())
        }
        try self.init(tokens: tokens, tokenTypes: tokenTypes, merges: merges, kind: kind, rules: kind.rules,
                      ignoreMerges: kind.ignoresMerges, nfc: false, llamaCppTokenTypes: true,
                      bosTokenID: bosTokenID, eosTokenID: eosTokenID,
                      addBOS: addBOS, addEOS: addEOS, source: source)
    }

    /// The general form: `rules` and `ignoreMerges` may differ from the kind's llama.cpp behaviour
    /// (a `tokenizer.json` runs its regex in a regex engine), `nfc` normalises the text first.
    init(tokens: [String], tokenTypes: [Int32]?, merges: [String], kind: PreTokenizerKind,
         rules: PreTokenizer.Rules, ignoreMerges: Bool, nfc: Bool, llamaCppTokenTypes: Bool,
         bosTokenID: Int?, eosTokenID: Int?, addBOS: Bool?, addEOS: Bool?, source: String) throws
    {
        guard !tokens.isEmpty, tokens.count < Int(Int32.max) else {
            throw TokenizerError.badBPEVocabulary(source: source, problem: "\(tokens.count) tokens")
        }
        if let t = tokenTypes, t.count != tokens.count {
            throw TokenizerError.badBPEVocabulary(
                source: source, problem: "\(t.count) token types for \(tokens.count) tokens")
        }
        for (name, id) in [("bos", bosTokenID), ("eos", eosTokenID)] {
            if let id, id < 0 || id >= tokens.count {
                throw TokenizerError.badBPEVocabulary(
                    source: source, problem: "\(name) token id \(id) is outside 0..<\(tokens.count)")
            }
        }
        let texts = tokens.enumerated().map { $0.element.isEmpty ? "[EMPTY_\($0.offset)]" : $0.element }
        var types = (tokenTypes ?? [Int32](repeating: 1, count: tokens.count)).map {
            TokenType(rawValue: $0) ?? .undefined
        }
        if llamaCppTokenTypes { Self.applyLlamaCppTypeOverrides(texts: texts, types: &types, eosTokenID: eosTokenID) }
        var seen = [String: Int](minimumCapacity: texts.count)
        for (i, t) in texts.enumerated() {
            if let j = seen.updateValue(i, forKey: t) {
                throw TokenizerError.badBPEVocabulary(source: source, problem: "tokens \(j) and \(i) are both '\(t)'")
            }
        }

        // Symbols: tokens BPE can spell, then merge parts/results that are not tokens.
        var symbolBytes: [[UInt8]] = []
        var symbolToken: [Int32] = []
        var symbolOfText = [String: Int32](minimumCapacity: texts.count)
        symbolBytes.reserveCapacity(texts.count)
        for (i, t) in texts.enumerated() {
            guard let b = ByteLevel.decode(t) else { continue }
            symbolOfText[t] = Int32(symbolBytes.count)
            symbolBytes.append(b)
            symbolToken.append(Int32(i))
        }
        func symbol(_ text: Substring) -> Int32? {
            let t = String(text)
            if let s = symbolOfText[t] { return s }
            guard let b = ByteLevel.decode(t), !b.isEmpty else { return nil }  // can never be produced
            let s = Int32(symbolBytes.count)
            symbolOfText[t] = s
            symbolBytes.append(b)
            symbolToken.append(-1)
            return s
        }
        var ranks = [UInt64: Int32](minimumCapacity: merges.count)
        for (r, line) in merges.enumerated() {
            // llama.cpp splits at the first space after the first byte.
            guard let sp = line.utf8.dropFirst().firstIndex(of: 0x20) else {
                throw TokenizerError.badBPEVocabulary(source: source, problem: "merge \(r) '\(line)' has no space")
            }
            let left = line[line.startIndex ..< sp]
            let right = line[line.index(after: sp)...]
            guard r < Int(Int32.max), let a = symbol(left), let b = symbol(right) else { continue }
            _ = symbol(left + right)  // so that a merge result is always a symbol
            let key = UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))
            if ranks[key] == nil { ranks[key] = Int32(r) }
        }
        // Single bytes must be symbols for the merge loop to start from (not necessarily tokens).
        for b in 0 ... 255 { _ = symbol(Substring(ByteLevel.encode([UInt8(b)]))) }

        var single = [Int32](repeating: -1, count: 128)
        for (i, t) in texts.enumerated() {
            let u = Array(t.utf8)
            if u.count == 1 && u[0] < 0x80 { single[Int(u[0])] = Int32(i) }
        }
        var sp: [(id: Int, bytes: [UInt8], controlOrUnknown: Bool)] = []
        for (i, ty) in types.enumerated() where ty == .control || ty == .userDefined || ty == .unknown {
            sp.append((i, Array(texts[i].utf8), ty != .userDefined))
        }
        sp.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }

        self.tokens = texts
        self.tokenTypes = types
        self.merges = merges
        self.preTokenizer = kind
        self.rules = rules
        self.ignoreMerges = ignoreMerges
        self.normalizesNFC = nfc
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.addBOS = addBOS ?? kind.addsBOSByDefault
        self.addEOS = addEOS ?? false
        if self.addBOS && bosTokenID == nil {
            throw TokenizerError.badBPEVocabulary(source: source, problem: "add-BOS is set but there is no BOS token id")
        }
        if self.addEOS && eosTokenID == nil {
            throw TokenizerError.badBPEVocabulary(source: source, problem: "add-EOS is set but there is no EOS token id")
        }
        symbols = try BPERanks(byteStrings: symbolBytes, source: source)
        tokenOfSymbol = symbolToken
        mergeRank = ranks
        singleCharacterToken = single
        specials = sp
    }

    /// llama.cpp's end-of-generation texts (`llama-vocab.cpp`, `special_eog_ids`): a token with one
    /// of these texts is made control when the vocabulary is loaded.
    public static let eogTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\u{FF5C}end\u{2581}of\u{2581}sentence\u{FF5C}>", "[e~[",
    ]

    /// The load-time type changes of llama.cpp described in the type's documentation.
    static func applyLlamaCppTypeOverrides(texts: [String], types: inout [TokenType], eosTokenID: Int?) {
        var idOfText: [String: Int] = [:]
        for (i, t) in texts.enumerated() where eogTexts.contains(t) || t.hasPrefix("<|") { idOfText[t] = i }
        for (t, i) in idOfText where eogTexts.contains(t) && types[i] != .control { types[i] = .control }
        // "</s>" stays normal next to gemma4's "<|tool_response>" or plamo's "<|plamo:eos|>" eos.
        if let s = idOfText["</s>"],
           idOfText["<|tool_response>"] != nil || eosTokenID.map({ texts[$0] == "<|plamo:eos|>" }) == true
        {
            types[s] = .normal
        }
        // o200k_harmony / solar-open: "<|end|>" is not end-of-generation next to return+call or call+flush.
        if let e = idOfText["<|end|>"] {
            let has = { (t: String) in idOfText[t] != nil }
            let call = has("<|call|>") || has("<|calls|>")
            if (has("<|return|>") && call) || (call && has("<|flush|>")) {
                types[e] = .userDefined
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {  // gpt-oss
            if let i = idOfText[t] { types[i] = .userDefined }
        }
    }

    // MARK: - Qwen: the same vocabulary from qwen.tiktoken

    /// The merges list of a tiktoken vocabulary, in rank order: for every rank r >= 256 the two parts
    /// that tiktoken's own merge loop, restricted to ranks below r, leaves of r's bytes, spelled
    /// `"left right"` in the byte-level alphabet. For Qwen this reproduces the Qwen2 / Qwen2.5 GGUF
    /// merges exactly (checked against the 0.5B file's 151,387 merges; see docs/REAL_MODELS.md), so
    /// `qwen.tiktoken` plus the added tokens is the whole Qwen2 vocabulary.
    /// Throws if some rank >= 256 does not reduce to exactly two lower-ranked parts.
    public static func merges(fromTiktoken ranks: BPERanks) throws -> [String] {
        var out: [String] = []
        out.reserveCapacity(max(ranks.count - 256, 0))
        for r in 256 ..< max(ranks.count, 256) {
            let bytes = ranks.tokenBytes(r)
            guard let p = bytes.baseAddress else { continue }
            var parts: [(Int, Int)] = []
            BPERanks.mergeLowestRank(bytes.count, pairRank: { s, _, e in
                let k = ranks.lookup(p + s, e - s)
                return k < r ? k : -1
            }, emit: { s, e in parts.append((s, e)) })
            guard parts.count == 2 else {
                throw TokenizerError.badBPEVocabulary(
                    source: "tiktoken ranks", problem: "rank \(r) reduces to \(parts.count) parts, not 2")
            }
            out.append(ByteLevel.encode(bytes[0 ..< parts[0].1]) + " " + ByteLevel.encode(bytes[parts[1].0...]))
        }
        return out
    }

    /// The token texts of a tiktoken vocabulary in the byte-level alphabet (rank = id).
    public static func tokens(fromTiktoken ranks: BPERanks) -> [String] {
        (0 ..< ranks.count).map { ByteLevel.encode(ranks.tokenBytes($0)) }
    }

    // MARK: - Encoding

    /// Token ids of `text`, as llama.cpp's `llama_tokenize(vocab, text, add_special, parse_special)`.
    /// - `addSpecial`: add BOS / EOS as `addBOS` / `addEOS` say.
    /// - `parseSpecial`: recognise control tokens (`<|im_start|>`...) in the text; without it they
    ///   are ordinary text. User-defined tokens are always recognised.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int] {
        var bytes = normalizesNFC ? QwenTokenizer.nfcBytes(text) : Array(text.utf8)
        let n = bytes.count
        var out: [Int] = []
        out.reserveCapacity(n / 3 + 8)
        if addSpecial && addBOS, let bos = bosTokenID { out.append(bos) }
        var state = Scratch()
        bytes.withUnsafeMutableBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            for f in partition(p, n, parseSpecial: parseSpecial) {
                if f.token >= 0 {
                    out.append(f.token)
                } else {
                    encodeText(p + f.start, f.end - f.start, into: &out, &state)
                }
            }
        }
        if addSpecial && addEOS, let eos = eosTokenID { out.append(eos) }
        return out
    }

    /// A piece of the text: plain text `start ..< end`, or a special token (token >= 0).
    private struct Fragment {
        var start: Int
        var end: Int
        var token: Int
    }

    /// Step 1: cut out special tokens, one token at a time, longest first.
    private func partition(_ p: UnsafePointer<UInt8>, _ n: Int, parseSpecial: Bool) -> [Fragment] {
        var fragments = [Fragment(start: 0, end: n, token: -1)]
        guard n > 0 else { return [] }
        for special in specials where parseSpecial || !special.controlOrUnknown {
            let m = special.bytes.count
            guard m > 0, m <= n, let first = special.bytes.first else { continue }
            var next: [Fragment] = []
            next.reserveCapacity(fragments.count + 2)
            special.bytes.withUnsafeBufferPointer { sb in
                guard let sbp = sb.baseAddress else { return }
                for f in fragments {
                    guard f.token < 0 else {
                        next.append(f)
                        continue
                    }
                    var segStart = f.start
                    var i = f.start
                    while i + m <= f.end {
                        if p[i] == first && memcmp(p + i, sbp, m) == 0 {
                            if i > segStart { next.append(Fragment(start: segStart, end: i, token: -1)) }
                            next.append(Fragment(start: i, end: i + m, token: special.id))
                            i += m
                            segStart = i
                        } else {
                            i += 1
                        }
                    }
                    if f.end > segStart { next.append(Fragment(start: segStart, end: f.end, token: -1)) }
                }
            }
            fragments = next
        }
        return fragments
    }

    /// Buffers reused across one `encode` call, and the ids of recurring pre-tokens.
    private struct Scratch {
        var pre = PreTokenizer.Scratch()
        var cache: [[UInt8]: [Int]] = [:]
        var cacheBytes = 0
    }

    private func encodeText(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int], _ state: inout Scratch) {
        guard n > 0 else { return }
        var cache = state.cache
        var cacheBytes = state.cacheBytes
        PreTokenizer.split(p, n, rules: rules, scratch: &state.pre) { s, e in
            let len = e - s
            let cacheable = len <= QwenTokenizer.maxCachedPieceLength
            let key = cacheable ? Array(UnsafeBufferPointer(start: p + s, count: len)) : []
            if cacheable, let ids = cache[key] {
                out += ids
                return
            }
            let before = out.count
            encodePiece(p + s, len, into: &out)
            if cacheable && cacheBytes < QwenTokenizer.maxCacheBytes {
                cache[key] = Array(out[before...])
                cacheBytes += len
            }
        }
        state.cache = cache
        state.cacheBytes = cacheBytes
    }

    /// Step 3 for one pre-token.
    private func encodePiece(_ p: UnsafePointer<UInt8>, _ len: Int, into out: inout [Int]) {
        if ignoreMerges {
            let whole = symbols.lookup(p, len)
            if whole >= 0 && tokenOfSymbol[whole] >= 0 {
                out.append(Int(tokenOfSymbol[whole]))
                return
            }
        }
        let symbols = self.symbols, ranks = self.mergeRank
        BPERanks.mergeLowestRank(len, pairRank: { s, m, e in
            let a = symbols.lookup(p + s, m - s), b = symbols.lookup(p + m, e - m)
            guard a >= 0, b >= 0, let r = ranks[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))] else { return -1 }
            return Int(r)
        }, emit: { s, e in
            let sym = symbols.lookup(p + s, e - s)
            if sym >= 0 && tokenOfSymbol[sym] >= 0 {
                out.append(Int(tokenOfSymbol[sym]))
                return
            }
            // Not a token: llama.cpp looks each byte of the part's byte-level spelling up as a
            // one-character token; only printable ASCII bytes spell themselves.
            for k in s ..< e where p[k] >= 0x21 && p[k] <= 0x7E {
                let t = singleCharacterToken[Int(p[k])]
                if t >= 0 { out.append(Int(t)) }
            }
        })
    }

    // MARK: - Decoding

    /// The bytes of one token, as llama.cpp's `token_to_piece`: normal tokens through the byte-level
    /// alphabet (a scalar outside it is kept as its UTF-8); user-defined tokens as their text;
    /// control and unknown tokens as their text only if `special`; unused / undefined / byte: nothing.
    public func pieceBytes(_ id: Int, special: Bool = true) throws -> [UInt8] {
        guard id >= 0 && id < tokens.count else {
            throw TokenizerError.tokenIDOutOfRange(id: id, index: 0, vocabularySize: tokens.count)
        }
        let text = tokens[id]
        switch tokenTypes[id] {
        case .normal:
            var out: [UInt8] = []
            for s in text.unicodeScalars {
                if let b = ByteLevel.byte(of: s) { out.append(b) } else { out += Array(String(s).utf8) }
            }
            return out
        case .userDefined: return Array(text.utf8)
        case .control, .unknown: return special ? Array(text.utf8) : []
        case .unused, .undefined, .byte: return []
        }
    }

    /// The bytes behind `ids`; control tokens are left out with `skipSpecialTokens`.
    public func decodeBytes(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> [UInt8] {
        var out: [UInt8] = []
        for (i, id) in ids.enumerated() {
            guard id >= 0 && id < tokens.count else {
                throw TokenizerError.tokenIDOutOfRange(id: id, index: i, vocabularySize: tokens.count)
            }
            out += try pieceBytes(id, special: !skipSpecialTokens)
        }
        return out
    }

    /// The text of `ids` (invalid UTF-8, e.g. a character cut between two calls, becomes U+FFFD).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String {
        String(decoding: try decodeBytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    /// The id of the token with exactly this text, if any (e.g. "<|im_end|>").
    public func tokenID(of text: String) -> Int? {
        if let b = ByteLevel.decode(text) {
            let s = b.withUnsafeBufferPointer { symbols.rank(of: $0) }
            if let s, tokenOfSymbol[s] >= 0, tokens[Int(tokenOfSymbol[s])] == text { return Int(tokenOfSymbol[s]) }
        }
        return specials.first { $0.bytes == Array(text.utf8) }?.id
    }
}
