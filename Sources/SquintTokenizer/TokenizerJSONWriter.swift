import Foundation
import SquintFormats

/// Writing a Hugging Face `tokenizer.json` for a byte-level BPE vocabulary that came from GGUF
/// metadata, so a converted model (an SQ4 file, an AutoGPTQ folder) carries a tokenizer that both
/// `ByteLevelBPETokenizer(tokenizerJSON:)` and the `tokenizers` library read.
///
/// What is written, and how it reads back here:
/// - `model`: BPE, `vocab` = every token that is neither control nor user-defined (ids kept; unused
///   `[PAD<id>]` fillers included, which the reader types unused again); `merges` as given (the
///   GGUF's `"left right"` lines, in rank order); `ignore_merges` for llama3 (llama.cpp's rule).
/// - `added_tokens`: control and unknown tokens `special: true`, user-defined ones `special: false`.
///   The types written are the tokenizer's own (after llama.cpp's load-time overrides), so they read
///   back unchanged.
/// - `pre_tokenizer`: the family's `tokenizers` form (Qwen2's / Llama 3's Split regex + ByteLevel,
///   GPT-2's ByteLevel, SmolLM's Digits + ByteLevel). Read back, the regex runs in a regex engine:
///   it differs from llama.cpp's rules only in contractions under case folding (U+017F).
/// - `normalizer`: NFC only when the tokenizer normalises (one from a GGUF never does: llama.cpp
///   does not), so the text is tokenized as the GGUF source tokenizes it.
/// - `post_processor`: `TemplateProcessing` with the BOS / EOS when they are added, else ByteLevel.
extension ByteLevelBPETokenizer {
    /// The `tokenizer.json` text (compact, deterministic: tokens in id order). `merges` are the
    /// vocabulary's merge lines in rank order (GGUF `tokenizer.ggml.merges`).
    public func tokenizerJSON(merges: [String]) -> String {
        func q(_ s: String) -> String { JSONText.quoted(s) }
        var added: [String] = []
        var vocab: [String] = []
        vocab.reserveCapacity(tokens.count)
        for (id, t) in tokens.enumerated() {
            switch tokenTypes[id] {
            case .control, .unknown, .userDefined:
                let special = tokenTypes[id] != .userDefined
                added.append("{\"id\":\(id),\"content\":\(q(t)),\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                             + "\"normalized\":\(!special),\"special\":\(special)}")
            default:
                vocab.append("\(q(t)):\(id)")
            }
        }
        let byteLevelNoRegex = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}"
        let byteLevelRegex = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"
        func split(_ pattern: String) -> String {
            "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\(q(pattern))},"
                + "\"behavior\":\"Isolated\",\"invert\":false},\(byteLevelNoRegex)]}"
        }
        let pre: String
        switch preTokenizer {
        case .qwen2: pre = split(Self.qwen2Pattern)
        case .llama3: pre = split(Self.llama3Pattern)
        case .gpt2: pre = byteLevelRegex
        case .smollm: pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},\(byteLevelRegex)]}"
        }
        var post = byteLevelNoRegex
        let bos = addBOS ? bosTokenID : nil, eos = addEOS ? eosTokenID : nil
        if bos != nil || eos != nil {
            func special(_ id: Int) -> String { "{\"SpecialToken\":{\"id\":\(q(tokens[id])),\"type_id\":0}}" }
            func seq(_ name: String, _ type: Int) -> String { "{\"Sequence\":{\"id\":\"\(name)\",\"type_id\":\(type)}}" }
            let single = [bos.map(special), seq("A", 0), eos.map(special)].compactMap { $0 }
            let pair = [bos.map(special), seq("A", 0), eos.map(special), bos.map(special), seq("B", 1), eos.map(special)].compactMap { $0 }
            let ids = Array(Set([bos, eos].compactMap { $0 })).sorted()
            let specials = ids.map { "\(q(tokens[$0])):{\"id\":\(q(tokens[$0])),\"ids\":[\($0)],\"tokens\":[\(q(tokens[$0]))]}" }
            post = "{\"type\":\"TemplateProcessing\",\"single\":[\(single.joined(separator: ","))],\"pair\":[\(pair.joined(separator: ","))],"
                + "\"special_tokens\":{\(specials.joined(separator: ","))}}"
        }
        var s = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[" + added.joined(separator: ",") + "]"
        s += ",\"normalizer\":" + (normalizesNFC ? "{\"type\":\"NFC\"}" : "null")
        s += ",\"pre_tokenizer\":" + pre + ",\"post_processor\":" + post
        s += ",\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}"
        s += ",\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null"
        s += ",\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":\(ignoreMerges)"
        s += ",\"vocab\":{" + vocab.joined(separator: ",") + "},\"merges\":[" + merges.map(q).joined(separator: ",") + "]}}"
        return s
    }
}
