import Foundation
import SquintFormats
import SquintTokenizer

/// The calibration set of a GPTQ run: image-text pairs rendered into token sequences exactly as the
/// AutoGPTQ run of the reference did (fixtures/calibration/RENDERING.md): one `model.chat`-style turn
/// ("Picture 1: <img>PATH</img>\nPROMPT", system "You are a helpful assistant.") followed by the
/// caption and `<|im_end|>`, batch size 1, no padding.
public struct CalibrationSet {
    public struct Sample: Sendable {
        /// 1-based line in the jsonl file (for messages).
        public var line: Int
        /// The image path as written in the file; it is also the text inside `<img>...</img>`.
        public var image: String
        /// The resolved path (relative paths are taken from the jsonl's folder, as AutoGPTQ's run
        /// did with that folder as its working directory).
        public var imagePath: String
        public var tokens: [Int]
    }

    public let path: String
    public let samples: [Sample]
    /// SHA-256 of the jsonl bytes (recorded in the output's provenance and the resume state).
    public let sha256: String
    /// One line per sample cut to the model's context (printed by `convert`).
    public let warnings: [String]
    public var totalTokens: Int { samples.reduce(0) { $0 + $1.tokens.count } }

    /// One-line description for the provenance field.
    public var summary: String {
        "\((path as NSString).lastPathComponent) sha256 \(sha256): \(samples.count) image-text pairs, \(totalTokens) tokens, "
            + "rendered as one chatml turn + caption + <|im_end|> (RENDERING.md), batch 1"
    }

    /// Reads the pairs file (`ImageTextPairs`: the rules shared with `validate`) and tokenizes each
    /// pair. `maxSamples` keeps the first N pairs. `maxTokens` (the model's `seq_length`) caps a
    /// sample: a longer one is cut to its first `maxTokens` tokens with a warning, so one huge
    /// caption cannot cost minutes and gigabytes (a context that alone exceeds it is refused).
    public init(path: String, tokenizer: QwenTokenizer, maxSamples: Int? = nil, maxTokens: Int? = nil) throws {
        let file = try ImageTextPairs(path: path, limit: maxSamples)
        self.path = path
        sha256 = file.sha256
        var samples: [Sample] = []
        var warnings: [String] = []
        for p in file.pairs {
            var tokens: [Int]
            do {
                tokens = try tokenizer.calibrationTokens(image: p.image, prompt: p.prompt, caption: p.caption)
                if let maxTokens, tokens.count > maxTokens {
                    let context = try tokenizer.makeContext(query: QwenTokenizer.fromListFormat([.image(p.image), .text(p.prompt)])).tokens.count
                    guard context < maxTokens else {
                        throw ConvertError.calibrationLine(path: path, line: p.line, problem: "the prompt and image alone render to \(context) tokens, "
                            + "at or beyond the model's context of \(maxTokens) (seq_length): shorten the prompt")
                    }
                    warnings.append("\(printable(path)):\(p.line): the pair renders to \(tokens.count) tokens; "
                        + "only the first \(maxTokens) are used (the model's context, seq_length)")
                    tokens.removeSubrange(maxTokens...)
                }
            } catch let e as ConvertError {
                throw e
            } catch {
                throw ConvertError.calibrationLine(path: path, line: p.line, problem: "cannot tokenize: \(error)")
            }
            samples.append(Sample(line: p.line, image: p.image, imagePath: p.imagePath, tokens: tokens))
        }
        self.samples = samples
        self.warnings = warnings
    }
}
