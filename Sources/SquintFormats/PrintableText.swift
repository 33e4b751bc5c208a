/// Text that came from a file (a tensor or zip entry name, a metadata value, an image path, a line of
/// a vocabulary) made safe to print on one line: control characters would otherwise break the
/// one-line error messages and the inspect tables (issue 17: a CR or LF inside a zip entry name
/// split an error in two, and could overwrite what the terminal showed before it).
///
/// Escaped: C0 controls (U+0000...U+001F) and DEL as `\n`, `\r`, `\t` or `\xHH`; C1 controls
/// (U+0080...U+009F), the line and paragraph separators and the bidirectional overrides/isolates
/// (which reorder what a terminal shows) as `\u{XXXX}`. Everything else, backslashes included, is
/// unchanged, so ordinary names print exactly as they are. Invalid UTF-8 never reaches here as
/// bytes: every reader decodes names with replacement (U+FFFD) or refuses them.
/// JSON output needs no call: JSONEncoder escapes U+0000...U+001F itself (tested).
public func printable(_ s: String) -> String {
    func needsEscape(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        return v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
            || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
    }
    guard s.unicodeScalars.contains(where: needsEscape) else { return s }
    var out = ""
    out.reserveCapacity(s.utf8.count + 8)
    for u in s.unicodeScalars {
        guard needsEscape(u) else { out.unicodeScalars.append(u); continue }
        switch u.value {
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x09: out += "\\t"
        case let v where v < 0x80:
            let h = String(v, radix: 16)
            out += "\\x" + (h.count < 2 ? "0" + h : h)
        default:
            let h = String(u.value, radix: 16)
            out += "\\u{" + String(repeating: "0", count: max(0, 4 - h.count)) + h + "}"
        }
    }
    return out
}
