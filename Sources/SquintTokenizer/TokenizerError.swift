import SquintFormats

/// Every way the tokenizer refuses input. Cases name the file (and line) or the position in the
/// text / id list, so the CLI can print the message as is. Nothing in this module traps on bad input.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The vocabulary file could not be read at all.
    case cannotRead(file: String, reason: String)
    /// One line of a `.tiktoken` file breaks the format (`base64 SPACE rank`, ranks 0, 1, 2, ...).
    case malformedVocabulary(file: String, line: Int, problem: String)
    /// The file is well formed but is not the Qwen vocabulary (wrong rank count, missing single bytes).
    case wrongVocabulary(file: String, problem: String)
    /// `<img>...</img>` holds more than 256 bytes of path (the official tokenizer raises too).
    case imagePathTooLong(bytes: Int, limit: Int)
    /// An `<img>` with no `</img>` after it (in text: byte offset; in ids: index).
    case unclosedImageSpan(position: Int)
    /// Another special token between `<img>` and `</img>` (the official tokenizer fails on it too).
    case specialTokenInImageSpan(token: String)
    /// An id outside 0..<151860 was asked to be decoded.
    case unknownTokenID(id: Int, index: Int)
    /// The ids between `<img>` and `</img>` are not a padded byte string.
    case malformedImageSpan(index: Int, problem: String)
    /// A `<ref>`, `<box>`, `<quad>` or `<img>` tag in a response is never closed.
    case unclosedTag(tag: String, position: Int)
    /// The text inside `<box>...</box>` is not four integers `(x1,y1),(x2,y2)`.
    case malformedBox(text: String)
    /// A byte-level BPE vocabulary (GGUF arrays, `tokenizer.json`) that cannot be used as given.
    case badBPEVocabulary(source: String, problem: String)
    /// A pre-tokenizer name (GGUF `tokenizer.ggml.pre`) whose rules we do not implement.
    case unknownPreTokenizer(name: String, supported: [String])
    /// An id outside the vocabulary of a byte-level BPE tokenizer.
    case tokenIDOutOfRange(id: Int, index: Int, vocabularySize: Int)

    /// One line: text from the vocabulary file or the prompt is escaped (`printable`).
    public var description: String { printable(rawDescription) }

    private var rawDescription: String {
        switch self {
        case let .cannotRead(f, r): return "\(f): cannot read the vocabulary: \(r)"
        case let .malformedVocabulary(f, l, p): return "\(f):\(l): malformed vocabulary line: \(p)"
        case let .wrongVocabulary(f, p): return "\(f): not the Qwen vocabulary: \(p)"
        case let .imagePathTooLong(b, l):
            return "the image path between <img> and </img> is \(b) bytes; at most \(l) fit in an image span"
        case let .unclosedImageSpan(p): return "<img> at position \(p) has no matching </img>"
        case let .specialTokenInImageSpan(t):
            return "special token \(t) inside <img>...</img>; only a path may stand there"
        case let .unknownTokenID(id, i): return "token id \(id) at index \(i) is outside the vocabulary (0..<151860)"
        case let .malformedImageSpan(i, p): return "image span starting at index \(i): \(p)"
        case let .unclosedTag(t, p): return "\(t) at character \(p) is never closed"
        case let .malformedBox(t): return "box '\(t)' is not (x1,y1),(x2,y2) with integer coordinates"
        case let .badBPEVocabulary(s, p): return "\(s): unusable BPE vocabulary: \(p)"
        case let .unknownPreTokenizer(n, s):
            return "pre-tokenizer '\(n)' is not supported (supported: \(s.joined(separator: ", ")))"
        case let .tokenIDOutOfRange(id, i, n): return "token id \(id) at index \(i) is outside the vocabulary (0..<\(n))"
        }
    }
}
