/// Qwen's pre-tokenisation regex, implemented as a hand-written scanner over Unicode scalars.
///
/// The official tokenizer splits text with (tiktoken / fancy-regex, leftmost-first alternation,
/// greedy quantifiers with backtracking, Unicode classes):
///
///     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
///
/// Why no regex engine: Foundation's NSRegularExpression is ICU-specific, slow, and differs in
/// Unicode details between platforms; a scanner is fast, allocation-free and each rule below is
/// derived from the regex semantics and commented. At a position i the alternatives are tried in
/// order and the first that matches wins (it always exists: every scalar is a letter, a number,
/// whitespace or "other"):
///
/// 1. `(?i:'s|'t|'re|'ve|'m|'ll|'d)` - an ASCII apostrophe and one of the suffixes, compared under
///    Unicode simple case folding (so `'S`, `'LL`, and also U+017F LONG S for `s`).
/// 2. `[^\r\n\p{L}\p{N}]?\p{L}+` - a letter run; or one scalar that is not CR/LF/letter/number
///    (punctuation, a space, a tab...) followed by a letter run. Greedy, nothing follows: maximal run.
/// 3. `\p{N}` - a single number scalar (so "2024" is four pre-tokens).
/// 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*` - optional U+0020, a run of "other" scalars, then any CR/LF run.
/// 5. `\s*[\r\n]+` - inside a whitespace run, backtracking makes this end just after the LAST CR/LF
///    of the run (the greedy `\s*` gives back scalars until a CR/LF can follow).
/// 6. `\s+(?!\S)` - a whitespace run without CR/LF: all of it if it reaches the end of the segment,
///    else all but its last scalar (which then joins the following word via rule 2 or 4), if at least
///    one scalar remains.
/// 7. `\s+` - what is left: a single whitespace scalar before a non-space.
///
/// `\s` is the Unicode White_Space property, `\p{L}` general category L*, `\p{N}` N*.
/// Text between special tokens is split separately (tiktoken does the same), so look-ahead never
/// sees across a special token.
///
/// Other byte-level BPE families use variants, selected by `Rules` (the regexes as llama.cpp spells
/// them in `llama-vocab.cpp`, and as its hand-written matchers in `unicode.cpp` behave):
/// - `.qwen2`: the regex above, but the contraction letters are compared after lower-casing
///   (`'[sS]|'[tT]|...`), so U+017F LONG S is not `s`.
/// - `.llama3` (llama.cpp's "llama-bpe", "llama3"): as `.qwen2` with `\p{N}{1,3}` instead of `\p{N}`:
///   digits go in runs of at most three.
/// - `.gpt2`: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
///   (contractions lower-case only; CR/LF are ordinary whitespace).
/// - `.gpt2DigitsIsolated` (llama.cpp's "smollm", "starcoder", "refact", ...): first every `\p{N}`
///   scalar becomes a piece of its own, then `.gpt2` splits the text between them.
enum PreTokenizer {
    enum Rules: Sendable {
        case qwenTiktoken, qwen2, llama3, gpt2, gpt2DigitsIsolated
        /// Llama 3's regex as a regex engine runs it (Hugging Face `tokenizer.json`): `.llama3` with
        /// `(?i:)` folding U+017F too.
        case llama3Tiktoken

        /// Contractions compared under Unicode simple case folding (regex engines), not lower-casing.
        var foldsLongS: Bool { self == .qwenTiktoken || self == .llama3Tiktoken }
        var digitsInThrees: Bool { self == .llama3 || self == .llama3Tiktoken }
    }

    /// Character classes of the regex, one byte per scalar.
    static let other: UInt8 = 0  // [^\s\p{L}\p{N}]
    static let letter: UInt8 = 1  // \p{L}
    static let number: UInt8 = 2  // \p{N}
    static let space: UInt8 = 3  // \s but not CR/LF
    static let newline: UInt8 = 4  // \r or \n

    /// Classes of the whole Basic Multilingual Plane, computed once (64 KiB): the Unicode property
    /// lookups are the slowest part of scanning CJK text otherwise.
    static let bmpClass: [UInt8] = (0 ..< 0x10000).map { classify(UInt32($0)) }

    @inline(__always)
    static func classify(_ v: UInt32) -> UInt8 {
        if v == 0x0A || v == 0x0D { return newline }
        guard let s = Unicode.Scalar(v) else { return other }
        let p = s.properties
        if p.isWhitespace { return space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return other
        }
    }

    /// Simple case folding restricted to the letters the contraction rule uses; 0 for anything else.
    @inline(__always)
    static func foldContractionLetter(_ v: UInt32) -> UInt8 {
        switch v {
        case 0x73, 0x53, 0x17F: return 0x73  // s S, LATIN SMALL LETTER LONG S
        case 0x74, 0x54: return 0x74  // t
        case 0x72, 0x52: return 0x72  // r
        case 0x65, 0x45: return 0x65  // e
        case 0x76, 0x56: return 0x76  // v
        case 0x6D, 0x4D: return 0x6D  // m
        case 0x6C, 0x4C: return 0x6C  // l
        case 0x64, 0x44: return 0x64  // d
        default: return 0
        }
    }

    /// Per-call buffers, reused to avoid allocation.
    struct Scratch {
        var scalars: [UInt32] = []
        var classes: [UInt8] = []
        var offsets: [Int] = []  // byte offset of each scalar, plus the end
    }

    /// Splits the valid UTF-8 `p[0..<n]` and calls `body(byteStart, byteEnd)` for each pre-token.
    static func split(_ p: UnsafePointer<UInt8>, _ n: Int, rules: Rules = .qwenTiktoken, scratch: inout Scratch,
                      _ body: (Int, Int) -> Void)
    {
        decode(p, n, &scratch)
        let count = scratch.scalars.count
        scratch.scalars.withUnsafeBufferPointer { sc in
            scratch.classes.withUnsafeBufferPointer { cl in
                scratch.offsets.withUnsafeBufferPointer { of in
                    switch rules {
                    case .qwenTiktoken, .qwen2, .llama3, .llama3Tiktoken:
                        var i = 0
                        while i < count {
                            let j = matchEnd(at: i, count, sc, cl, rules: rules)
                            body(of[i], of[j])
                            i = j
                        }
                    case .gpt2:
                        var i = 0
                        while i < count {
                            let j = matchEndGPT2(at: i, count, sc, cl)
                            body(of[i], of[j])
                            i = j
                        }
                    case .gpt2DigitsIsolated:
                        // Segments between number scalars, each split by the GPT-2 rules with its own
                        // end (look-ahead stops there, as it does in llama.cpp's second pass).
                        var segStart = 0
                        var k = 0
                        while k <= count {
                            if k == count || cl[k] == number {
                                var i = segStart
                                while i < k {
                                    let j = matchEndGPT2(at: i, k, sc, cl)
                                    body(of[i], of[j])
                                    i = j
                                }
                                if k < count { body(of[k], of[k + 1]) }
                                segStart = k + 1
                            }
                            k += 1
                        }
                    }
                }
            }
        }
    }

    /// Splits a string into its pre-tokens (for tests and tools; encoding uses `split`).
    static func pieces(_ text: String, rules: Rules = .qwenTiktoken) -> [String] {
        var bytes = Array(text.utf8)
        var scratch = Scratch()
        var out: [String] = []
        let n = bytes.count
        bytes.withUnsafeMutableBufferPointer { b in
            guard let base = b.baseAddress else { return }
            split(base, n, rules: rules, scratch: &scratch) { s, e in
                out.append(String(decoding: UnsafeBufferPointer(rebasing: b[s ..< e]), as: UTF8.self))
            }
        }
        return out
    }

    /// End index (exclusive) of the pre-token starting at scalar i.
    @inline(__always)
    static func matchEnd(at i: Int, _ n: Int, _ s: UnsafeBufferPointer<UInt32>,
                         _ c: UnsafeBufferPointer<UInt8>, rules: Rules = .qwenTiktoken) -> Int
    {
        // 1. Contractions (tiktoken's (?i:) also folds U+017F; llama.cpp lower-cases: ASCII only).
        @inline(__always) func fold(_ v: UInt32) -> UInt8 {
            rules.foldsLongS ? foldContractionLetter(v) : (v == 0x17F ? 0 : foldContractionLetter(v))
        }
        if s[i] == 0x27 && i + 1 < n {
            let a = fold(s[i + 1])
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // 's 't 'm 'd
            if i + 2 < n {
                let b = fold(s[i + 2])
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) {
                    return i + 3  // 're 've 'll
                }
            }
        }
        let ci = c[i]
        // 2. Optional non-(CR/LF/letter/number) then a letter run.
        if ci == letter {
            var j = i + 1
            while j < n && c[j] == letter { j += 1 }
            return j
        }
        if (ci == other || ci == space) && i + 1 < n && c[i + 1] == letter {
            var j = i + 2
            while j < n && c[j] == letter { j += 1 }
            return j
        }
        // 3. One number (llama3: a run of up to three).
        if ci == number {
            guard rules.digitsInThrees else { return i + 1 }
            var j = i + 1
            while j < n && j < i + 3 && c[j] == number { j += 1 }
            return j
        }
        // 4. Optional ' ', "other" run, CR/LF run.
        var k = -1
        if ci == other {
            k = i
        } else if s[i] == 0x20 && i + 1 < n && c[i + 1] == other {
            k = i + 1
        }
        if k >= 0 {
            var j = k + 1
            while j < n && c[j] == other { j += 1 }
            while j < n && c[j] == newline { j += 1 }
            return j
        }
        // 5-7. Whitespace (ci is space or newline).
        var j = i
        var lastNewline = -1
        while j < n && (c[j] == space || c[j] == newline) {
            if c[j] == newline { lastNewline = j }
            j += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 }  // 5
        if j == n { return j }  // 6, at the end
        if j - 1 > i { return j - 1 }  // 6, leave the last space for the next word
        return j  // 7
    }

    /// End of the pre-token at scalar i under the GPT-2 regex
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, alternatives in
    /// order: a lower-case contraction; an optional U+0020 then a run of letters, or of numbers, or of
    /// "other" scalars; otherwise whitespace (CR/LF included): a run followed by a non-space gives up
    /// its last scalar if it has more than one, else the whole run; at the end, the whole run.
    @inline(__always)
    static func matchEndGPT2(at i: Int, _ n: Int, _ s: UnsafeBufferPointer<UInt32>,
                             _ c: UnsafeBufferPointer<UInt8>) -> Int
    {
        if s[i] == 0x27 && i + 1 < n {
            let a = s[i + 1]
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // 's 't 'm 'd
            if i + 2 < n {
                let b = s[i + 2]
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) {
                    return i + 3  // 're 've 'll
                }
            }
        }
        let j0 = s[i] == 0x20 ? i + 1 : i
        if j0 < n {
            let k = c[j0]
            if k == letter || k == number || k == other {
                var j = j0 + 1
                while j < n && c[j] == k { j += 1 }
                return j
            }
        }
        var j = i
        while j < n && (c[j] == space || c[j] == newline) { j += 1 }
        let run = j - i
        if run > 1 && j < n { return j - 1 }
        if run > 0 { return j }
        return i + 1
    }

    /// Decodes valid UTF-8 (Swift strings always are) into scalars, classes and byte offsets.
    static func decode(_ p: UnsafePointer<UInt8>, _ n: Int, _ scratch: inout Scratch) {
        scratch.scalars.removeAll(keepingCapacity: true)
        scratch.classes.removeAll(keepingCapacity: true)
        scratch.offsets.removeAll(keepingCapacity: true)
        scratch.scalars.reserveCapacity(n)
        scratch.classes.reserveCapacity(n)
        scratch.offsets.reserveCapacity(n + 1)
        bmpClass.withUnsafeBufferPointer { bmp in
            var i = 0
            while i < n {
                let b0 = UInt32(p[i])
                var v: UInt32
                var len: Int
                if b0 < 0x80 {
                    v = b0; len = 1
                } else if b0 < 0xE0 {
                    v = b0 & 0x1F; len = 2
                } else if b0 < 0xF0 {
                    v = b0 & 0x0F; len = 3
                } else {
                    v = b0 & 0x07; len = 4
                }
                if i + len > n { len = n - i }  // cannot happen for valid UTF-8; never read past n
                var k = 1
                while k < len {
                    v = (v << 6) | (UInt32(p[i + k]) & 0x3F)
                    k += 1
                }
                scratch.scalars.append(v)
                scratch.classes.append(v < 0x10000 ? bmp[Int(v)] : classify(v))
                scratch.offsets.append(i)
                i += len
            }
        }
        scratch.offsets.append(n)
    }
}
