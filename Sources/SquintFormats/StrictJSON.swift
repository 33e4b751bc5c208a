import CJSONC

/// A JSON value taken out of json-c into Swift, so that format readers never hold C pointers and
/// every conversion rule (what counts as an integer, key order, duplicate keys) lives in one place.
///
/// Why not `JSONSerialization`/`JSONDecoder`: they silently accept duplicate keys (one wins), turn
/// `1.0` into an integer, and have no depth limit on hostile input. Headers of checkpoint files are
/// attacker-controlled bytes, so Squint parses them strictly (Formats/SAFETENSORS.md §3).
public indirect enum JSONValue: Equatable, Sendable {
    /// Members in the order they appear in the text (json-c keeps insertion order). Keys are unique
    /// and free of U+0000: the parser refuses anything else.
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// A number written without fraction or exponent that fits `Int64`.
    case integer(Int64)
    /// A number written without fraction or exponent that does NOT fit `Int64` (json-c clamps such
    /// values; keeping them apart means a reader can refuse instead of using a clamped number).
    case integerOutOfRange(text: String)
    /// A number written with a fraction or exponent; the original text is kept for messages.
    case double(Double, text: String)
    case bool(Bool)
    case null

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.integerOutOfRange(x), .integerOutOfRange(y)): return x == y
        case let (.double(x, _), .double(y, _)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// A short name of the value's kind, for error messages ("expected an integer, found a string").
    public var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .integer: return "an integer"
        case .integerOutOfRange(let t): return "the integer \(t) (out of range)"
        case .double(_, let t): return "the non-integer number \(t)"
        case .bool(let b): return "\(b)"
        case .null: return "null"
        }
    }

    /// Value of `key` in an object; nil for a missing key or a non-object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }
}

/// Strict JSON parsing on top of json-c (`json_tokener` with a depth limit, RFC-strict mode and
/// UTF-8 validation), plus the checks json-c does not make: duplicate keys and U+0000 in keys.
public enum StrictJSON {
    /// Nesting limit. A safetensors header needs 3 levels and an index 2; 16 leaves room while
    /// keeping a hostile `[[[[...` from costing anything.
    public static let defaultMaxDepth: Int32 = 16

    /// Parses `bytes` as one JSON object followed only by JSON whitespace (safetensors pads its header
    /// with spaces). Throws `.invalid(path:, what:)` naming `what` (e.g. "header") on any problem.
    public static func parseObject(_ bytes: UnsafeRawBufferPointer, path: String, what: String,
                                   maxDepth: Int32 = defaultMaxDepth) throws -> JSONValue {
        func fail(_ why: String) -> FormatError { .invalid(path: path, what: "\(what) is not valid JSON: \(why)") }
        guard bytes.count <= Int(Int32.max) else { throw fail("longer than 2 GiB") }
        guard let first = bytes.first else { throw fail("it is empty") }
        guard first == UInt8(ascii: "{") else {
            throw FormatError.invalid(path: path, what: "\(what) must be a JSON object starting with '{' "
                + "(found byte 0x\(String(first, radix: 16)))")
        }
        guard let tok = json_tokener_new_ex(maxDepth) else { throw fail("out of memory") }
        defer { json_tokener_free(tok) }
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS
            | JSON_TOKENER_VALIDATE_UTF8)
        let base = bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let obj = json_tokener_parse_ex(tok, base, Int32(bytes.count))
        let err = json_tokener_get_error(tok)
        guard let obj, err == json_tokener_success else {
            if let obj { json_object_put(obj) }
            let end = json_tokener_get_parse_end(tok)
            if err == json_tokener_continue { throw fail("the text ends inside a value") }
            if err == json_tokener_error_depth {
                throw fail("nested deeper than \(maxDepth) levels")
            }
            throw fail("\(String(cString: json_tokener_error_desc(err))) near byte \(end)")
        }
        defer { json_object_put(obj) }
        let end = Int(json_tokener_get_parse_end(tok))
        for i in end..<bytes.count {
            let c = bytes[i]
            guard c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D else {
                throw fail("unexpected byte 0x\(String(c, radix: 16)) at \(i) after the JSON value "
                    + "(only whitespace padding may follow it)")
            }
        }
        guard json_object_get_type(obj) == json_type_object else {
            throw FormatError.invalid(path: path, what: "\(what) must be a JSON object")
        }
        // json-c keeps the last of duplicated keys silently and lets comments and NaN through even in
        // strict mode: scan the text for those first.
        try checkStrict(UnsafeRawBufferPointer(rebasing: bytes[..<end]), path: path, what: what)
        return convert(obj)
    }

    /// Convenience for whole files that are JSON (index files).
    public static func parseObject(file: MappedFile, what: String) throws -> JSONValue {
        try parseObject(file.bytes, path: file.path, what: what)
    }

    private static func convert(_ o: OpaquePointer?) -> JSONValue {
        guard let o else { return .null }
        switch json_object_get_type(o) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(o) != 0)
        case json_type_double:
            let text = String(cString: json_object_get_string(o))
            return .double(json_object_get_double(o), text: text)
        case json_type_int:
            // json-c stores values above Int64.max as uint64 and clamps anything beyond
            // [Int64.min, UInt64.max]; get_int64 then returns Int64.max. Separate the cases.
            let v = json_object_get_int64(o)
            if v == Int64.max && json_object_get_uint64(o) > UInt64(Int64.max) {
                return .integerOutOfRange(text: String(json_object_get_uint64(o)))
            }
            // Anything below Int64.min is clamped to it, so Int64.min itself cannot be trusted either
            // (no format Squint reads needs it: offsets and dimensions are non-negative).
            if v == Int64.min { return .integerOutOfRange(text: "<= \(Int64.min)") }
            return .integer(v)
        case json_type_string:
            let n = Int(json_object_get_string_len(o))
            let p = json_object_get_string(o)!
            return .string(p.withMemoryRebound(to: UInt8.self, capacity: n) {
                String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
            })
        case json_type_array:
            let n = json_object_array_length(o)
            var items: [JSONValue] = []
            items.reserveCapacity(n)
            for i in 0..<n { items.append(convert(json_object_array_get_idx(o, i))) }
            return .array(items)
        case json_type_object:
            var members: [(key: String, value: JSONValue)] = []
            members.reserveCapacity(Int(json_object_object_length(o)))
            var it = json_object_iter_begin(o)
            var end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                let key = String(cString: json_object_iter_peek_name(&it))
                members.append((key, convert(json_object_iter_peek_value(&it))))
                json_object_iter_next(&it)
            }
            return .object(members)
        default:
            return .null
        }
    }

    /// Walks JSON text that json-c has already accepted and refuses what json-c lets through even in
    /// strict mode: comments, `NaN`/`Infinity`, numbers outside RFC 8259's grammar, raw control bytes
    /// in strings; then a key repeated within one object, or a key holding U+0000 (json-c's keys are C
    /// strings, so such keys would be cut and merged). The text is known to be well nested, so the walk
    /// only tracks strings, nesting, key positions and the bare tokens between them.
    private static func checkStrict(_ b: UnsafeRawBufferPointer, path: String, what: String) throws {
        func fail(_ why: String) -> FormatError { .invalid(path: path, what: "\(what) is not valid JSON: \(why)") }
        var stack: [Set<String>?] = []   // nil: array level
        var expectKey = false
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            switch c {
            case UInt8(ascii: "{"): stack.append([]); expectKey = true
            case UInt8(ascii: "["): stack.append(nil); expectKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"): if !stack.isEmpty { stack.removeLast() }; expectKey = false
            case UInt8(ascii: ","): expectKey = stack.last.map { $0 != nil } ?? false
            case UInt8(ascii: ":"): expectKey = false
            case 0x20, 0x09, 0x0A, 0x0D: break
            case UInt8(ascii: "\""):
                var j = i + 1
                var escaped = false
                while j < n && b[j] != UInt8(ascii: "\"") {
                    if b[j] < 0x20 { throw fail("control byte 0x\(String(b[j], radix: 16)) inside a string at \(j)") }
                    if b[j] == UInt8(ascii: "\\") { escaped = true; j += 1 }
                    j += 1
                }
                if expectKey, stack.last != nil {
                    let raw = UnsafeRawBufferPointer(rebasing: b[(i + 1)..<min(j, n)])
                    let key = escaped ? try decodeEscaped(b, from: i, to: j, path: path, what: what)
                        : String(decoding: raw, as: UTF8.self)
                    if key.utf8.contains(0) {
                        throw FormatError.invalid(path: path, what: "\(what) has a key containing U+0000")
                    }
                    if stack[stack.count - 1]!.insert(key).inserted == false {
                        throw FormatError.invalid(path: path, what: "\(what) repeats the key \"\(key)\" in one object "
                            + "(duplicate keys are ambiguous: which value wins differs between parsers)")
                    }
                }
                expectKey = false
                i = j
            default:
                // A bare token: a literal or a number, up to the next structural byte or whitespace.
                var j = i
                while j < n, !" \t\n\r,:]}[{\"".utf8.contains(b[j]) { j += 1 }
                let token = Array(b[i..<j])
                if !isLiteralOrNumber(token) {
                    throw fail("unexpected token '\(String(decoding: token.prefix(32), as: UTF8.self))' at \(i)")
                }
                i = j - 1
            }
            i += 1
        }
    }

    /// `true`, `false`, `null`, or a number in RFC 8259 grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    private static func isLiteralOrNumber(_ t: [UInt8]) -> Bool {
        if t == Array("true".utf8) || t == Array("false".utf8) || t == Array("null".utf8) { return true }
        var i = 0
        func digits() -> Int { let s = i; while i < t.count, (48...57).contains(t[i]) { i += 1 }; return i - s }
        if i < t.count, t[i] == UInt8(ascii: "-") { i += 1 }
        guard i < t.count else { return false }
        if t[i] == UInt8(ascii: "0") { i += 1 } else if digits() == 0 { return false }
        if i < t.count, t[i] == UInt8(ascii: ".") { i += 1; if digits() == 0 { return false } }
        if i < t.count, t[i] == UInt8(ascii: "e") || t[i] == UInt8(ascii: "E") {
            i += 1
            if i < t.count, t[i] == UInt8(ascii: "+") || t[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { return false }
        }
        return i == t.count
    }

    /// Unescapes one string token (from the opening quote at `from` to the closing quote at `to`)
    /// with json-c itself, so keys compare exactly as json-c decodes them.
    private static func decodeEscaped(_ b: UnsafeRawBufferPointer, from: Int, to: Int, path: String,
                                      what: String) throws -> String {
        let token = Array(b[from...min(to, b.count - 1)]) + [0]
        guard let s = token.withUnsafeBufferPointer({ p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: token.count) { json_tokener_parse($0) }
        }) else {
            throw FormatError.invalid(path: path, what: "\(what) has a key that cannot be decoded")
        }
        defer { json_object_put(s) }
        let n = Int(json_object_get_string_len(s))
        let p = json_object_get_string(s)!
        return p.withMemoryRebound(to: UInt8.self, capacity: n) {
            String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
        }
    }
}
