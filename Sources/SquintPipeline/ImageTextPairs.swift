import Foundation
import SquintFormats

/// A problem with an image-text pairs file, as `convert --calib` and `validate --pairs` report it.
public enum PairsFileError: Error, CustomStringConvertible, Equatable {
    /// The file as a whole: it cannot be opened, or holds no pairs.
    case file(path: String, problem: String)
    /// One line (1-based) breaks a rule.
    case line(path: String, line: Int, problem: String)
    /// A pair's image file is missing.
    case image(path: String, line: Int, image: String, problem: String)

    public var description: String {
        switch self {
        case let .file(p, w): return printable("\(p): \(w)")
        case let .line(p, l, w): return printable("\(p):\(l): \(w)")
        case let .image(p, l, i, w): return printable("\(p):\(l): image \(i): \(w)")
        }
    }
}

/// The one reader of image-text pairs files (jsonl), shared by `convert` (calibration) and `validate`
/// (evaluation) so both accept exactly the same files (issue 17: they used to differ on a BOM, on
/// invalid UTF-8 and on a NUL in an image path). The rules:
/// - UTF-8 text; one JSON object per line, `{"image": str, "prompt": str, "caption": str}` and no
///   other members (strict JSON: no duplicate keys, comments or NaN);
/// - a UTF-8 byte order mark at the very start of the file is skipped; a CR before LF is dropped;
///   lines of only spaces and tabs are skipped;
/// - bytes that are not UTF-8 are refused with the line number (never replaced);
/// - `image` is 1...254 bytes (it is written into the `<img>` span) without U+0000, and names an
///   existing file; relative paths are taken from the jsonl's folder;
/// - a file that cannot be opened is "cannot open the file", one without pairs "no image-text pairs".
public struct ImageTextPairs {
    public struct Pair: Sendable, Equatable {
        /// 1-based line in the file (for messages).
        public var line: Int
        /// The image path as written in the file; it is also the text inside `<img>...</img>`.
        public var image: String
        /// `image` resolved against the file's folder.
        public var imagePath: String
        public var prompt: String
        public var caption: String
    }

    public let path: String
    public let pairs: [Pair]
    /// SHA-256 of the file's bytes.
    public let sha256: String

    /// Reads and checks the file; `limit` keeps the first N pairs (later lines are not read).
    public init(path: String, limit: Int? = nil) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw PairsFileError.file(path: path, problem: "cannot open the file: no such file") }
        guard !isDir.boolValue else { throw PairsFileError.file(path: path, problem: "cannot open the file: it is a folder") }
        guard let data = fm.contents(atPath: path) else { throw PairsFileError.file(path: path, problem: "cannot open the file: not readable") }
        self.path = path
        sha256 = data.withUnsafeBytes { sha256Hex($0) }
        let folder = Paths.parent(of: path)
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var pairs: [Pair] = []
        for (k, raw) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            if let limit, pairs.count >= limit { break }
            let lineNo = k + 1
            func bad(_ w: String) -> PairsFileError { .line(path: path, line: lineNo, problem: w) }
            var line = Array(raw)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            guard String(validating: line, as: UTF8.self) != nil else {
                let at = Self.firstInvalidUTF8(line)
                throw bad("not valid UTF-8 (byte \(at + 1) of the line, 0x\(String(line[at], radix: 16)))")
            }
            let obj: JSONValue
            do {
                obj = try line.withUnsafeBytes { try StrictJSON.parseObject($0, path: path, what: "the line") }
            } catch let e as FormatError {
                guard case .invalid(_, let what) = e else { throw bad("\(e)") }
                throw bad(what)
            }
            guard case .object(let members) = obj else { throw bad("expected a JSON object") }
            for m in members where !["image", "prompt", "caption"].contains(m.key) {
                throw bad("unknown key \"\(m.key)\" (expected image, prompt, caption)")
            }
            func string(_ key: String) throws -> String {
                guard let v = obj[key] else { throw bad("missing \"\(key)\" (each line needs string members image, prompt and caption)") }
                guard case .string(let s) = v else { throw bad("\"\(key)\" must be a string, found \(v.kindName)") }
                return s
            }
            let image = try string("image"), prompt = try string("prompt"), caption = try string("caption")
            guard !image.utf8.contains(0) else { throw bad("the image path contains U+0000") }
            guard !image.isEmpty, image.utf8.count <= 254 else {
                throw bad("image path must be 1...254 bytes (it is written into the <img> span)")
            }
            let resolved = image.hasPrefix("/") || folder.isEmpty ? image : "\(folder)/\(image)"
            guard fm.fileExists(atPath: resolved, isDirectory: &isDir), !isDir.boolValue else {
                throw PairsFileError.image(path: path, line: lineNo, image: image, problem: "no such file (looked at \(resolved))")
            }
            pairs.append(Pair(line: lineNo, image: image, imagePath: resolved, prompt: prompt, caption: caption))
        }
        guard !pairs.isEmpty else { throw PairsFileError.file(path: path, problem: "no image-text pairs in the file") }
        self.pairs = pairs
    }

    /// Index of the first byte of `b` that does not start or continue a valid UTF-8 sequence.
    static func firstInvalidUTF8(_ b: [UInt8]) -> Int {
        var i = 0
        while i < b.count {
            let c = b[i]
            let n = c < 0x80 ? 1 : (0xC2...0xDF).contains(c) ? 2 : (0xE0...0xEF).contains(c) ? 3 : (0xF0...0xF4).contains(c) ? 4 : 0
            guard n > 0, i + n <= b.count else { return i }
            if String(validating: b[i..<(i + n)], as: UTF8.self) == nil { return i }
            i += n
        }
        return 0
    }
}
