import Foundation
import SquintFormats
import SquintModels

/// `squint validate MODEL --llama-base FILE.kld`: Squint's logits of a text model against the
/// log-probabilities llama.cpp's `llama-perplexity --kl-divergence-base FILE` stored for the SAME
/// model (Formats/LLAMA_KLD.md): the tokens come from the file, each chunk runs from an empty cache
/// with BOS in front when the model adds one (as llama-perplexity does), and the scored rows are
/// compared with the accumulator every validation uses. Reference = llama.cpp, candidate = Squint:
/// KL(llama.cpp || Squint), same top-1, both perplexities. A faithful runtime gives same top-1 on
/// nearly every position and a KL near the 16-bit quantisation floor of the file.
public enum LlamaBaseComparison {
    public struct Options: Sendable {
        public var chunks: Int?
        public var worstCount = 10
        public var maxKL: Double?
        public var minTop1: Double?
        public init(chunks: Int? = nil, worstCount: Int = 10, maxKL: Double? = nil, minTop1: Double? = nil) {
            self.chunks = chunks; self.worstCount = worstCount; self.maxKL = maxKL; self.minTop1 = minTop1
        }
    }

    /// Refuses a file made with another vocabulary, and (when `text` is given) one whose tokens are
    /// not this model's tokenization of the text: a mismatch is reported at its first position.
    public static func check(model m: TextModel, base: LlamaKLDFile, text: String?) throws {
        guard base.vocab == m.tokenizer.vocabularySize, base.vocab <= m.model.dims.vocab else {
            throw ValidateError.incompatible(message: "\(base.path) holds log-probabilities over \(base.vocab) tokens, but \(m.path) has "
                + "\(m.tokenizer.vocabularySize) tokens (\(m.model.dims.vocab) logits): it was made with another model")
        }
        if let maxPos = m.model.dims.maxPositions, base.context > maxPos { throw PerplexityError.contextTooLong(base.context, maxPos) }
        guard let text else { return }
        let ids = m.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        for c in 0..<base.chunks {
            let t = try base.tokens(chunk: c)
            for (k, id) in t.enumerated() {
                let i = c * base.context + k
                guard i < ids.count else {
                    throw ValidateError.incompatible(message: "the text gives \(ids.count) tokens, fewer than the \(base.chunks * base.context) in \(base.path)")
                }
                guard ids[i] == Int(id) else {
                    throw ValidateError.incompatible(message: "token \(i) of the text is id \(ids[i]) for Squint but \(id) in \(base.path): "
                        + "another text, or the tokenizers disagree")
                }
            }
        }
    }

    public static func run(model m: TextModel, modelName: String, base: LlamaKLDFile, text: String? = nil, options o: Options = Options(),
                           progress: ((Int, Int, String) -> Void)? = nil) throws -> ValidationReport {
        try check(model: m, base: base, text: text)
        let t0 = Date()
        let n = min(base.chunks, o.chunks ?? base.chunks)
        let ctx = base.context, first = ctx / 2, V = base.vocab, W = m.model.dims.vocab
        let bos: Int32? = m.tokenizer.addBOS ? m.tokenizer.bosTokenID.map(Int32.init) : nil
        let tok = m.tokenizer
        var acc = DriftAccumulator(layers: 0, hidden: 1, worstCount: o.worstCount,
                                   decode: { (try? tok.decode($0)) ?? $0.map(String.init).joined(separator: " ") })
        let cache = m.model.makeCache(capacity: ctx)
        var forward = 0.0
        for c in 0..<n {
            progress?(c, n, "chunk \(c + 1)/\(n)")
            var w = try base.tokens(chunk: c)
            if let bos { w[0] = bos }
            cache.reset()
            let t1 = Date()
            let logits = try m.model.prefill(tokens: w, cache: cache, logitRows: first..<(ctx - 1)).logits.data   // [rows, W]
            forward += Date().timeIntervalSince(t1)
            if let k = firstNonFinite(logits) {
                throw ModelError.nonFinite(message: "\(modelName): the logits of chunk \(c + 1) at position \(first + k / W) are not finite")
            }
            for r in 0..<base.rowsPerChunk {
                let ref = try base.logProbabilities(chunk: c, row: r)
                acc.addPosition(sample: "chunk \(c + 1)", position: first + r, reference: ref[...],
                                candidate: logits[(r * W)..<(r * W + V)], target: Int(w[first + r + 1]),
                                referenceLogProbabilityFloor: -16)
            }
        }
        progress?(n, n, "done")
        var r = acc.report(referenceName: base.path, candidateName: modelName, samples: n, greedyTokens: 0,
                           maxKL: o.maxKL, minTop1: o.minTop1, seconds: Date().timeIntervalSince(t0), forwardSeconds: forward)
        r.mode = "llama-base"
        r.referenceLabel = "llama.cpp"
        r.candidateLabel = "Squint"
        r.context = ctx
        return r
    }
}
