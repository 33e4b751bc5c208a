import Foundation
import SquintTensor

/// The figures every kind of validation reports, accumulated sample by sample: KL(reference ||
/// candidate) per scored position, same top-1 / top-5, the two perplexities and their paired ratio,
/// the worst positions, the per-block hidden-state drift, image-feature drift and greedy agreement.
/// One implementation for the three modes (Qwen-VL on image-caption pairs, text models on windows of
/// a text file, and Squint against a llama.cpp `--kl-divergence-base` file), so the numbers mean the
/// same everywhere (docs/VALIDATING.md).
struct DriftAccumulator {
    let layers: Int, hidden: Int, worstCount: Int
    let decode: ([Int]) -> String
    private(set) var kls: [Double] = []
    private var top1 = 0, top5 = 0, nllA = 0.0, nllB = 0.0
    /// log p_ref(target) - log p_cand(target), per position.
    private var logprobDiffs: [Double] = []
    private var worst: [ValidationReport.Position] = []
    private var blockErr: [Double], blockRef: [Double], blockCos: [Double]
    private var rows = 0
    private var featErr = 0.0, featRef = 0.0, featCos = 0.0, featRows = 0
    private var greedy: [ValidationReport.Greedy] = []

    init(layers: Int, hidden: Int, worstCount: Int, decode: @escaping ([Int]) -> String) {
        self.layers = layers; self.hidden = hidden; self.worstCount = worstCount; self.decode = decode
        blockErr = [Double](repeating: 0, count: layers + 1); blockRef = blockErr; blockCos = blockErr
    }

    /// Squared error, squared reference norm and cosine of row t of two [rows * width] arrays.
    static func rowDrift(_ x: [Float], _ y: [Float], row t: Int, width H: Int) -> (err: Double, ref: Double, cos: Double) {
        var dd = 0.0, aa = 0.0, bb = 0.0, ab = 0.0
        for j in (t * H)..<((t + 1) * H) {
            let u = Double(x[j]), w = Double(y[j])
            dd += (w - u) * (w - u); aa += u * u; bb += w * w; ab += u * w
        }
        return (dd, aa, aa > 0 && bb > 0 ? ab / (aa.squareRoot() * bb.squareRoot()) : (aa == bb ? 1 : 0))
    }

    /// Hidden states of both models, [layers+1] x [S * hidden], over all S positions.
    mutating func addHidden(_ a: [[Float]], _ b: [[Float]], positions S: Int) {
        for i in 0...layers {
            for t in 0..<S {
                let d = Self.rowDrift(a[i], b[i], row: t, width: hidden)
                blockErr[i] += d.err; blockRef[i] += d.ref; blockCos[i] += d.cos
            }
        }
        rows += S
    }

    /// Image features of both models, [n_img, queries, hidden].
    mutating func addFeatures(_ fa: FloatTensor, _ fb: FloatTensor) {
        for t in 0..<(fa.count / hidden) {
            let d = Self.rowDrift(fa.data, fb.data, row: t, width: hidden)
            featErr += d.err; featRef += d.ref; featCos += d.cos; featRows += 1
        }
    }

    /// One scored position: the two models' rows of logits (normalised here) and the token that
    /// follows. `referenceLogProbabilityFloor`: the reference row already holds log-probabilities
    /// (a llama.cpp base file), used as they are, and KL counts only the entries above the floor.
    mutating func addPosition(sample: String, position p: Int, reference ra: ArraySlice<Float>, candidate rb: ArraySlice<Float>, target: Int,
                              referenceLogProbabilityFloor floor: Double? = nil) {
        let la = floor == nil ? Validator.logSoftmax(ra) : ra.map(Double.init), lb = Validator.logSoftmax(rb)
        let k = Validator.kl(la, lb, floor: floor ?? -.infinity)
        kls.append(k)
        let ta = Validator.topK(ra, 1)[0], tb5 = Validator.topK(rb, 5)
        if ta == tb5[0] { top1 += 1 }
        if tb5.contains(ta) { top5 += 1 }
        nllA -= la[target]; nllB -= lb[target]
        logprobDiffs.append(la[target] - lb[target])
        if worst.count < worstCount || k > (worst.last?.kl ?? -1) {
            worst.append(ValidationReport.Position(sample: sample, position: p, kl: k, tokenId: target, token: decode([target]),
                                                   bf16TopId: ta, int4TopId: tb5[0], bf16Top: decode([ta]), int4Top: decode([tb5[0]]),
                                                   logprobBF16: la[target], logprobInt4: lb[target]))
            worst.sort { $0.kl > $1.kl }
            if worst.count > worstCount { worst.removeLast() }
        }
    }

    /// Everything two passes over one sample give: hidden states, features, every scored position
    /// (`contextLength - 1 ..< S - 1`), greedy continuations.
    mutating func add(sample s: ValidationSample, _ pa: Validator.Pass, _ pb: Validator.Pass, vocab V: Int, greedyTokens: Int) {
        let S = s.ids.count
        if !pa.hidden.isEmpty && !pb.hidden.isEmpty { addHidden(pa.hidden, pb.hidden, positions: S) }
        if let fa = pa.features, let fb = pb.features { addFeatures(fa, fb) }
        for p in (s.contextLength - 1)..<(S - 1) {
            let a0 = (p - pa.logitsFrom) * V, b0 = (p - pb.logitsFrom) * V
            addPosition(sample: s.label, position: p, reference: pa.logits[a0..<(a0 + V)], candidate: pb.logits[b0..<(b0 + V)],
                        target: Int(s.ids[p + 1]))
        }
        if greedyTokens > 0 {
            let m = zip(pa.greedy, pb.greedy).prefix { $0 == $1 }.count
            greedy.append(.init(sample: s.label, bf16Ids: pa.greedy, int4Ids: pb.greedy, bf16Text: decode(pa.greedy),
                                int4Text: decode(pb.greedy), matchedPrefix: m))
        }
    }

    /// The report, gate applied. Per-block drift is empty when no hidden states were added.
    func report(referenceName: String, candidateName: String, samples: Int, greedyTokens: Int,
                maxKL: Double?, minTop1: Double?, seconds: Double, forwardSeconds: Double) -> ValidationReport {
        let sorted = kls.sorted()
        let n = Double(kls.count)            // 0 gives NaN statistics (nothing was scored)
        let edges = Validator.histogramEdges
        var counts = [Int](repeating: 0, count: edges.count - 1)
        for k in kls {
            var i = 0
            while i + 1 < counts.count && k >= edges[i + 1] { i += 1 }
            counts[i] += 1
        }
        let L = layers
        let names = (0...L).map { i -> String in
            i == 0 ? "embeddings" : (i == L ? "block \(L - 1) + ln_f" : "block \(i - 1)")
        }
        let perBlock = rows == 0 ? [] : (0...L).map { i in
            ValidationReport.Drift(block: i - 1, name: names[i], relativeError: blockRef[i] > 0 ? (blockErr[i] / blockRef[i]).squareRoot() : 0,
                                   cosine: blockCos[i] / Double(rows))
        }
        let image = featRows > 0 ? ValidationReport.Drift(block: -1, name: "image features", relativeError: (featErr / max(featRef, 1e-300)).squareRoot(),
                                                        cosine: featCos / Double(featRows)) : nil
        let pplA = exp(nllA / n), pplB = exp(nllB / n)
        let g = Double(max(greedyTokens, 1))
        var r = ValidationReport(
            bf16Model: referenceName, int4Model: candidateName, samples: samples, positions: kls.count,
            klMean: kls.reduce(0, +) / n, klMedian: Validator.percentile(sorted, 50), klP99: Validator.percentile(sorted, 99),
            klMax: sorted.last ?? .nan,
            top1Agreement: Double(top1) / n, top5Agreement: Double(top5) / n,
            pplBF16: pplA, pplInt4: pplB, pplRatio: pplB / pplA,
            worst: worst, perBlock: perBlock, imageFeatures: image, greedyTokens: greedyTokens,
            greedyAgreement: greedy.isEmpty ? .nan
                : Double(greedy.map { zip($0.bf16Ids, $0.int4Ids).filter { $0 == $1 }.count }.reduce(0, +)) / (g * Double(greedy.count)),
            greedyPrefixAgreement: greedy.isEmpty ? .nan : Double(greedy.map(\.matchedPrefix).reduce(0, +)) / (g * Double(greedy.count)),
            greedy: greedy, klHistogram: .init(edges: edges, counts: counts),
            gate: .init(maxKL: maxKL, minTop1: minTop1, passed: true, failures: []),
            seconds: seconds, forwardSeconds: forwardSeconds)
        DriftStatistics.fill(&r, kls: sorted, logprobDiffs: logprobDiffs)
        r.gate = Validator.gate(r, maxKL: maxKL, minTop1: minTop1)
        return r
    }
}
