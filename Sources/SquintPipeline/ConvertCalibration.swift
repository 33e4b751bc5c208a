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
    public var totalTokens: Int { samples.reduce(0) { $0 + $1.tokens.count } }

    /// One-line description for the provenance field.
    public var summary: String {
        "\((path as NSString).lastPathComponent) sha256 \(sha256): \(samples.count) image-text pairs, \(totalTokens) tokens, "
            + "rendered as one chatml turn + caption + <|im_end|> (RENDERING.md), batch 1"
    }

    /// Reads and checks every line (a bad line names file:line; a missing image names the image)
    /// and tokenizes it. `maxSamples` keeps the first N pairs.
    public init(path: String, tokenizer: QwenTokenizer, maxSamples: Int? = nil) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError.io(path: path, message: FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file")
        }
        self.path = path
        sha256 = data.withUnsafeBytes { sha256Hex($0) }
        let folder = Paths.parent(of: path)
        var samples: [Sample] = []
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (k, raw) in lines.enumerated() {
            if let m = maxSamples, samples.count >= m { break }
            let lineNo = k + 1
            var bytes = Array(raw)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }   // blank lines are allowed
            let obj: JSONValue
            do {
                obj = try bytes.withUnsafeBytes { try StrictJSON.parseObject($0, path: path, what: "line \(lineNo)") }
            } catch let e as FormatError {
                // The parser's message starts with the path and the line, which the case already names.
                var problem = e.description
                if problem.hasPrefix(path + ": ") { problem.removeFirst(path.count + 2) }
                if problem.hasPrefix("invalid: line \(lineNo) ") { problem = String(problem.dropFirst("invalid: line \(lineNo) ".count)) }
                throw ConvertError.calibrationLine(path: path, line: lineNo, problem: problem)
            }
            guard case .object(let members) = obj else {
                throw ConvertError.calibrationLine(path: path, line: lineNo, problem: "expected a JSON object")
            }
            func string(_ key: String) throws -> String {
                guard let v = obj[key] else {
                    throw ConvertError.calibrationLine(path: path, line: lineNo, problem: "missing \"\(key)\"")
                }
                guard case .string(let s) = v else {
                    throw ConvertError.calibrationLine(path: path, line: lineNo, problem: "\"\(key)\" must be a string, found \(v.kindName)")
                }
                return s
            }
            for m in members where !["image", "prompt", "caption"].contains(m.key) {
                throw ConvertError.calibrationLine(path: path, line: lineNo, problem: "unknown key \"\(m.key)\" (expected image, prompt, caption)")
            }
            let image = try string("image"), prompt = try string("prompt"), caption = try string("caption")
            guard !image.isEmpty, image.utf8.count <= 256 - 2 else {
                throw ConvertError.calibrationLine(path: path, line: lineNo, problem: "image path must be 1...254 bytes (it is written into the <img> span)")
            }
            let resolved = image.hasPrefix("/") ? image : (folder.isEmpty ? image : "\(folder)/\(image)")
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDir), !isDir.boolValue else {
                throw ConvertError.calibrationImage(path: path, line: lineNo, image: image, problem: "no such file (looked at \(resolved))")
            }
            let tokens: [Int]
            do {
                tokens = try tokenizer.calibrationTokens(image: image, prompt: prompt, caption: caption)
            } catch {
                throw ConvertError.calibrationLine(path: path, line: lineNo, problem: "cannot tokenize: \(error)")
            }
            samples.append(Sample(line: lineNo, image: image, imagePath: resolved, tokens: tokens))
        }
        guard !samples.isEmpty else {
            throw ConvertError.calibrationLine(path: path, line: 1, problem: "no calibration pairs in the file")
        }
        self.samples = samples
    }
}
