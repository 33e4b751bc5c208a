import Foundation
import SquintFormats
import SquintModels
import SquintTensor
import SquintTokenizer

/// `squint validate ORIGINAL QUANT --text FILE`: two text models (any `TextModel`: GGUF of any type,
/// Hugging Face folder) compared over the windows `squint perplexity` scores (Perplexity.swift: the
/// text tokenized whole with the model's BOS rule, non-overlapping windows of `context` tokens, BOS in
/// front of each when the model adds one, the second half scored). Each window is a `ValidationSample`
/// whose "context" is its unscored first half, so the statistics, the report and the --save-base /
/// --base file are the ones the Qwen-VL validation uses (DriftAccumulator, ValidateReport, ValidationBase).
public enum TextValidator {
    public struct Options: Sendable {
        public var context = 512
        /// Windows evaluated at most (llama-perplexity's --chunks); nil: all.
        public var chunks: Int?
        public var worstCount = 10
        public var maxKL: Double?
        public var minTop1: Double?
        public init(context: Int = 512, chunks: Int? = nil, worstCount: Int = 10, maxKL: Double? = nil, minTop1: Double? = nil) {
            self.context = context; self.chunks = chunks; self.worstCount = worstCount; self.maxKL = maxKL; self.minTop1 = minTop1
        }
    }

    /// Refuses two models that do not read text the same way: different vocabularies (token strings,
    /// types, BOS/EOS rules, pre-tokenizer), different model sizes, or different ids for `text`
    /// (which also catches different merges). KL between two distributions over different
    /// vocabularies would be a number without meaning.
    public static func checkComparable(_ a: TextModel, _ b: TextModel, text: String? = nil) throws {
        let ta = a.tokenizer, tb = b.tokenizer
        func refuse(_ m: String) throws -> Never {
            throw ValidateError.incompatible(message: "\(a.path) and \(b.path) \(m): compare a model only with a quantization of itself")
        }
        if ta.vocabularySize != tb.vocabularySize {
            try refuse("have tokenizers of \(ta.vocabularySize) and \(tb.vocabularySize) tokens")
        }
        if let i = ta.tokens.indices.first(where: { ta.tokens[$0] != tb.tokens[$0] }) {
            try refuse("have different tokenizers: token \(i) is '\(printable(ta.tokens[i]))' vs '\(printable(tb.tokens[i]))'")
        }
        if ta.tokenTypes != tb.tokenTypes { try refuse("have different token types in their tokenizers") }
        if ta.preTokenizer != tb.preTokenizer {
            try refuse("have different pre-tokenizers (\(ta.preTokenizer.rawValue) vs \(tb.preTokenizer.rawValue))")
        }
        if ta.bosTokenID != tb.bosTokenID || ta.addBOS != tb.addBOS || ta.eosTokenID != tb.eosTokenID {
            try refuse("have different BOS/EOS rules")
        }
        let da = a.model.dims, db = b.model.dims
        if da.vocab != db.vocab || da.hidden != db.hidden || da.layers != db.layers {
            try refuse("have different shapes (vocab \(da.vocab) vs \(db.vocab), hidden \(da.hidden) vs \(db.hidden), "
                       + "layers \(da.layers) vs \(db.layers))")
        }
        if let text, ta.encode(text, addSpecial: true, parseSpecial: false) != tb.encode(text, addSpecial: true, parseSpecial: false) {
            try refuse("tokenize the text differently (different merges)")
        }
    }

    /// The windows of `text` that `squint perplexity` scores, as samples: window i is labelled
    /// "chunk i+1" and its first ctx/2 + 1 tokens are the context (positions ctx/2 ..< ctx-1 scored).
    public static func samples(model: TextModel, text: String, options o: Options) throws -> [ValidationSample] {
        if let maxPos = model.model.dims.maxPositions, o.context > maxPos { throw PerplexityError.contextTooLong(o.context, maxPos) }
        let ids = model.tokenizer.encode(text, addSpecial: true, parseSpecial: false).map(Int32.init)
        let bos: Int32? = model.tokenizer.addBOS ? model.tokenizer.bosTokenID.map(Int32.init) : nil
        let windows = try Perplexity.windows(ids, .init(context: o.context, bos: bos, maxWindows: o.chunks))
        return windows.enumerated().map { i, w in
            ValidationSample(label: "chunk \(i + 1)", ids: w, contextLength: w.count / 2 + 1, pixelValues: nil)
        }
    }

    /// One window through one model from an empty cache: the logits of the scored rows and the hidden
    /// state of every position after every block.
    static func runPass(_ m: TextModel, _ s: ValidationSample, cache: DecoderCache, name: String) throws -> Validator.Pass {
        let t0 = Date()
        cache.reset()
        let first = s.contextLength - 1, S = s.ids.count
        let r = try m.model.prefill(tokens: s.ids, cache: cache, logitRows: first..<(S - 1), keepHiddenStates: true)
        let V = m.model.dims.vocab
        if let k = firstNonFinite(r.logits.data) {
            throw ModelError.nonFinite(message: "\(name): the logits of \(s.label) at position \(first + k / V) "
                + "(input token id \(s.ids[first + k / V])) are not finite (token id \(k % V) is \(r.logits.data[k]))")
        }
        return Validator.Pass(features: nil, hidden: r.hiddenStates.map(\.data), logits: r.logits.data, greedy: [],
                              forwardSeconds: Date().timeIntervalSince(t0), logitsFrom: first)
    }

    /// What ties a --save-base file to the original model, the text and the windows.
    public static func baseIdentity(original m: TextModel, textPath: String, samples: [ValidationSample]) throws -> [String: String] {
        try ValidationBase.identity(modelDigest: try weightsDigest(m), evalPath: textPath, samples: samples, greedyTokens: 0,
                                    shape: shape(m))
    }

    static func shape(_ m: TextModel) -> ValidationBase.Shape {
        .init(vocab: m.model.dims.vocab, hidden: m.model.dims.hidden, layers: m.model.dims.layers)
    }

    /// The tensors of a GGUF file or of a model folder's safetensors.
    public static func weightsFile(_ m: TextModel) throws -> TensorFile {
        if let g = m.gguf { return g }
        let index = m.path + "/model.safetensors.index.json"
        return FileManager.default.fileExists(atPath: index)
            ? try ShardedCheckpoint(indexPath: index) : try SafetensorsFile(path: m.path + "/model.safetensors")
    }

    /// The weights' digest (ValidationBase.modelDigest) of a GGUF file or a model folder.
    static func weightsDigest(_ m: TextModel) throws -> String { try ValidationBase.modelDigest(try weightsFile(m)) }

    /// The report's header for two text models: sizes of their tensors, bits per weight over the
    /// original's parameters, the quantized file's tensor types as its "quantization".
    public static func runInfo(original a: TextModel, quantized b: TextModel, arguments: [String]) throws -> ValidationReport.RunInfo {
        let fa = try weightsFile(a), fb = try weightsFile(b)
        return .init(arguments: arguments, quantization: b.source, parameters: fa.tensors.reduce(0) { $0 + $1.elementCount },
                     referenceBytes: fa.tensors.reduce(0) { $0 + $1.byteCount }, candidateBytes: fb.tensors.reduce(0) { $0 + $1.byteCount })
    }

    /// Both models over every window. `base`: the original's side read from, or recorded to, a
    /// --save-base file. `progress` gets (done, total, detail) in passes (2 per window).
    public static func run(original a: TextModel, quantized b: TextModel, originalName: String, quantizedName: String,
                           samples: [ValidationSample], options o: Options = Options(), base: ValidationBase? = nil,
                           progress: ((Int, Int, String) -> Void)? = nil) throws -> ValidationReport {
        try checkComparable(a, b)
        let t0 = Date()
        let dims = a.model.dims
        let tok = a.tokenizer
        var acc = DriftAccumulator(layers: dims.layers, hidden: dims.hidden, worstCount: o.worstCount,
                                   decode: { (try? tok.decode($0)) ?? $0.map(String.init).joined(separator: " ") })
        let ca = a.model.makeCache(capacity: o.context), cb = b.model.makeCache(capacity: o.context)
        var forward = 0.0
        let total = 2 * samples.count
        for (i, s) in samples.enumerated() {
            progress?(2 * i, total, "\(s.label)/\(samples.count) original")
            let pa: Validator.Pass
            if let base, base.isReading {
                pa = try base.pass(i, sample: s, shape: shape(a), greedyTokens: 0)
            } else {
                pa = try runPass(a, s, cache: ca, name: originalName)
                try base?.record(i, sample: s, pass: pa, shape: shape(a))
            }
            progress?(2 * i + 1, total, "\(s.label)/\(samples.count) quantized")
            let pb = try runPass(b, s, cache: cb, name: quantizedName)
            forward += pa.forwardSeconds + pb.forwardSeconds
            acc.add(sample: s, pa, pb, vocab: dims.vocab, greedyTokens: 0)
        }
        progress?(total, total, "done")
        var r = acc.report(referenceName: originalName, candidateName: quantizedName, samples: samples.count, greedyTokens: 0,
                           maxKL: o.maxKL, minTop1: o.minTop1, seconds: Date().timeIntervalSince(t0), forwardSeconds: forward)
        r.mode = "text"
        r.referenceLabel = "original"
        r.candidateLabel = "quantized"
        r.context = o.context
        return r
    }
}
