import Foundation

/// The Qwen-VL-Chat tokenizer (official `QWenTokenizer`: tiktoken BPE over `qwen.tiktoken`, 217
/// special tokens, `<img>` path spans), reimplemented id for id.
///
/// Encoding = NFC normalisation -> split at allowed special tokens -> pre-tokenise each text segment
/// with the Qwen regex (`PreTokenizer`) -> byte-level BPE by rank (`BPERanks`) -> replace every
/// `<img>PATH</img>` with the path's UTF-8 bytes as ids 0...255, right-padded with `<imgpad>` to 256.
/// Decoding inverts it (invalid UTF-8 becomes U+FFFD, as Python's `errors="replace"`).
///
/// Immutable after loading; `encode`/`decode` may be called from several threads at once.
public final class QwenTokenizer: @unchecked Sendable {
    /// Number of BPE ranks in `qwen.tiktoken`; special ids start right after.
    public static let rankCount = 151643

    /// Largest vocabulary file read (the official one is 2,561,218 bytes).
    public static let maxVocabularyFileBytes: Int64 = 64 << 20

    /// The mergeable ranks (ids 0 ..< 151643).
    public let ranks: BPERanks

    /// Special surface form bytes -> id, and the distinct lengths to try at a '<'.
    private let specialByBytes: [[UInt8]: Int]
    private let specialLengths: [Int]

    /// Loads `qwen.tiktoken`. Every malformed line is refused with its line number.
    public convenience init(vocabularyFile path: String) throws {
        // The real file is 2.5 MB; refuse anything absurd before reading it into memory.
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
           size.int64Value > Self.maxVocabularyFileBytes
        {
            throw TokenizerError.wrongVocabulary(
                file: path, problem: "\(size.int64Value) bytes; a .tiktoken vocabulary is a few MB (limit \(Self.maxVocabularyFileBytes))")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "unreadable" : "no such file"
            throw TokenizerError.cannotRead(file: path, reason: reason)
        }
        try self.init(ranks: BPERanks(tiktokenData: [UInt8](data), file: path), file: path)
    }

    /// Wraps already-loaded ranks; checks they are the Qwen vocabulary's shape (151,643 ranks, every
    /// single byte a token, so that any text can be encoded).
    public init(ranks: BPERanks, file: String = "<memory>") throws {
        guard ranks.count == Self.rankCount else {
            throw TokenizerError.wrongVocabulary(
                file: file, problem: "\(ranks.count) ranks, expected \(Self.rankCount)")
        }
        for b in 0 ... 255 {
            var byte = UInt8(b)
            let found = withUnsafePointer(to: &byte) { ranks.lookup($0, 1) }
            guard found >= 0 else {
                throw TokenizerError.wrongVocabulary(file: file, problem: "byte 0x\(String(b, radix: 16)) is not a token")
            }
        }
        self.ranks = ranks
        var map: [[UInt8]: Int] = [:]
        for (i, name) in SpecialTokens.names.enumerated() { map[Array(name.utf8)] = SpecialTokens.firstID + i }
        specialByBytes = map
        specialLengths = Array(Set(map.keys.map(\.count))).sorted()
    }

    // MARK: - Encoding

    /// Token ids of `text`, as the official `tokenizer.encode(text, allowed_special=...)`.
    /// Throws only for `<img>` spans: unclosed, too long (> 256 bytes), or holding a special token.
    public func encode(_ text: String, allowedSpecial: AllowedSpecial = .all) throws -> [Int] {
        var bytes = Self.nfcBytes(text)
        let n = bytes.count
        var out: [Int] = []
        out.reserveCapacity(n / 3 + 8)
        var state = EncodeScratch()
        try bytes.withUnsafeMutableBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            var segStart = 0
            var imageContentStart = -1  // byte offset after an open <img>, or -1
            var imageTagOffset = 0
            var i = 0
            while i < n {
                guard p[i] == 0x3C, allowedSpecial != .noSpecial,
                      let (id, len) = specialAt(p, i, n), allowedSpecial.allows(id)
                else {
                    i += 1
                    continue
                }
                if imageContentStart >= 0 {
                    guard id == SpecialTokens.imageEnd else {
                        throw TokenizerError.specialTokenInImageSpan(token: SpecialTokens.name(of: id) ?? "\(id)")
                    }
                    try appendImageSpan(UnsafeBufferPointer(start: p + imageContentStart, count: i - imageContentStart),
                                        to: &out)
                    imageContentStart = -1
                } else {
                    encodeOrdinary(p + segStart, i - segStart, into: &out, &state)
                    if id == SpecialTokens.imageStart {
                        imageContentStart = i + len
                        imageTagOffset = i
                    } else {
                        out.append(id)
                    }
                }
                i += len
                segStart = i
            }
            if imageContentStart >= 0 { throw TokenizerError.unclosedImageSpan(position: imageTagOffset) }
            encodeOrdinary(p + segStart, n - segStart, into: &out, &state)
        }
        return out
    }

    /// Ids of text containing no special tokens at all (tiktoken `encode_ordinary`); never throws.
    public func encodeOrdinary(_ text: String) -> [Int] {
        var bytes = Self.nfcBytes(text)
        var out: [Int] = []
        var state = EncodeScratch()
        let n = bytes.count
        bytes.withUnsafeMutableBufferPointer { buf in
            if let p = buf.baseAddress { encodeOrdinary(p, n, into: &out, &state) }
        }
        return out
    }

    /// UTF-8 of the NFC form of `text`.
    ///
    /// Foundation's normalisation of a whole large text costs more than the BPE, so only the parts
    /// that can change go through it. A scalar is "stable" if NFC provably leaves it alone whatever
    /// surrounds it (NFC_QC=Yes, canonical combining class 0, never the second of a composition):
    /// below U+0300, kana, CJK ideographs, Hangul syllables, fullwidth ASCII. NFC never acts across
    /// the start of a stable scalar, so NFC(a + b) = NFC(a) + NFC(b) when b starts with one. Each
    /// maximal run of unstable scalars is normalised together with the stable scalar before it
    /// (which may compose with it, as e + U+0301); the rest is copied.
    static func nfcBytes(_ text: String) -> [UInt8] {
        let src = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(src.count)
        var copied = 0  // src[..<copied] is handled
        var lastStable = -1  // byte offset of the latest stable scalar not yet copied past, or -1
        var regionStart = -1  // start of the pending unstable region, or -1
        var i = 0
        let n = src.count
        func flush(upTo end: Int) {
            out += Array(String(decoding: src[regionStart ..< end], as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
            copied = end
            regionStart = -1
        }
        while i < n {
            let b0 = src[i]
            let len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
            var v = UInt32(b0) & (len == 1 ? 0x7F : len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07)
            var k = 1
            while k < len && i + k < n {
                v = (v << 6) | (UInt32(src[i + k]) & 0x3F)
                k += 1
            }
            if isNFCStable(v) {
                if regionStart >= 0 { flush(upTo: i) }
                lastStable = i
            } else if regionStart < 0 {
                let start = max(lastStable, copied)
                out += src[copied ..< start]
                copied = start
                regionStart = start
            }
            i += len
        }
        if regionStart >= 0 { flush(upTo: n) }
        out += src[copied ..< n]
        return out
    }

    @inline(__always)
    static func isNFCStable(_ v: UInt32) -> Bool {
        if v < 0x300 { return true }
        switch v {
        case 0x3000 ... 0x3029, 0x3030 ... 0x303F, 0x3041 ... 0x3096, 0x30A1 ... 0x30FA, 0x4E00 ... 0x9FFF,
             0xAC00 ... 0xD7A3, 0xFF01 ... 0xFF5E:
            return true
        default:
            return false
        }
    }

    /// Buffers reused across the segments of one `encode` call, and a cache of the BPE result of
    /// every pre-token that is not itself a token (those need the merge loop; in real text the same
    /// ones recur). Per call, so no lock is needed and memory is bounded by the input.
    struct EncodeScratch {
        var pre = PreTokenizer.Scratch()
        var bpe: [Int] = []
        var cache: [[UInt8]: [Int]] = [:]
        var cacheBytes = 0
    }

    /// Pieces longer than this are not cached (rare, and the key would be large).
    static let maxCachedPieceLength = 64
    /// Stop adding to the cache beyond this many key bytes (hostile input cannot grow it unboundedly).
    static let maxCacheBytes = 1 << 22

    private func encodeOrdinary(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int],
                                _ state: inout EncodeScratch)
    {
        guard n > 0 else { return }
        var bpe = state.bpe
        var cache = state.cache
        var cacheBytes = state.cacheBytes
        let ranks = self.ranks
        PreTokenizer.split(p, n, scratch: &state.pre) { s, e in
            let len = e - s
            let whole = ranks.lookup(p + s, len)
            if whole >= 0 {
                out.append(whole)
                return
            }
            guard len <= Self.maxCachedPieceLength else {
                ranks.encodePiece(p + s, len, into: &out, scratch: &bpe)
                return
            }
            let key = Array(UnsafeBufferPointer(start: p + s, count: len))
            if let ids = cache[key] {
                out += ids
                return
            }
            let before = out.count
            ranks.encodePiece(p + s, len, into: &out, scratch: &bpe)
            if cacheBytes < Self.maxCacheBytes {
                cache[key] = Array(out[before...])
                cacheBytes += len
            }
        }
        state.bpe = bpe
        state.cache = cache
        state.cacheBytes = cacheBytes
    }

    /// The special token whose surface form starts at p[i] (a '<'), if any. No surface form is a
    /// prefix of another, so at most one matches.
    private func specialAt(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> (Int, Int)? {
        for len in specialLengths {
            guard i + len <= n else { break }
            guard p[i + len - 1] == 0x3E else { continue }  // '>'
            if let id = specialByBytes[Array(UnsafeBufferPointer(start: p + i, count: len))] { return (id, len) }
        }
        return nil
    }

    /// `<img>` + path bytes as ids + `<imgpad>` padding + `</img>` (258 ids).
    private func appendImageSpan(_ path: UnsafeBufferPointer<UInt8>, to out: inout [Int]) throws {
        guard path.count <= SpecialTokens.imageSpan else {
            throw TokenizerError.imagePathTooLong(bytes: path.count, limit: SpecialTokens.imageSpan)
        }
        out.append(SpecialTokens.imageStart)
        for b in path { out.append(Int(b)) }
        for _ in path.count ..< SpecialTokens.imageSpan { out.append(SpecialTokens.imagePad) }
        out.append(SpecialTokens.imageEnd)
    }

    // MARK: - Decoding

    /// Text of `ids`, as the official `tokenizer.decode(ids, skip_special_tokens=...)`.
    /// - `skipSpecialTokens`: drop ids >= 151643 (after image spans became `<img>path</img>`, so
    ///   the path stays and its tags go).
    /// - `keepGroundingTags`: with `skipSpecialTokens`, keep ref/box/quad tags (`keep_image_special`).
    /// Invalid UTF-8 (a token sequence cut inside a character) becomes U+FFFD.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false, keepGroundingTags: Bool = false) throws -> String {
        String(decoding: try decodeBytes(ids, skipSpecialTokens: skipSpecialTokens,
                                         keepGroundingTags: keepGroundingTags),
               as: UTF8.self)
    }

    /// The bytes behind `ids` (see `decode`).
    ///
    /// Image spans: the ids up to the first `<imgpad>` are the path bytes; they must be < 256 and
    /// valid UTF-8 (the official decoder raises otherwise, and so do we). One deliberate leniency: a
    /// span with exactly 256 path bytes has no `<imgpad>`; the official `list.index` raises on it
    /// although its own encoder produced it - here it decodes to its path.
    public func decodeBytes(_ ids: [Int], skipSpecialTokens: Bool = false, keepGroundingTags: Bool = false) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for (i, id) in ids.enumerated() where id < 0 || id >= SpecialTokens.vocabularySize {
            throw TokenizerError.unknownTokenID(id: id, index: i)
        }
        var i = 0
        while i < ids.count {
            let id = ids[i]
            if id == SpecialTokens.imageStart {
                guard let end = ids[(i + 1)...].firstIndex(of: SpecialTokens.imageEnd) else {
                    throw TokenizerError.unclosedImageSpan(position: i)
                }
                var path: [UInt8] = []
                for k in (i + 1) ..< end {
                    let v = ids[k]
                    if v == SpecialTokens.imagePad { break }
                    guard v < 256 else {
                        throw TokenizerError.malformedImageSpan(index: i, problem: "id \(v) at index \(k) is not a byte")
                    }
                    path.append(UInt8(v))
                }
                guard String(validating: path, as: UTF8.self) != nil else {
                    throw TokenizerError.malformedImageSpan(index: i, problem: "the path is not valid UTF-8")
                }
                if !skipSpecialTokens { out += Array("<img>".utf8) }
                out += path
                if !skipSpecialTokens { out += Array("</img>".utf8) }
                i = end + 1
                continue
            }
            if id >= SpecialTokens.firstID {
                if !skipSpecialTokens || (keepGroundingTags && SpecialTokens.groundingTagIDs.contains(id)) {
                    out += Array(SpecialTokens.name(of: id)!.utf8)
                }
            } else {
                out.append(contentsOf: ranks.tokenBytes(id))
            }
            i += 1
        }
        return out
    }

    /// The surface bytes of one id (rank bytes, or the special token's name), as the official
    /// `tokenize()` lists them. Inside an image span the ids are byte values, but `tokenize()` still
    /// shows the rank-`b` token for them; so does this.
    public func tokenBytes(_ id: Int) throws -> [UInt8] {
        guard id >= 0 && id < SpecialTokens.vocabularySize else { throw TokenizerError.unknownTokenID(id: id, index: 0) }
        if let name = SpecialTokens.name(of: id) { return Array(name.utf8) }
        return Array(ranks.tokenBytes(id))
    }
}
