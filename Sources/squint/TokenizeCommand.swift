import ArgumentParser
import Foundation
import SquintTokenizer

/// `squint tokenize`: Qwen-VL-Chat token ids of a text, as the official tokenizer gives them.
///
/// Exit codes: 0 success; 1 the vocabulary could not be loaded or the text cannot be encoded (an
/// unclosed or too long `<img>` span); 64 bad usage.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the Qwen-VL-Chat token ids of a text.",
        discussion: """
            The text is NFC-normalised, special tokens are recognised according to --allowed-special, \
            and <img>PATH</img> becomes the path's bytes padded to 256 ids, exactly as the official \
            QWenTokenizer.encode does. The vocabulary is --vocab, else $SQUINT_VOCAB, else \
            ./qwen.tiktoken.

            Exit codes: 0 success; 1 the vocabulary cannot be loaded or the text cannot be encoded; 64 bad command line.

            Example: squint tokenize --vocab fixtures/tokenizer/qwen.tiktoken "Hello, world"
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case all, image, none
        var allowed: AllowedSpecial {
            switch self {
            case .all: return .all
            case .image: return .image
            case .none: return .noSpecial
            }
        }
    }

    @Option(name: .long, help: "The qwen.tiktoken vocabulary file.")
    var vocab: String?

    @Flag(name: .long, help: "Print {\"ids\": [...], \"tokens\": [...]} instead of ids.")
    var json = false

    @Option(name: .long, help: "Special tokens recognised in TEXT: all (encode's default), image (IMAGE_ST only, as make_context), none.")
    var allowedSpecial: Mode = .all

    @Argument(help: "The text to tokenize.")
    var text: String

    /// --vocab, then $SQUINT_VOCAB, then ./qwen.tiktoken.
    static func vocabularyPath(_ option: String?) -> String {
        if let option { return option }
        if let env = ProcessInfo.processInfo.environment["SQUINT_VOCAB"], !env.isEmpty { return env }
        return "qwen.tiktoken"
    }

    func run() throws {
        let path = Self.vocabularyPath(vocab)
        let tokenizer: QwenTokenizer
        do {
            tokenizer = try QwenTokenizer(vocabularyFile: path)
        } catch let error as TokenizerError {
            if case .cannotRead = error {
                throw ValidationErrorExit(message: "\(error) (pass --vocab FILE or set SQUINT_VOCAB)")
            }
            throw ValidationErrorExit(message: "\(error)")
        }
        let ids: [Int]
        do {
            ids = try tokenizer.encode(text, allowedSpecial: allowedSpecial.allowed)
        } catch {
            throw ValidationErrorExit(message: "\(error)")
        }
        if json {
            let tokens = try ids.map { Self.displayString(try tokenizer.tokenBytes($0)) }
            let object: [String: Any] = ["ids": ids, "tokens": tokens]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }

    /// A token's bytes as text: valid UTF-8 as is, other bytes as `\xNN` (a token may hold part of
    /// a character).
    static func displayString(_ bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        var out = ""
        var i = 0
        while i < bytes.count {
            // Longest valid prefix run, else one escaped byte.
            var j = min(bytes.count, i + 4)
            var matched = false
            while j > i {
                if let s = String(validating: bytes[i ..< j], as: UTF8.self) {
                    out += s; i = j; matched = true; break
                }
                j -= 1
            }
            if !matched { out += String(format: "\\x%02x", bytes[i]); i += 1 }
        }
        return out
    }
}

/// An error printed as its message with exit code 1 (no usage text).
struct ValidationErrorExit: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
