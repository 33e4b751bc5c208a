import Foundation

/// Perplexity of a causal language model over a token stream, computed the way llama.cpp's
/// `llama-perplexity` does (tools/perplexity, default mode), so the two can be compared number for
/// number on the same text and context:
///
/// - the text is tokenized once, whole (with BOS in front only if the model adds one);
/// - it is cut into `tokens.count / ctx` non-overlapping windows of `ctx` tokens (the tail that does
///   not fill a window is dropped), each evaluated from an empty cache at positions 0..<ctx;
/// - if the model adds BOS, the first token of every window is replaced by BOS (the text's own token
///   there is not scored anyway);
/// - only the second half is scored: the logits at positions `ctx/2 ..< ctx-1` predict the next token,
///   `ctx - 1 - ctx/2` scored tokens per window (255 at ctx 512), so every scored token has at least
///   ctx/2 tokens of context;
/// - each token's negative log-likelihood is `-(l[t] - max(l) - log(sum(exp(l - max(l)))))`, the
///   sum of exponentials in double over float32 `expf` terms;
/// - PPL = exp(mean NLL), and its uncertainty `ppl * sqrt((mean(NLL²) - mean(NLL)²) / (n - 1))`, the
///   standard error of the mean NLL carried through exp (what llama-perplexity prints after `+/-`).
public enum Perplexity {
    public struct Options: Sendable {
        public var context: Int = 512
        /// Replace the first token of each window by this id (the model's BOS) when set.
        public var bos: Int32? = nil
        /// Evaluate at most this many windows (nil: all).
        public var maxWindows: Int? = nil
        public init(context: Int = 512, bos: Int32? = nil, maxWindows: Int? = nil) {
            self.context = context; self.bos = bos; self.maxWindows = maxWindows
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var perplexity: Double
        /// Standard error carried to the perplexity (llama-perplexity's `+/-`).
        public var uncertainty: Double
        public var meanNLL: Double
        public var scoredTokens: Int
        public var windows: Int
        public var context: Int
        public var textTokens: Int
        /// The running estimate after each window, as llama-perplexity prints `[1]24.1,[2]...` (the last
        /// one is `perplexity`), not each window's own perplexity: that is exp(`windowNLL[i]`).
        public var perWindow: [Double]
        /// Each window's own mean NLL over its scored tokens (for paired per-window statistics between
        /// two models on the same text).
        public var windowNLL: [Double]
    }

    /// Accumulates NLL over windows; `window(_:)` gives the logits of one window.
    public struct Accumulator: Sendable {
        public private(set) var sum = 0.0, sumSq = 0.0, count = 0
        public init() {}

        /// Adds the scored positions of one window: `logits` is [ctx, vocab] row-major (all positions,
        /// or only those from `first` on when `logitsFrom == first`), `tokens` the window's ctx tokens.
        public mutating func add(logits: UnsafeBufferPointer<Float>, vocab: Int, logitsFrom: Int, tokens: ArraySlice<Int32>) throws {
            let ctx = tokens.count, first = ctx / 2
            precondition(logitsFrom <= first)
            for p in first..<(ctx - 1) {
                let row = UnsafeBufferPointer(rebasing: logits[((p - logitsFrom) * vocab)..<((p - logitsFrom + 1) * vocab)])
                let target = Int(tokens[tokens.startIndex + p + 1])
                guard target >= 0 && target < vocab else {
                    throw PerplexityError.tokenOutsideVocabulary(target, vocab)
                }
                let v = -Perplexity.logSoftmax(row, target)
                guard v.isFinite else { throw PerplexityError.nonFiniteLogits(position: p) }
                sum += v; sumSq += v * v; count += 1
            }
        }

        public var perplexity: Double { exp(sum / Double(max(count, 1))) }

        public func result(windows: Int, context: Int, textTokens: Int, perWindow: [Double], windowNLL: [Double]) -> Result {
            let n = Double(count)
            let mean = sum / n
            var sd = sumSq / n - mean * mean
            sd = sd > 0 && count > 1 ? (sd / (n - 1)).squareRoot() : 0
            return Result(perplexity: exp(mean), uncertainty: exp(mean) * sd, meanNLL: mean, scoredTokens: count,
                          windows: windows, context: context, textTokens: textTokens, perWindow: perWindow, windowNLL: windowNLL)
        }
    }

    /// log softmax(row)[target] as llama-perplexity computes it: float max, double sum of float expf.
    public static func logSoftmax(_ row: UnsafeBufferPointer<Float>, _ target: Int) -> Double {
        var m = row[0]
        for x in row where x > m { m = x }
        var s = 0.0
        for x in row { s += Double(expf(x - m)) }
        return Double(row[target] - m) - log(s)
    }

    /// The windows llama-perplexity evaluates over `tokens`: (start, tokens with BOS substituted).
    public static func windows(_ tokens: [Int32], _ o: Options) throws -> [[Int32]] {
        guard o.context >= 4 else { throw PerplexityError.contextTooSmall(o.context) }
        guard tokens.count >= 2 * o.context else { throw PerplexityError.textTooShort(tokens: tokens.count, context: o.context) }
        var n = tokens.count / o.context
        if let m = o.maxWindows { n = min(n, max(1, m)) }
        return (0..<n).map { i in
            var w = Array(tokens[(i * o.context)..<((i + 1) * o.context)])
            if let bos = o.bos { w[0] = bos }
            return w
        }
    }

    /// Runs every window through `evaluate` (which returns the logits of positions `from..<ctx-1`
    /// or `from..<ctx`, row-major [rows, vocab]; `from` <= ctx/2, ctx/2 being enough) and accumulates.
    public static func run(tokens: [Int32], options o: Options, vocab: Int,
                           evaluate: ([Int32]) throws -> (logits: [Float], from: Int),
                           progress: ((Int, Int, Double) -> Void)? = nil) throws -> Result {
        let ws = try windows(tokens, o)
        var acc = Accumulator()
        var running: [Double] = [], own: [Double] = []
        for (i, w) in ws.enumerated() {
            let (sum0, count0) = (acc.sum, acc.count)
            let (logits, from) = try evaluate(w)
            guard from <= w.count / 2, logits.count >= (w.count - 1 - from) * vocab, logits.count <= (w.count - from) * vocab else {
                throw PerplexityError.badLogitsShape(got: logits.count, expected: (w.count - 1 - from) * vocab)
            }
            try logits.withUnsafeBufferPointer { try acc.add(logits: $0, vocab: vocab, logitsFrom: from, tokens: w[...]) }
            running.append(acc.perplexity)
            own.append((acc.sum - sum0) / Double(max(acc.count - count0, 1)))
            progress?(i + 1, ws.count, acc.perplexity)
        }
        return acc.result(windows: ws.count, context: o.context, textTokens: tokens.count, perWindow: running, windowNLL: own)
    }
}

public enum PerplexityError: Error, CustomStringConvertible, Equatable {
    case textTooShort(tokens: Int, context: Int)
    case contextTooSmall(Int)
    case contextTooLong(Int, Int)
    case tokenOutsideVocabulary(Int, Int)
    case nonFiniteLogits(position: Int)
    case badLogitsShape(got: Int, expected: Int)

    public var description: String {
        switch self {
        case .textTooShort(let t, let c):
            return "the text has \(t) tokens; perplexity at a context of \(c) needs at least \(2 * c) (use a longer text or a smaller --ctx)"
        case .contextTooSmall(let c): return "--ctx \(c) is too small (at least 4)"
        case .contextTooLong(let c, let m): return "--ctx \(c) is longer than the model's context of \(m) positions"
        case .tokenOutsideVocabulary(let t, let v): return "token id \(t) is outside the model's vocabulary of \(v)"
        case .nonFiniteLogits(let p): return "the model produced NaN or infinite logits at window position \(p)"
        case .badLogitsShape(let g, let e): return "internal: \(g) logits where \(e) were expected"
        }
    }
}
