import Foundation

/// Qwen-VL-Chat prompting: `from_list_format`, `make_context` (ChatML), the calibration rendering
/// rule, response extraction and `<ref>/<box>` parsing (SPEC 4.3-4.5, shared/calibration/README.md).

/// One element of the official `from_list_format` list.
public enum ChatElement: Equatable, Sendable {
    /// `{'image': path}` -> `Picture {n}: <img>path</img>\n` (n counts images from 1).
    case image(String)
    /// `{'text': t}` -> t verbatim.
    case text(String)
    /// `{'ref': r, 'box': [...]}` -> `<ref>r</ref>` (if r is given) then `<box>(x1,y1),(x2,y2)</box>`
    /// per box; coordinates are integers normalised to [0, 1000).
    case box(ref: String?, boxes: [BoxCorners])
}

/// Top-left and bottom-right corners, normalised to [0, 1000) (SPEC 4.5).
public struct BoxCorners: Equatable, Sendable {
    public var x1, y1, x2, y2: Int
    public init(_ x1: Int, _ y1: Int, _ x2: Int, _ y2: Int) {
        self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2
    }
}

/// A box found in a model response, with the `<ref>` phrase immediately before it (if any).
public struct GroundedBox: Equatable, Sendable {
    public var ref: String?
    public var box: BoxCorners
    public init(ref: String?, box: BoxCorners) { self.ref = ref; self.box = box }
}

/// One earlier turn of a conversation; `response` nil means the turn was never answered.
public struct ChatTurn: Equatable, Sendable {
    public var query: String
    public var response: String?
    public init(query: String, response: String?) { self.query = query; self.response = response }
}

/// `make_context` output: the ChatML text (for logging and response trimming) and its ids.
public struct ChatContext: Equatable, Sendable {
    public var rawText: String
    public var tokens: [Int]
}

extension QwenTokenizer {
    /// `model.chat`'s default system prompt.
    public static let defaultSystemPrompt = "You are a helpful assistant."
    /// Generation stops at `<|im_end|>` or `<|im_start|>` (`stop_words_ids` for chatml).
    public static let stopWords: [[Int]] = [[SpecialTokens.imEnd], [SpecialTokens.imStart]]
    /// `make_context`'s default window: history is dropped from the oldest turn once it would reach this.
    public static let defaultMaxWindowSize = 6144

    /// The official `from_list_format`. `spaceAfterPictureColon: false` reproduces the older
    /// 2023-10 Int4 code copy, which writes `Picture {n}:` without the space (SPEC 4.3).
    public static func fromListFormat(_ elements: [ChatElement], spaceAfterPictureColon: Bool = true) -> String {
        var text = ""
        var images = 0
        for e in elements {
            switch e {
            case let .image(path):
                images += 1
                text += "Picture \(images):" + (spaceAfterPictureColon ? " " : "") + "<img>" + path + "</img>\n"
            case let .text(t):
                text += t
            case let .box(ref, boxes):
                if let ref { text += "<ref>" + ref + "</ref>" }
                for b in boxes { text += "<box>(\(b.x1),\(b.y1)),(\(b.x2),\(b.y2))</box>" }
            }
        }
        return text
    }

    /// `[im_start] + enc(role) + enc("\n") + enc(content) + [im_end]`, role and content encoded
    /// separately with IMAGE_ST allowed (so `<|im_end|>` typed in content stays text).
    private func turnTokens(_ role: String, _ content: String) throws -> [Int] {
        [SpecialTokens.imStart] + (try encode(role, allowedSpecial: .image)) + newlineTokens
            + (try encode(content, allowedSpecial: .image)) + [SpecialTokens.imEnd]
    }

    private var newlineTokens: [Int] { [198] }  // enc("\n"), fixed by the vocabulary

    /// The official `make_context(..., chat_format="chatml")`: system turn, as many history turns as
    /// fit (newest kept; a turn is added only while system + turns stay below `maxWindowSize`; the
    /// final query is not counted), then the query and an open assistant turn.
    public func makeContext(query: String, history: [ChatTurn] = [],
                            system: String = QwenTokenizer.defaultSystemPrompt,
                            maxWindowSize: Int = QwenTokenizer.defaultMaxWindowSize) throws -> ChatContext
    {
        let imStart = "<|im_start|>", imEnd = "<|im_end|>"
        let nl = newlineTokens
        let systemTokens = try turnTokens("system", system)
        var context: [Int] = []
        var raw = ""
        for turn in history.reversed() {
            let queryTokens = try turnTokens("user", turn.query)
            let next: [Int]
            let prevChat: String
            if let response = turn.response {
                next = nl + queryTokens + nl + (try turnTokens("assistant", response))
                prevChat = "\n\(imStart)user\n\(turn.query)\(imEnd)\n\(imStart)assistant\n\(response)\(imEnd)"
            } else {
                next = nl + queryTokens + nl
                prevChat = "\n\(imStart)user\n\(turn.query)\(imEnd)\n"
            }
            guard systemTokens.count + next.count + context.count < maxWindowSize else { break }
            context = next + context
            raw = prevChat + raw
        }
        var tokens = systemTokens + context
        raw = "\(imStart)system\n\(system)\(imEnd)" + raw
        tokens += nl + (try turnTokens("user", query)) + nl
            + [SpecialTokens.imStart] + (try encode("assistant")) + nl
        raw += "\n\(imStart)user\n\(query)\(imEnd)\n\(imStart)assistant\n"
        return ChatContext(rawText: raw, tokens: tokens)
    }

    /// One calibration sequence (shared/calibration/README.md): the one-turn context of
    /// `Picture 1: <img>image</img>\n` + prompt, then `encode(caption)` and `<|im_end|>`.
    public func calibrationTokens(image: String, prompt: String, caption: String,
                                  system: String = QwenTokenizer.defaultSystemPrompt) throws -> [Int]
    {
        let query = Self.fromListFormat([.image(image), .text(prompt)])
        return try makeContext(query: query, system: system).tokens + (try encode(caption)) + [SpecialTokens.imEnd]
    }

    /// The answer in generated ids: decoded up to the first `<|im_end|>`/`<|im_start|>`, then
    /// whitespace-stripped as Python's `str.strip()`.
    public func extractResponse(generated: [Int]) throws -> String {
        let end = generated.firstIndex { $0 == SpecialTokens.imEnd || $0 == SpecialTokens.imStart } ?? generated.count
        return Self.pythonStrip(try decode(Array(generated[..<end])))
    }

    /// The official `decode_tokens(..., chat_format="chatml")` on prompt + generated ids, quirks
    /// included: the decoded text loses its first `rawTextLength` characters (code points), and when
    /// no stop id follows `contextLength`, the LAST id is dropped too (Python's loop variable ends
    /// on it). Prefer `extractResponse(generated:)` unless matching the official output matters.
    public func decodeResponseOfficially(_ tokens: [Int], rawTextLength: Int, contextLength: Int) throws -> String {
        var eod = contextLength
        if contextLength < tokens.count {
            for k in contextLength ..< tokens.count {
                eod = k
                if tokens[k] == SpecialTokens.imEnd || tokens[k] == SpecialTokens.imStart { break }
            }
        }
        let text = try decode(Array(tokens[..<min(eod, tokens.count)]))
        let scalars = text.unicodeScalars
        let start = scalars.index(scalars.startIndex, offsetBy: rawTextLength, limitedBy: scalars.endIndex) ?? scalars.endIndex
        return Self.pythonStrip(String(scalars[start...]))
    }

    /// Python `str.strip()`: removes White_Space scalars and U+001C...U+001F from both ends.
    public static func pythonStrip(_ s: String) -> String {
        func isSpace(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace || (u.value >= 0x1C && u.value <= 0x1F) }
        let sc = s.unicodeScalars
        guard let first = sc.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = sc.lastIndex(where: { !isSpace($0) })!
        return String(sc[first ... last])
    }

    // MARK: - Boxes

    /// A tagged part of a response, as the official `to_list_format` splits it.
    public enum ResponsePart: Equatable, Sendable {
        case text(String), image(String), ref(String), box(String), quad(String)
    }

    /// The official `to_list_format`: NFC, then the text between `<img>/<ref>/<box>/<quad>` and
    /// the first matching closing tag becomes one part; everything else is text (empty text parts are
    /// dropped). An opening tag never closed is an error, as in the official code.
    public static func toListFormat(_ text: String) throws -> [ResponsePart] {
        let s = Array(text.precomposedStringWithCanonicalMapping.unicodeScalars)
        let tags: [(open: [Unicode.Scalar], close: [Unicode.Scalar], make: (String) -> ResponsePart)] = [
            (Array("<img>".unicodeScalars), Array("</img>".unicodeScalars), { .image($0) }),
            (Array("<ref>".unicodeScalars), Array("</ref>".unicodeScalars), { .ref($0) }),
            (Array("<box>".unicodeScalars), Array("</box>".unicodeScalars), { .box($0) }),
            (Array("<quad>".unicodeScalars), Array("</quad>".unicodeScalars), { .quad($0) }),
        ]
        func matches(_ t: [Unicode.Scalar], at i: Int) -> Bool {
            i + t.count <= s.count && s[i ..< i + t.count].elementsEqual(t)
        }
        func str(_ r: Range<Int>) -> String {
            var u = String.UnicodeScalarView()
            u.append(contentsOf: s[r])
            return String(u)
        }
        var parts: [ResponsePart] = []
        var textStart = 0
        var i = 0
        outer: while i < s.count {
            if s[i] == "<" {
                for tag in tags where matches(tag.open, at: i) {
                    let contentStart = i + tag.open.count
                    var j = contentStart
                    while j < s.count && !matches(tag.close, at: j) { j += 1 }
                    guard j < s.count else {
                        throw TokenizerError.unclosedTag(tag: String(String.UnicodeScalarView(tag.open)), position: i)
                    }
                    if textStart < i { parts.append(.text(str(textStart ..< i))) }
                    parts.append(tag.make(str(contentStart ..< j)))
                    i = j + tag.close.count
                    textStart = i
                    continue outer
                }
            }
            i += 1
        }
        if textStart < s.count { parts.append(.text(str(textStart ..< s.count))) }
        return parts
    }

    /// The image boxes in `response` refer to (official `_fetch_latest_picture`): the last `<img>`
    /// path in the response, else in the newest history query that has one (responses in history
    /// are not searched, as in the official code).
    public static func latestPicture(response: String, history: [ChatTurn] = []) throws -> String? {
        for text in [response] + history.reversed().map(\.query) {
            for part in try toListFormat(text).reversed() {
                if case let .image(path) = part { return path }
            }
        }
        return nil
    }

    /// Every `<box>` in a response with the `<ref>` directly before it (stripped), as the official
    /// `_fetch_all_box_with_ref`: the box text, parentheses removed, must be four comma-separated
    /// integers.
    public static func extractBoxes(from response: String) throws -> [GroundedBox] {
        let parts = try toListFormat(response)
        var out: [GroundedBox] = []
        for (k, part) in parts.enumerated() {
            guard case let .box(text) = part else { continue }
            let fields = text.replacingOccurrences(of: "(", with: "").replacingOccurrences(of: ")", with: "")
                .split(separator: ",", omittingEmptySubsequences: false)
            let values = fields.compactMap { Int(pythonStrip(String($0))) }
            guard fields.count == 4, values.count == 4 else { throw TokenizerError.malformedBox(text: text) }
            var ref: String?
            if k > 0, case let .ref(r) = parts[k - 1] { ref = pythonStrip(r) }
            out.append(GroundedBox(ref: ref, box: BoxCorners(values[0], values[1], values[2], values[3])))
        }
        return out
    }
}
