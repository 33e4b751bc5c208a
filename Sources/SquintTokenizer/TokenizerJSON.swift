import Foundation

/// Hugging Face `tokenizer.json` (the `tokenizers` library's serialisation) for byte-level BPE models:
/// Qwen2 / Qwen2.5, Llama 3, SmolLM, GPT-2. Only the parts these use are understood; anything else is
/// refused by name rather than tokenized differently.
///
/// Read: `model` (type BPE: `vocab` {text: id}, `merges` as "a b" strings or [a, b] pairs,
/// `ignore_merges`; `byte_fallback` must be false), `added_tokens` (`special` -> control, otherwise
/// user-defined), `normalizer` (none or NFC), `pre_tokenizer` (the shapes below), `post_processor`
/// (a `TemplateProcessing`, alone or in a `Sequence`, whose single template starts / ends with a special
/// token adds BOS / EOS).
/// Ids missing from both tables become unused `[PAD<id>]` tokens, as llama.cpp's converter does.
///
/// Pre-tokenizers recognised:
/// - `ByteLevel` with `use_regex: true` -> GPT-2 rules;
/// - `Sequence[Digits(individual_digits: true), ByteLevel(use_regex: true)]` -> SmolLM rules;
/// - `Sequence[Split(Regex: Qwen2's or Llama 3's pattern, Isolated), ByteLevel(use_regex: false)]` ->
///   those rules as a regex engine runs them (contractions under case folding, so U+017F counts as s;
///   llama.cpp compares after lower-casing instead: the one place the two can differ on NFC text).
extension ByteLevelBPETokenizer {
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Largest `tokenizer.json` read (Qwen2.5's is 7 MB).
    public static let maxTokenizerJSONBytes: Int64 = 256 << 20

    /// Loads a `tokenizer.json` file.
    public convenience init(tokenizerJSONFile path: String) throws {
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
           size.int64Value > Self.maxTokenizerJSONBytes
        {
            throw TokenizerError.badBPEVocabulary(
                source: path, problem: "\(size.int64Value) bytes; a tokenizer.json is a few MB (limit \(Self.maxTokenizerJSONBytes))")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "unreadable" : "no such file"
            throw TokenizerError.cannotRead(file: path, reason: reason)
        }
        try self.init(tokenizerJSON: data, source: path)
    }

    /// Parses the bytes of a `tokenizer.json`.
    public convenience init(tokenizerJSON data: Data, source: String = "tokenizer.json") throws {
        func bad(_ problem: String) -> TokenizerError { .badBPEVocabulary(source: source, problem: problem) }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw bad("not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw bad("no \"model\" object") }
        guard model["type"] as? String == "BPE" else {
            throw bad("model type \(model["type"].map { "\($0)" } ?? "missing") is not BPE")
        }
        if model["byte_fallback"] as? Bool == true { throw bad("byte_fallback BPE (SentencePiece style) is not supported") }
        guard let vocab = model["vocab"] as? [String: Any] else { throw bad("model.vocab is not an object") }

        // Ids: vocab, then added tokens (which may repeat a vocab entry with the same id).
        var textOfID: [Int: String] = [:]
        var typeOfID: [Int: Int32] = [:]
        textOfID.reserveCapacity(vocab.count)
        for (text, value) in vocab {
            guard let id = (value as? NSNumber)?.intValue, id >= 0, id < Int(Int32.max) else {
                throw bad("vocab entry '\(text)' has no valid id")
            }
            if let other = textOfID.updateValue(text, forKey: id) {
                throw bad("id \(id) is both '\(other)' and '\(text)'")
            }
            // `[PAD<id>]` at its own id is a filler (llama.cpp's converter's name for ids the vocabulary
            // does not use; Squint's tokenizer.json writer keeps them so the vocabulary size survives).
            typeOfID[id] = (text == "[PAD\(id)]" ? TokenType.unused : TokenType.normal).rawValue
        }
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = (entry["id"] as? NSNumber)?.intValue, id >= 0, id < Int(Int32.max),
                  let content = entry["content"] as? String
            else { throw bad("an added token has no valid id or content") }
            if let other = textOfID[id], other != content {
                throw bad("added token \(id) '\(content)' conflicts with vocab entry '\(other)'")
            }
            textOfID[id] = content
            let special = (entry["special"] as? Bool) ?? false
            typeOfID[id] = (special ? TokenType.control : TokenType.userDefined).rawValue
        }
        guard let maxID = textOfID.keys.max() else { throw bad("empty vocabulary") }
        // Missing ids become `[PAD<id>]` fillers; real files have none or a few (Squint's own writer keeps
        // them as entries). At most about half of the ids may be missing, so the tables stay within a
        // small multiple of the file's size (a 46-byte file with one id of 10^6 asked for 16 MB).
        guard maxID < 2 * textOfID.count + 1024 else {
            throw bad("ids reach \(maxID) for \(textOfID.count) tokens (more than half of the ids would be missing)")
        }
        var tokens = [String](), types = [Int32]()
        tokens.reserveCapacity(maxID + 1)
        for id in 0 ... maxID {
            tokens.append(textOfID[id] ?? "[PAD\(id)]")
            types.append(typeOfID[id] ?? TokenType.unused.rawValue)
        }

        var merges: [String] = []
        for (i, m) in (model["merges"] as? [Any] ?? []).enumerated() {
            if let s = m as? String {
                merges.append(s)
            } else if let pair = m as? [String], pair.count == 2 {
                merges.append(pair[0] + " " + pair[1])
            } else {
                throw bad("merge \(i) is neither \"a b\" nor [a, b]")
            }
        }

        var nfc = false
        if let norm = root["normalizer"] as? [String: Any] {
            guard norm["type"] as? String == "NFC" else {
                throw bad("normalizer \(norm["type"] ?? "?") is not supported (only NFC)")
            }
            nfc = true
        }

        let (kind, rules) = try Self.preTokenizer(root["pre_tokenizer"], bad)

        var addBOS = false, addEOS = false
        var bos: Int?, eos: Int?
        // A TemplateProcessing alone or inside a Sequence (Llama 3: Sequence[ByteLevel, TemplateProcessing]),
        // looked for as llama.cpp's converter (gguf-py SpecialVocab) does.
        let post = root["post_processor"] as? [String: Any]
        let processors = (post?["type"] as? String == "Sequence" ? post?["processors"] as? [[String: Any]] : nil) ?? post.map { [$0] } ?? []
        func specialID(_ item: [String: Any]?) -> Int? {
            guard let name = (item?["SpecialToken"] as? [String: Any])?["id"] as? String else { return nil }
            return textOfID.first { $0.value == name }?.key
        }
        for p in processors where p["type"] as? String == "TemplateProcessing" {
            guard let single = p["single"] as? [[String: Any]] else { continue }
            if let id = specialID(single.first) { addBOS = true; bos = id }
            if single.count > 1, let id = specialID(single.last) { addEOS = true; eos = id }
        }

        try self.init(tokens: tokens, tokenTypes: types, merges: merges, kind: kind, rules: rules,
                      ignoreMerges: model["ignore_merges"] as? Bool ?? false, nfc: nfc, llamaCppTokenTypes: false,
                      bosTokenID: bos, eosTokenID: eos, addBOS: addBOS, addEOS: addEOS, source: source)
    }

    private static func preTokenizer(_ any: Any?, _ bad: (String) -> TokenizerError) throws
        -> (PreTokenizerKind, PreTokenizer.Rules)
    {
        func byteLevel(_ d: [String: Any], regex: Bool) -> Bool {
            d["type"] as? String == "ByteLevel" && (d["use_regex"] as? Bool ?? true) == regex
                && (d["add_prefix_space"] as? Bool ?? false) == false
        }
        guard let pre = any as? [String: Any] else { throw bad("no pre_tokenizer") }
        if byteLevel(pre, regex: true) { return (.gpt2, .gpt2) }
        if pre["type"] as? String == "Sequence", let parts = pre["pretokenizers"] as? [[String: Any]], parts.count == 2 {
            if parts[0]["type"] as? String == "Digits", parts[0]["individual_digits"] as? Bool == true,
               byteLevel(parts[1], regex: true)
            {
                return (.smollm, .gpt2DigitsIsolated)
            }
            if parts[0]["type"] as? String == "Split",
               ((parts[0]["behavior"] as? String) ?? "Isolated") == "Isolated",
               (parts[0]["invert"] as? Bool ?? false) == false,
               let pattern = (parts[0]["pattern"] as? [String: Any])?["Regex"] as? String,
               byteLevel(parts[1], regex: false)
            {
                if pattern == qwen2Pattern { return (.qwen2, .qwenTiktoken) }
                if pattern == llama3Pattern { return (.llama3, .llama3Tiktoken) }
                throw bad("Split pattern \(pattern) is not one we implement (Qwen2's or Llama 3's)")
            }
        }
        let text = (try? JSONSerialization.data(withJSONObject: pre, options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "?"
        throw bad("pre_tokenizer \(text.prefix(200)) is not supported")
    }
}
