/// GPT-2's byte-level alphabet: the reversible map between the 256 byte values and 256 printable
/// Unicode scalars that byte-level BPE vocabularies (GGUF `tokenizer.ggml.tokens`, Hugging Face
/// `tokenizer.json`) use to store token byte strings as text.
///
/// The rule (GPT-2's `bytes_to_unicode`, also llama.cpp's `unicode_byte_to_utf8`): the bytes
/// `!`...`~` (0x21-0x7E), `¡`...`¬` (0xA1-0xAC) and `®`...`ÿ` (0xAE-0xFF) stand for themselves; the
/// other 68 bytes, in increasing order, become U+0100, U+0101, ... (so space 0x20 is `Ġ` U+0120 and
/// LF 0x0A is `Ċ` U+010A). `tiktoken` ranks (qwen.tiktoken) hold the raw bytes instead; the two
/// spellings describe the same tokens.
public enum ByteLevel {
    /// Scalar value of each byte. [256]
    public static let scalarOfByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0 ..< 256 {
            if (0x21 ... 0x7E).contains(b) || (0xA1 ... 0xAC).contains(b) || (0xAE ... 0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Byte of each scalar below U+0144, or -1 for scalars outside the alphabet. [0x144]
    static let byteOfScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in scalarOfByte.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// The byte a scalar stands for, or nil if it is not in the alphabet.
    @inline(__always)
    public static func byte(of scalar: Unicode.Scalar) -> UInt8? {
        let v = Int(scalar.value)
        guard v < byteOfScalar.count else { return nil }
        let b = byteOfScalar[v]
        return b >= 0 ? UInt8(b) : nil
    }

    /// The bytes a byte-level token text stands for, or nil if a scalar is outside the alphabet
    /// (such a text, e.g. a special token with a space in it, can never come out of byte-level BPE).
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for s in text.unicodeScalars {
            guard let b = byte(of: s) else { return nil }
            out.append(b)
        }
        return out
    }

    /// The byte-level text of a byte string.
    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(scalarOfByte[Int(b)])!) }
        return String(s)
    }
}
