import Foundation

/// The mergeable ranks of a `.tiktoken` file: byte string <-> rank, with tiktoken's merge algorithm.
///
/// Why a custom table instead of `[[UInt8]: Int]`: looking a byte range up in a Swift dictionary
/// needs an `Array` key, i.e. one heap allocation per lookup, and BPE does a lookup per adjacent
/// pair per merge. Here every token's bytes live in one buffer and the hash table (open addressing,
/// linear probing) is probed with a pointer and a length, so encoding allocates nothing per lookup.
/// Immutable after `init`, hence safe to share between threads.
public final class BPERanks: @unchecked Sendable {
    /// Number of ranks (151,643 for Qwen).
    public let count: Int
    /// All token byte strings, concatenated in rank order.
    private let bytes: UnsafeMutablePointer<UInt8>
    /// `offsets[r] ..< offsets[r + 1]` are the bytes of rank r. [count + 1]
    private let offsets: UnsafeMutablePointer<Int32>
    /// Open-addressing table of ranks (-1 = empty). [slotMask + 1]
    private let slots: UnsafeMutablePointer<Int32>
    private let slotMask: Int

    /// Parses the `.tiktoken` text: one line per rank, `base64(token) SPACE decimal rank`, ranks
    /// 0, 1, 2, ... in file order. Stricter than tiktoken's loader (which splits on any whitespace and
    /// accepts any rank order) so that a damaged file is refused with its line number instead of
    /// silently tokenizing differently: exactly one space, canonical standard base64 of a non-empty
    /// token, a decimal rank equal to the line index, no duplicate tokens, LF line ends (a final LF
    /// is optional, no blank lines).
    public convenience init(tiktokenData data: [UInt8], file: String) throws {
        // Pass 1: split lines and decode, collecting bytes and offsets.
        var tokenBytes: [UInt8] = []
        tokenBytes.reserveCapacity(data.count)
        var offs: [Int32] = [0]
        var lineNumber = 0
        var pos = 0
        let n = data.count
        try data.withUnsafeBufferPointer { buf in
            while pos < n {
                lineNumber += 1
                var end = pos
                while end < n && buf[end] != 0x0A { end += 1 }
                let line = UnsafeBufferPointer(rebasing: buf[pos ..< end])
                pos = end + 1  // past the LF (or past the end on the last line)
                if line.isEmpty {
                    throw TokenizerError.malformedVocabulary(file: file, line: lineNumber, problem: "empty line")
                }
                var space = -1
                for (i, b) in line.enumerated() where b == 0x20 {
                    if space >= 0 {
                        throw TokenizerError.malformedVocabulary(
                            file: file, line: lineNumber, problem: "more than one space (expected 'base64 rank')")
                    }
                    space = i
                }
                guard space >= 0 else {
                    throw TokenizerError.malformedVocabulary(
                        file: file, line: lineNumber, problem: "missing rank (expected 'base64 rank')")
                }
                let b64 = UnsafeBufferPointer(rebasing: line[0 ..< space])
                let rankText = UnsafeBufferPointer(rebasing: line[(space + 1)...])
                guard let rank = Self.parseRank(rankText) else {
                    throw TokenizerError.malformedVocabulary(
                        file: file, line: lineNumber,
                        problem: "rank '\(String(decoding: rankText, as: UTF8.self))' is not a decimal number")
                }
                let expected = offs.count - 1
                guard rank == expected else {
                    throw TokenizerError.malformedVocabulary(
                        file: file, line: lineNumber,
                        problem: "rank \(rank) out of sequence: ranks must be 0, 1, 2, ... and this line needs \(expected)")
                }
                let before = tokenBytes.count
                if let problem = Self.decodeBase64(b64, into: &tokenBytes) {
                    throw TokenizerError.malformedVocabulary(file: file, line: lineNumber, problem: "bad base64: \(problem)")
                }
                if tokenBytes.count == before {
                    throw TokenizerError.malformedVocabulary(file: file, line: lineNumber, problem: "empty token")
                }
                guard tokenBytes.count < Int(Int32.max) else {
                    throw TokenizerError.wrongVocabulary(file: file, problem: "more than 2 GiB of token bytes")
                }
                offs.append(Int32(tokenBytes.count))
            }
        }
        try self.init(packed: tokenBytes, offsets: offs) { r, other in
            TokenizerError.malformedVocabulary(
                file: file, line: r + 1, problem: "token duplicates the one of rank \(other) (line \(other + 1))")
        }
    }

    /// A table over arbitrary byte strings, rank = index (e.g. a GGUF vocabulary's token bytes).
    /// Refuses empty and duplicate strings: either would make `rank(of:)` ambiguous.
    public convenience init(byteStrings: [[UInt8]], source: String) throws {
        var tokenBytes: [UInt8] = []
        var offs: [Int32] = [0]
        offs.reserveCapacity(byteStrings.count + 1)
        for (i, b) in byteStrings.enumerated() {
            guard !b.isEmpty else { throw TokenizerError.badBPEVocabulary(source: source, problem: "entry \(i) is empty") }
            tokenBytes += b
            guard tokenBytes.count < Int(Int32.max) else {
                throw TokenizerError.badBPEVocabulary(source: source, problem: "more than 2 GiB of token bytes")
            }
            offs.append(Int32(tokenBytes.count))
        }
        try self.init(packed: tokenBytes, offsets: offs) { r, other in
            TokenizerError.badBPEVocabulary(
                source: source, problem: "entry \(r) has the same bytes as entry \(other)")
        }
    }

    /// `offs[r] ..< offs[r + 1]` of `tokenBytes` are the bytes of rank r (checked by the callers).
    private init(packed tokenBytes: [UInt8], offsets offs: [Int32],
                 duplicate: (_ rank: Int, _ other: Int) -> TokenizerError) throws
    {
        count = offs.count - 1
        bytes = .allocate(capacity: max(tokenBytes.count, 1))
        bytes.initialize(from: tokenBytes, count: tokenBytes.count)
        offsets = .allocate(capacity: offs.count)
        offsets.initialize(from: offs, count: offs.count)
        var cap = 16
        while cap < count * 2 { cap <<= 1 }
        slots = .allocate(capacity: cap)
        slots.initialize(repeating: -1, count: cap)
        slotMask = cap - 1
        // Pass 2: insert, refusing duplicates (two ranks for one byte string make rank lookup ambiguous).
        for r in 0 ..< count {
            let start = Int(offsets[r]), len = Int(offsets[r + 1]) - start
            if let other = rank(of: UnsafeBufferPointer(start: bytes + start, count: len)) {
                throw duplicate(r, other)  // self is fully initialised: deinit frees the buffers
            }
            var slot = Int(truncatingIfNeeded: Self.hash(bytes + start, len)) & slotMask
            while slots[slot] >= 0 { slot = (slot + 1) & slotMask }
            slots[slot] = Int32(r)
        }
    }

    deinit {
        bytes.deallocate()
        offsets.deallocate()
        slots.deallocate()
    }

    /// The bytes of one rank (0 ..< count).
    public func tokenBytes(_ rank: Int) -> UnsafeBufferPointer<UInt8> {
        precondition(rank >= 0 && rank < count, "rank out of range")
        let start = Int(offsets[rank])
        return UnsafeBufferPointer(start: bytes + start, count: Int(offsets[rank + 1]) - start)
    }

    /// The rank of a byte string, or nil if it is not a token.
    @inline(__always)
    public func rank(of piece: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = piece.baseAddress, piece.count > 0 else { return nil }
        let r = lookup(base, piece.count)
        return r >= 0 ? r : nil
    }

    /// Rank of `p[0..<len]`, or -1.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ len: Int) -> Int {
        var slot = Int(truncatingIfNeeded: Self.hash(p, len)) & slotMask
        while true {
            let r = Int(slots[slot])
            if r < 0 { return -1 }
            let start = Int(offsets[r])
            if Int(offsets[r + 1]) - start == len && memcmp(bytes + start, p, len) == 0 { return r }
            slot = (slot + 1) & slotMask
        }
    }

    /// A multiply-xorshift hash over 8-byte words; quality only matters for probe lengths.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ len: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: len)
        let raw = UnsafeRawPointer(p)
        var i = 0
        while i + 8 <= len {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < len {
            tail |= UInt64(p[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 29
        h = h &* 0x9E37_79B9_7F4A_7C15
        return h ^ (h >> 32)
    }

    /// Byte-level BPE of one pre-token, exactly as tiktoken's `byte_pair_encode`: a piece that is
    /// itself a token is returned whole; otherwise start from single bytes and repeatedly merge the
    /// adjacent pair whose concatenation has the lowest rank (leftmost on ties), until no adjacent
    /// pair is a token. `scratch` is reused between calls to avoid allocation.
    ///
    /// Pieces longer than `linearMergeLimit` go to `encodePieceHeap` (same result, O(n log n)):
    /// tiktoken's loop rescans all parts per merge, O(n^2), so one long run of letters (a hostile
    /// or just unusual input) would otherwise take minutes.
    func encodePiece(_ p: UnsafePointer<UInt8>, _ len: Int, into out: inout [Int], scratch: inout [Int]) {
        let whole = lookup(p, len)
        if whole >= 0 {
            out.append(whole)
            return
        }
        if len > Self.linearMergeLimit {
            encodePieceHeap(p, len, into: &out)
            return
        }
        encodePieceLinear(p, len, into: &out, scratch: &scratch)
    }

    static let linearMergeLimit = 256

    /// tiktoken's `_byte_pair_merge`, transcribed: the reference for `encodePieceHeap`.
    func encodePieceLinear(_ p: UnsafePointer<UInt8>, _ len: Int, into out: inout [Int], scratch: inout [Int]) {
        // parts: starts[k] and pairRank[k] (rank of bytes starts[k] ..< starts[k + 2]) for k < m - 1,
        // interleaved in scratch as [start0, rank0, start1, rank1, ...]; the sentinel part holds len.
        let maxRank = Int.max
        scratch.removeAll(keepingCapacity: true)
        for i in 0 ..< len - 1 {
            let r = lookup(p + i, 2)
            scratch.append(i)
            scratch.append(r >= 0 ? r : maxRank)
        }
        scratch.append(len - 1); scratch.append(maxRank)
        scratch.append(len); scratch.append(maxRank)
        scratch.withUnsafeMutableBufferPointer { s in
            var parts = s.count / 2  // includes the end sentinel
            // Rank of the bytes from part k to part k + 3 (what part k becomes after merging k and k+1).
            @inline(__always) func rankAfterMerge(_ k: Int) -> Int {
                if k + 3 < parts {
                    let a = s[2 * k], b = s[2 * (k + 3)]
                    let r = lookup(p + a, b - a)
                    return r >= 0 ? r : maxRank
                }
                return maxRank
            }
            while true {
                var minRank = maxRank, minK = -1
                for k in 0 ..< parts - 1 where s[2 * k + 1] < minRank {
                    minRank = s[2 * k + 1]
                    minK = k
                }
                if minK < 0 { break }
                if minK > 0 { s[2 * (minK - 1) + 1] = rankAfterMerge(minK - 1) }
                s[2 * minK + 1] = rankAfterMerge(minK)
                // Remove part minK + 1.
                var k = minK + 1
                while k < parts - 1 {
                    s[2 * k] = s[2 * (k + 1)]
                    s[2 * k + 1] = s[2 * (k + 1) + 1]
                    k += 1
                }
                parts -= 1
            }
            for k in 0 ..< parts - 1 {
                let a = s[2 * k], b = s[2 * (k + 1)]
                // Every part is a token by construction (single bytes are validated at load).
                out.append(lookup(p + a, b - a))
            }
        }
    }

    /// The same merges as `encodePieceLinear`, in the same order, with a min-heap of
    /// `(rank << 32 | start)` keys over a doubly linked list of parts. Popping the smallest key picks
    /// the lowest rank and, among equal ranks, the leftmost pair, which is exactly the linear scan's
    /// choice. Entries made stale by a neighbouring merge are skipped: an entry is current iff its
    /// start is still a part and that part's pair rank still equals the entry's (equal rank at the
    /// same start means the same byte string).
    func encodePieceHeap(_ p: UnsafePointer<UInt8>, _ len: Int, into out: inout [Int]) {
        Self.mergeLowestRank(len, pairRank: { s, _, e in lookup(p + s, e - s) },
                             emit: { s, e in out.append(lookup(p + s, e - s)) })
    }

    /// The byte-level BPE merge loop shared by tiktoken-style ranks (`encodePieceHeap`: the rank of a
    /// pair is the rank of its concatenation) and merge-list ranks (`ByteLevelBPETokenizer`: the rank
    /// of a pair is its line in the merges list). Starts from single bytes `0 ..< len` and repeatedly
    /// merges the adjacent pair with the lowest rank, leftmost on ties, until no pair has a rank;
    /// then calls `emit(start, end)` for every part, in order.
    ///
    /// `pairRank(start, mid, end)` is the rank (0 ..< 2^32 - 1) of the part `start ..< mid` followed by
    /// the part `mid ..< end`, or a negative number if they do not merge. It must depend only on the
    /// bytes and the split point (then equal rank at one start means the same pair, which the
    /// staleness test below relies on).
    ///
    /// A min-heap of `(rank << 32 | start)` keys over a doubly linked list of parts: popping the
    /// smallest key picks the lowest rank and, among equal ranks, the leftmost pair. Entries made stale
    /// by a neighbouring merge are skipped: an entry is current iff its start is still a part and that
    /// part's pair rank still equals the entry's. O(n log n).
    @inline(__always)
    static func mergeLowestRank(_ len: Int, pairRank: (_ start: Int, _ mid: Int, _ end: Int) -> Int,
                                emit: (_ start: Int, _ end: Int) -> Void)
    {
        guard len > 1 else {
            if len == 1 { emit(0, 1) }
            return
        }
        let none = Int(UInt32.max)
        var next = [Int](0 ..< len).map { $0 + 1 }  // next part start (len = end)
        var prev = [Int](0 ..< len).map { $0 - 1 }  // previous part start (-1 = none)
        var pairRankAt = [Int](repeating: none, count: len)  // rank of part(start) + following part
        var alive = [Bool](repeating: true, count: len)
        var heap: [UInt64] = []
        heap.reserveCapacity(len)
        func push(_ key: UInt64) {
            heap.append(key)
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if heap[parent] <= heap[i] { break }
                heap.swapAt(parent, i)
                i = parent
            }
        }
        func pop() -> UInt64 {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < heap.count && heap[l] < heap[m] { m = l }
                    if r < heap.count && heap[r] < heap[m] { m = r }
                    if m == i { break }
                    heap.swapAt(i, m)
                    i = m
                }
            }
            return top
        }
        func rankOfPair(_ start: Int) -> Int {
            let mid = next[start]
            guard mid < len else { return none }
            let r = pairRank(start, mid, next[mid])
            return r >= 0 && r < none ? r : none
        }
        for i in 0 ..< len - 1 {
            let r = rankOfPair(i)
            pairRankAt[i] = r
            if r != none { push(UInt64(r) << 32 | UInt64(i)) }
        }
        while !heap.isEmpty {
            let key = pop()
            let start = Int(key & 0xFFFF_FFFF), rank = Int(key >> 32)
            guard alive[start], pairRankAt[start] == rank else { continue }
            // Merge part(start) with the following part.
            let mid = next[start]
            alive[mid] = false
            next[start] = next[mid]
            if next[mid] < len { prev[next[mid]] = start }
            pairRankAt[start] = rankOfPair(start)
            if pairRankAt[start] != none { push(UInt64(pairRankAt[start]) << 32 | UInt64(start)) }
            let before = prev[start]
            if before >= 0 {
                pairRankAt[before] = rankOfPair(before)
                if pairRankAt[before] != none { push(UInt64(pairRankAt[before]) << 32 | UInt64(before)) }
            }
        }
        var start = 0
        while start < len {
            emit(start, next[start])
            start = next[start]
        }
    }

    /// Decimal digits only, no sign, no leading zeros except "0", at most 9 digits.
    private static func parseRank(_ t: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !t.isEmpty, t.count <= 9 else { return nil }
        if t.count > 1 && t[0] == 0x30 { return nil }
        var v = 0
        for c in t {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            v = v * 10 + Int(c - 0x30)
        }
        return v
    }

    private static let base64Values: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    /// Strict standard base64 (RFC 4648 §4, padded, canonical: unused low bits must be zero).
    /// Returns nil on success, or what is wrong.
    static func decodeBase64(_ s: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) -> String? {
        guard s.count % 4 == 0 else { return "length \(s.count) is not a multiple of 4" }
        guard !s.isEmpty else { return "empty" }
        let table = base64Values
        var i = 0
        while i < s.count {
            let last = i + 4 == s.count
            var word = 0
            var pad = 0
            var lastDigit = 0
            for j in 0 ..< 4 {
                let c = s[i + j]
                var d = 0
                if c == 0x3D {  // '='
                    guard last, j >= 2 else { return "'=' padding in the middle" }
                    pad += 1
                } else {
                    guard pad == 0 else { return "data after '=' padding" }
                    let t = table[Int(c)]
                    guard t >= 0 else {
                        return "character \(c >= 0x21 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "0x" + String(c, radix: 16)) is not in the base64 alphabet"
                    }
                    d = Int(t)
                    lastDigit = d
                }
                word = (word << 6) | d
            }
            out.append(UInt8(truncatingIfNeeded: word >> 16))
            if pad < 2 { out.append(UInt8(truncatingIfNeeded: word >> 8)) }
            if pad < 1 { out.append(UInt8(truncatingIfNeeded: word)) }
            if pad == 1 && (lastDigit & 0x3) != 0 { return "non-canonical padding bits" }
            if pad == 2 && (lastDigit & 0xF) != 0 { return "non-canonical padding bits" }
            i += 4
        }
        return nil
    }
}
