import Foundation
import SquintTensor

/// Next-token choice, with the logits warpers transformers' `generate` applies for Qwen-VL-Chat
/// (generation_config: do_sample true, top_k 0, top_p 0.3 (BF16) / 0.5 (Int4)), in the same order:
/// temperature, then top-k, then top-p. The random draw uses our own seeded generator (SplitMix64),
/// so a seed reproduces Squint's choices, not torch's.
public struct SamplingOptions: Sendable, Equatable {
    /// Greedy (argmax of the raw logits) when false.
    public var doSample: Bool
    public var temperature: Float
    /// 0 disables top-k (as in generation_config.json).
    public var topK: Int
    /// 1 disables top-p.
    public var topP: Float
    public var seed: UInt64

    public init(doSample: Bool = false, temperature: Float = 1, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.doSample = doSample; self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }

    public static let greedy = SamplingOptions()
}

public struct Sampler {
    public let options: SamplingOptions
    var rng: SplitMix64

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = SplitMix64(seed: options.seed ^ 0x5851_F42D_4C95_7F2D)
    }

    /// The token ids that survive top-k and top-p, with their probabilities (renormalised), in
    /// descending probability order. transformers' rules: top-k keeps every logit >= the k-th largest
    /// (ties kept); top-p sorts ascending and removes the tokens whose cumulative probability is
    /// <= 1 - top_p, always keeping the most likely one.
    public func candidates(_ logits: [Float]) -> [(id: Int, p: Double)] {
        let t = Double(options.temperature)
        // NaN would break the sort's ordering: it counts as impossible (-inf) here; callers refuse NaN
        // logits before sampling (`firstNonFinite`), this only keeps the choice inside the vocabulary.
        var scored = logits.enumerated().map { (id: $0.offset, logit: $0.element.isNaN ? -Double.infinity : Double($0.element) / t) }
        scored.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if options.topK > 0 && options.topK < scored.count {
            let kth = scored[options.topK - 1].logit
            scored = Array(scored.prefix { $0.logit >= kth })
        }
        let m = scored[0].logit
        var probs = scored.map { exp($0.logit - m) }
        let z = probs.reduce(0, +)
        probs = probs.map { $0 / z }
        var keep = probs.count
        if options.topP < 1 {
            // Ascending cumulative sum from the least likely end, as the warper computes it.
            var cum = 0.0
            var removeFromEnd = 0
            for i in stride(from: probs.count - 1, to: 0, by: -1) {
                cum += probs[i]
                if cum <= 1 - Double(options.topP) { removeFromEnd += 1 } else { break }
            }
            keep = probs.count - removeFromEnd
        }
        let kept = probs.prefix(keep)
        let kz = kept.reduce(0, +)
        return (0..<keep).map { (scored[$0].id, kept[$0] / kz) }
    }

    /// Chooses the next token.
    public mutating func next(_ logits: [Float]) -> Int {
        guard options.doSample else { return argmax(logits) }
        let c = candidates(logits)
        guard c.allSatisfy({ $0.p.isFinite }) else { return argmax(logits) }
        var u = rng.unitDouble()
        for (id, p) in c {
            if u < p { return id }
            u -= p
        }
        return c.last!.id
    }
}
