import Foundation

/// The file `llama-perplexity --kl-divergence-base FILE` writes (without `--kl-divergence`): the
/// evaluation tokens and, for every scored position, the base model's log-probabilities quantised to
/// 16 bits. Byte layout and rules: Formats/LLAMA_KLD.md. Everything is checked when the file is
/// opened (header ranges, exact size with overflow-checked arithmetic, token ids inside the
/// vocabulary); a row's scale and minimum are checked when the row is read.
public final class LlamaKLDFile {
    public static let magic = Array("_logits_".utf8)
    /// Caps that keep every product below Int.max and refuse absurd headers before any allocation.
    public static let maxContext = 1 << 20, maxVocab = 1 << 24, maxChunks = 1 << 20

    public let path: String
    /// Tokens per chunk (llama-perplexity's -c), the vocabulary size, the number of chunks.
    public let context: Int, vocab: Int, chunks: Int
    /// Scored positions per chunk: context/2 ..< context-1, i.e. context - 1 - context/2 rows.
    public let rowsPerChunk: Int
    /// uint16 values per row: 2 floats (scale, minimum log-probability) + the vocabulary padded to even.
    public let valuesPerRow: Int
    let file: MappedFile
    let tokensOffset: Int, rowsOffset: Int

    public init(path: String) throws {
        self.path = path
        let f = try MappedFile(path: path)
        file = f
        guard f.size >= 8, Array(try f.slice(0, 8, what: "magic")) == Self.magic else {
            throw FormatError.invalid(path: path, what: "not a llama-perplexity log-probability file (no '_logits_' magic)")
        }
        let ctx = Int(try f.readLE(UInt32.self, at: 8, what: "n_ctx"))
        let nv = Int(try f.readLE(Int32.self, at: 12, what: "n_vocab"))
        let nc = Int(try f.readLE(Int32.self, at: 16, what: "n_chunk"))
        guard ctx >= 4 && ctx <= Self.maxContext else {
            throw FormatError.invalid(path: path, what: "n_ctx \(ctx) outside 4...\(Self.maxContext)")
        }
        guard nv >= 1 && nv <= Self.maxVocab else { throw FormatError.invalid(path: path, what: "n_vocab \(nv) outside 1...\(Self.maxVocab)") }
        guard nc >= 1 && nc <= Self.maxChunks else { throw FormatError.invalid(path: path, what: "n_chunk \(nc) outside 1...\(Self.maxChunks)") }
        context = ctx; vocab = nv; chunks = nc
        rowsPerChunk = ctx - 1 - ctx / 2
        valuesPerRow = 2 * ((nv + 1) / 2) + 4
        // 20 + chunks*ctx*4 + chunks*rows*valuesPerRow*2, every step overflow-checked.
        func mul(_ a: Int, _ b: Int) throws -> Int {
            let (r, o) = a.multipliedReportingOverflow(by: b)
            if o { throw FormatError.invalid(path: path, what: "sizes overflow (n_ctx \(ctx), n_vocab \(nv), n_chunk \(nc))") }
            return r
        }
        let tokenBytes = try mul(try mul(nc, ctx), 4)
        let rowBytes = try mul(try mul(try mul(nc, rowsPerChunk), valuesPerRow), 2)
        let (t1, o1) = 20.addingReportingOverflow(tokenBytes)
        let (total, o2) = t1.addingReportingOverflow(rowBytes)
        guard !o1 && !o2 else { throw FormatError.invalid(path: path, what: "sizes overflow") }
        guard f.size >= total else {
            throw FormatError.truncated(path: path, what: "\(nc) chunks of \(ctx) tokens and \(rowsPerChunk) rows of \(nv) log-probabilities "
                + "need \(total) bytes, the file has \(f.size)")
        }
        guard f.size == total else {
            throw FormatError.invalid(path: path, what: "\(f.size - total) bytes after the last chunk (expected exactly \(total) bytes)")
        }
        tokensOffset = 20; rowsOffset = t1
        let toks = try f.slice(tokensOffset, tokenBytes, what: "tokens")
        for i in 0..<(nc * ctx) {
            let t = Int(Int32(littleEndian: toks.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            guard t >= 0 && t < nv else {
                throw FormatError.invalid(path: path, what: "token \(i) (chunk \(i / ctx + 1)) is id \(t), outside the vocabulary of \(nv)")
            }
        }
    }

    /// The `context` tokens of chunk `c` as the text gave them (llama.cpp puts BOS in front at run
    /// time when the model adds one; the file keeps the text's first token).
    public func tokens(chunk c: Int) throws -> [Int32] {
        guard c >= 0 && c < chunks else { throw FormatError.invalid(path: path, what: "no chunk \(c) (the file has \(chunks))") }
        let b = try file.slice(tokensOffset + c * context * 4, context * 4, what: "tokens of chunk \(c + 1)")
        return (0..<context).map { Int32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
    }

    /// The base model's log-probabilities at position context/2 + `row` of chunk `c` (predicting the
    /// token after it), dequantised as llama-perplexity does: scale · q + minimum, in float.
    /// Values clipped at the minimum (q = 0) stand for "at most max - 16 below the top logit".
    public func logProbabilities(chunk c: Int, row: Int) throws -> [Float] {
        guard c >= 0 && c < chunks, row >= 0 && row < rowsPerChunk else {
            throw FormatError.invalid(path: path, what: "no row \(row) of chunk \(c) (\(chunks) chunks of \(rowsPerChunk) rows)")
        }
        let off = rowsOffset + ((c * rowsPerChunk) + row) * valuesPerRow * 2
        let b = try file.slice(off, valuesPerRow * 2, what: "row \(row) of chunk \(c + 1)")
        let scale = Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        let minimum = Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        guard scale.isFinite && scale >= 0 && minimum.isFinite && minimum <= 0 else {
            throw FormatError.invalid(path: path, what: "row \(row) of chunk \(c + 1) has scale \(scale) and minimum \(minimum) "
                + "(a finite scale >= 0 and a finite minimum log-probability <= 0 are required)")
        }
        var out = [Float](repeating: 0, count: vocab)
        for i in 0..<vocab {
            let q = UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 8 + 2 * i, as: UInt16.self))
            out[i] = scale * Float(q) + minimum
        }
        return out
    }
}
