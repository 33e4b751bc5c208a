import COpenBLAS
import Dispatch

/// Settings of one `fasterquant` call. Defaults are the Qwen-VL-Chat-Int4 ones (SPEC §5.1).
public struct GPTQOptions: Sendable, Equatable {
    /// Columns per error-feedback block (AutoGPTQ `blocksize`).
    public var blockSize: Int = 128
    /// Damping added to diag(H), relative to mean(diag(H)) (AutoGPTQ `percdamp`).
    public var percDamp: Float = 0.01
    /// Columns per group; -1 = one group per row (per channel).
    public var groupSize: Int = 128
    /// Quantize columns in order of decreasing diag(H) (`desc_act` / `actorder`).
    public var actOrder: Bool = false
    /// Find all group parameters on the original weight before any error feedback.
    public var staticGroups: Bool = false
    /// With static groups on a symmetric grid: each row-group's scale re-chosen to minimise its
    /// rounding error weighted by diag(H) (`Quantizer.searchScales`) instead of the max-based one.
    /// Not AutoGPTQ (off by default).
    public var scaleSearch: Bool = false
    /// What `scaleSearch` weights each rounding error by.
    public var scaleWeights: ScaleWeights = .hessian
    public enum ScaleWeights: String, Sendable, Codable {
        /// diag(H): the calibration inputs' mean square per column.
        case hessian
        /// diag(H)·sqrt(σ² + w²), σ² the row's mean square weight: llama.cpp's importance-weighted
        /// Q4_0 (`quantize_row_q4_0_impl`), which also favours the row's large weights.
        case imatrix
        /// The weight as a formula (provenance strings).
        public var formula: String { self == .hessian ? "diag(H)" : "diag(H)·sqrt(σ²+w²)" }
    }
    /// Shrinkage of H toward its diagonal before damping: every off-diagonal entry is multiplied by
    /// (1 - hessianShrink). 0 is GPTQ (AutoGPTQ); 1 leaves a diagonal H, on which GPTQ's error feedback
    /// vanishes and each weight is rounded to nearest (importance-weighted with `scaleSearch`). The usual
    /// covariance estimator when samples are few per dimension. Not AutoGPTQ (0 by default).
    public var hessianShrink: Float = 0
    public var quantizer: QuantizerConfig
    /// Precision of the Cholesky step (see `HinvPrecision`).
    public var hinvPrecision: HinvPrecision = .mixed
    /// Threads for the column loop (rows are split; results do not depend on it). BLAS/LAPACK
    /// threading is OpenBLAS's own (OPENBLAS_NUM_THREADS).
    public var threads: Int = 1

    public init(quantizer: QuantizerConfig, blockSize: Int = 128, percDamp: Float = 0.01,
                groupSize: Int = 128, actOrder: Bool = false, staticGroups: Bool = false) {
        self.quantizer = quantizer; self.blockSize = blockSize; self.percDamp = percDamp
        self.groupSize = groupSize; self.actOrder = actOrder; self.staticGroups = staticGroups
    }

    func validate(columns: Int) throws {
        guard blockSize > 0 else { throw QuantError.invalidSetting("blockSize must be positive, got \(blockSize)") }
        guard groupSize == -1 || groupSize > 0 else {
            throw QuantError.invalidSetting("groupSize must be positive or -1, got \(groupSize)")
        }
        guard percDamp.isFinite && percDamp >= 0 else {
            throw QuantError.invalidSetting("percDamp must be finite and >= 0, got \(percDamp)")
        }
        guard hessianShrink.isFinite && hessianShrink >= 0 && hessianShrink <= 1 else {
            throw QuantError.invalidSetting("hessianShrink must be in 0...1, got \(hessianShrink)")
        }
        if scaleSearch {
            guard staticGroups && groupSize != -1 && quantizer.symmetric && !quantizer.minOffset else {
                throw QuantError.invalidSetting("scale search needs static groups on a symmetric grid")
            }
        }
    }
}

/// The result of quantizing one [rows = out, cols = in] weight, in AutoGPTQ's conventions.
public struct QuantizedWeight: Sendable {
    public let rows: Int      // out features
    public let columns: Int   // in features
    /// [rows, columns] fake-quantized weight (what `fasterquant` writes into `layer.weight`), original
    /// column order.
    public var q: [Float]
    /// [rows, columns] integer code of every weight, 0...maxq: q = scale[:, gIdx] * (codes - zero[:, gIdx]),
    /// or (scale·codes) + zero with `QuantizerConfig.minOffset` (zero is then the Q4_1 offset).
    public var codes: [UInt8]
    /// [rows, groups] scales, in the order `fasterquant` created the groups.
    public var scale: [Float]
    /// [rows, groups] float zero points (8 for sym 4-bit; not the packed zero-1); the float offset
    /// (group minimum) with `QuantizerConfig.minOffset`.
    public var zero: [Float]
    public let groups: Int
    /// [columns] group of every original column (`g_idx`).
    public var gIdx: [Int32]
    /// Σ (w-q)² / d² / 2 over all weights (float64 sum of float32 terms), d = diag of the upper
    /// Cholesky factor of the damped H⁻¹. 0 for RTN.
    public var lossSum: Double
    /// Wall-clock seconds per stage (for progress reports and benchmarks; not part of the result).
    public var timings = GPTQTimings()

    /// The number `fasterquant` logs: `sum(Losses) / nsamples`.
    public func avgLoss(nsamples: Int) -> Double { lossSum / Double(nsamples) }
}

/// Where `fasterquant` spent its time, in seconds.
public struct GPTQTimings: Sendable, Equatable {
    /// Dead columns, static groups, permutation, damping, the inverse-Hessian factor.
    public var prepare: Double = 0
    /// The column-by-column quantization with in-block error feedback.
    public var columnLoop: Double = 0
    /// The trailing-block updates (sgemm).
    public var trailingUpdate: Double = 0
}

/// GPTQ as AutoGPTQ implements it (`GPTQ.fasterquant`, SPEC §5.3), operation for operation in float32.
///
/// Where results can differ from torch: the Cholesky factorisations (LAPACK here, MKL in torch) and the
/// trailing-block GEMM round differently in the last bits; a code may then flip where a value sits
/// within ~1e-6 of a rounding boundary. Everything else (quantizer, the in-block rank-1 updates, the
/// error division) performs the same float32 operations in the same order as torch.
public enum GPTQ {
    /// Quantize `weight` [rows, columns] (row-major, float32) given the Hessian `hessian`
    /// [columns, columns] (from `Hessian`). Both are working copies that fasterquant updates in place:
    /// pass them with `consume` (or `Hessian.takeMatrix()`) when the caller is done with them, and no
    /// copy is made (at real size, 660 MB of fresh pages, which are slow to touch on this machine kind).
    public static func fasterquant(weight: consuming [Float], rows: Int, columns: Int, hessian: consuming [Float],
                                   options: GPTQOptions) throws -> QuantizedWeight {
        try options.validate(columns: columns)
        guard rows > 0 && columns > 0 else { throw QuantError.invalidSetting("empty weight [\(rows), \(columns)]") }
        guard weight.count == rows * columns else {
            throw QuantError.shapeMismatch(what: "weight [\(rows), \(columns)]", expected: rows * columns, actual: weight.count)
        }
        guard hessian.count == columns * columns else {
            throw QuantError.shapeMismatch(what: "Hessian [\(columns), \(columns)]", expected: columns * columns, actual: hessian.count)
        }
        if let bad = weight.firstIndex(where: { !$0.isFinite }) { throw QuantError.nonFinite(what: "weight", index: bad) }
        if let bad = hessian.firstIndex(where: { !$0.isFinite }) { throw QuantError.nonFinite(what: "Hessian", index: bad) }

        var timings = GPTQTimings()
        var clock = Stopwatch()
        let quantizer = Quantizer(options.quantizer)
        let maxq = options.quantizer.maxq
        let n = columns
        var W = consume weight  // [rows, n]
        var H = consume hessian // [n, n]

        // `if not quantizer.ready(): find_params(W)`: full-row params on the weight as given (before
        // dead columns are zeroed); used only when groupSize == -1.
        let fullRow: QuantParams = W.withUnsafeBufferPointer {
            quantizer.findParams($0.baseAddress!, rows: rows, rowStride: n, colStart: 0, colCount: n)
        }

        // Dead inputs: H[i,i] = 1, W[:, i] = 0.
        for i in 0..<n where H[i * n + i] == 0 {
            H[i * n + i] = 1
            for r in 0..<rows { W[r * n + i] = 0 }
        }

        let gs = options.groupSize
        let grouped = gs != -1
        // Static groups: params of every group on the (dead-zeroed) original W, in original order.
        var staticParams: [QuantParams] = []
        if grouped && options.staticGroups {
            W.withUnsafeBufferPointer { w in
                for g in stride(from: 0, to: n, by: gs) {
                    staticParams.append(quantizer.findParams(w.baseAddress!, rows: rows, rowStride: n,
                                                             colStart: g, colCount: min(gs, n - g)))
                }
            }
            if options.scaleSearch {
                // Groups are independent: split them across the threads (same result for any count).
                let diag = (0..<n).map { H[$0 * n + $0] }
                // llama.cpp's weighting: each row's mean square weight (of the original row, as there).
                let sigma2: [Float] = options.scaleWeights == .imatrix ? (0..<rows).map { r in
                    var s = 0.0
                    for c in 0..<n { s += Double(W[r * n + c]) * Double(W[r * n + c]) }
                    return Float(s / Double(n))
                } : []
                let groups = staticParams.count, threads = max(1, min(options.threads, groups))
                W.withUnsafeBufferPointer { w in
                diag.withUnsafeBufferPointer { d in
                sigma2.withUnsafeBufferPointer { s2 in
                staticParams.withUnsafeMutableBufferPointer { sp in
                    let (wp, dp, spp) = (w.baseAddress!, d.baseAddress!, sp.baseAddress!)
                    let s2p = s2.isEmpty ? nil : s2.baseAddress
                    DispatchQueue.concurrentPerform(iterations: threads) { t in
                        for k in stride(from: t, to: groups, by: threads) {
                            spp[k] = quantizer.searchScales(wp, rows: rows, rowStride: n, colStart: k * gs,
                                                            colCount: min(gs, n - k * gs), weights: dp + k * gs, base: spp[k],
                                                            rowSigma2: s2p)
                        }
                    }
                }}}}
            }
        }

        // Act-order: perm = argsort(diag(H), descending). torch's argsort is not stable; we break ties
        // by ascending index (the reference cases have no ties: cases.json diag_H_ties = 0).
        var perm = Array(0..<n)
        if options.actOrder {
            let diag = (0..<n).map { H[$0 * n + $0] }
            perm.sort { diag[$0] != diag[$1] ? diag[$0] > diag[$1] : $0 < $1 }
            var Wp = W, Hp = H
            for r in 0..<rows { for c in 0..<n { Wp[r * n + c] = W[r * n + perm[c]] } }
            for i in 0..<n { for j in 0..<n { Hp[i * n + j] = H[perm[i] * n + perm[j]] } }
            W = Wp; H = Hp
        }

        if options.hessianShrink > 0 {
            let keep = 1 - options.hessianShrink
            H.withUnsafeMutableBufferPointer { h in
                for i in 0..<n {
                    let row = h.baseAddress! + i * n
                    for j in 0..<n where j != i { row[j] *= keep }
                }
            }
        }

        // Relative damping: damp = percdamp * mean(diag(H)) in float32.
        var diagSum = 0.0
        for i in 0..<n { diagSum += Double(H[i * n + i]) }
        let damp = options.percDamp * (Float(diagSum) / Float(n))
        for i in 0..<n { H[i * n + i] += damp }

        try LinearAlgebra.upperCholeskyOfInverse(&H, n: n, precision: options.hinvPrecision)
        let Hinv = H  // [n, n] upper triangular
        timings.prepare = clock.lap()

        var Q = [Float](repeating: 0, count: rows * n)
        var codes = [UInt8](repeating: 0, count: rows * n)
        var groupParams: [QuantParams] = []   // in creation order (the returned scale/zero)
        var lossSum = 0.0
        let bs = options.blockSize
        var err1 = [Float](repeating: 0, count: rows * min(bs, n))  // [rows, count]

        for i1 in stride(from: 0, to: n, by: bs) {
            let i2 = min(i1 + bs, n), count = i2 - i1
            // Which params quantize each column of the block (index into `blockParams`).
            var blockParams: [QuantParams] = []
            var paramOf = [Int](repeating: 0, count: count)
            for i in 0..<count {
                let col = i1 + i
                if !grouped {
                    if blockParams.isEmpty { blockParams.append(fullRow) }
                    paramOf[i] = 0
                    continue
                }
                if options.staticGroups {
                    let idx = options.actOrder ? perm[col] : col
                    blockParams.append(staticParams[idx / gs]); paramOf[i] = blockParams.count - 1
                } else {
                    if col % gs == 0 {
                        // find_params(W[:, col:col+gs]) reads W as left by earlier BLOCKS: torch's
                        // in-block updates go to W1, a copy. Computing every group of this block here,
                        // before the row sweep updates the block in place, reads exactly that state
                        // (matters when groupSize < blockSize or they are not aligned).
                        let p = W.withUnsafeBufferPointer {
                            quantizer.findParams($0.baseAddress!, rows: rows, rowStride: n,
                                                 colStart: col, colCount: min(gs, n - col))
                        }
                        blockParams.append(p); groupParams.append(p)
                    } else if blockParams.isEmpty {
                        // Group started in an earlier block (groupSize > blockSize).
                        blockParams.append(groupParams[groupParams.count - 1])
                    }
                    paramOf[i] = blockParams.count - 1
                }
            }

            // Flatten to [param, row] so the hot loop does no reference counting.
            var pScale = [Float](repeating: 0, count: blockParams.count * rows), pZero = pScale
            for (k, p) in blockParams.enumerated() {
                for r in 0..<rows { pScale[k * rows + r] = p.scale[r]; pZero[k * rows + r] = p.zero[r] }
            }
            let paramBase = paramOf.map { $0 * rows }

            W.withUnsafeMutableBufferPointer { wAll in
            Hinv.withUnsafeBufferPointer { hinv in
            Q.withUnsafeMutableBufferPointer { qAll in
            codes.withUnsafeMutableBufferPointer { cAll in
            err1.withUnsafeMutableBufferPointer { e1 in
            pScale.withUnsafeBufferPointer { ps in
            pZero.withUnsafeBufferPointer { pz in
            paramBase.withUnsafeBufferPointer { pb in
                let h = hinv.baseAddress!
                let sweep = BlockSweep(w: wAll.baseAddress!, hinv: h, q: qAll.baseAddress!, codes: cAll.baseAddress!,
                                       err: e1.baseAddress!, scale: ps.baseAddress!, zero: pz.baseAddress!,
                                       paramBase: pb.baseAddress!, n: n, rows: rows, i1: i1, count: count, maxq: maxq,
                                       minOffset: options.quantizer.minOffset)
                let threads = max(1, min(options.threads, rows / 64))
                var blockLoss = 0.0
                if threads == 1 {
                    blockLoss = sweep.run(rows: 0..<rows)
                } else {
                    let chunk = (rows + threads - 1) / threads
                    let partial = UnsafeMutableBufferPointer<Double>.allocate(capacity: threads)
                    defer { partial.deallocate() }
                    DispatchQueue.concurrentPerform(iterations: threads) { t in
                        partial[t] = sweep.run(rows: (t * chunk)..<min(rows, (t + 1) * chunk))
                    }
                    for t in 0..<threads { blockLoss += partial[t] }
                }
                lossSum += blockLoss
                timings.columnLoop += clock.lap()
                // W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
                if i2 < n {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(n - i2), Int32(count),
                                -1, e1.baseAddress, Int32(count), h + i1 * n + i2, Int32(n),
                                1, wAll.baseAddress! + i2, Int32(n))
                }
                timings.trailingUpdate += clock.lap()
            }}}}}}}}
        }

        // g_idx along the processed (possibly permuted) columns, then back to the original order.
        let g = grouped ? gs : n
        var gIdx = [Int32](repeating: 0, count: n)
        for k in 0..<n { gIdx[k] = Int32((options.staticGroups && options.actOrder && grouped ? perm[k] : k) / g) }
        // Static groups are returned in ORIGINAL group order (g_idx = perm[c] // gs points into them);
        // the reference cases confirm this for act-order + static groups.
        if grouped && options.staticGroups { groupParams = staticParams }
        if groupParams.isEmpty { groupParams.append(fullRow) }
        if options.actOrder {
            var Qo = Q, Co = codes, Go = gIdx
            for k in 0..<n {
                let o = perm[k]
                Go[o] = gIdx[k]
                for r in 0..<rows { Qo[r * n + o] = Q[r * n + k]; Co[r * n + o] = codes[r * n + k] }
            }
            Q = Qo; codes = Co; gIdx = Go
        }
        let ng = groupParams.count
        var scale = [Float](repeating: 0, count: rows * ng), zero = scale
        for (k, p) in groupParams.enumerated() {
            for r in 0..<rows { scale[r * ng + k] = p.scale[r]; zero[r * ng + k] = p.zero[r] }
        }
        var result = QuantizedWeight(rows: rows, columns: n, q: Q, codes: codes, scale: scale, zero: zero,
                                     groups: ng, gIdx: gIdx, lossSum: lossSum)
        timings.prepare += clock.lap()
        result.timings = timings
        return result
    }
}

/// The column-by-column part of one block, for a range of rows (rows are independent inside a
/// block, so ranges can run on different threads with identical results).
struct BlockSweep: @unchecked Sendable {
    let w: UnsafeMutablePointer<Float>        // W [rows, n]; the block's columns are W1, updated in place
    let hinv: UnsafePointer<Float>            // [n, n] upper factor of H⁻¹
    let q: UnsafeMutablePointer<Float>        // Q [rows, n]
    let codes: UnsafeMutablePointer<UInt8>    // [rows, n]
    let err: UnsafeMutablePointer<Float>      // Err1 [rows, count]
    let scale: UnsafePointer<Float>           // [params, rows]
    let zero: UnsafePointer<Float>            // [params, rows]
    let paramBase: UnsafePointer<Int>         // [count] param index * rows, per block column
    let n: Int, rows: Int, i1: Int, count: Int
    let maxq: Float
    let minOffset: Bool  // QuantizerConfig.minOffset: zero holds the Q4_1 offset

    /// Returns Σ (w-q)²/d²/2 over the rows' block entries.
    func run(rows range: Range<Int>) -> Double {
        var loss = 0.0
        for r in range {
            let w1 = w + r * n + i1
            let er = err + r * count
            for i in 0..<count {
                let col = i1 &+ i
                let wv0 = w1[i]
                let d = hinv[col * n + col]
                let halfInvD2 = 0.5 / (Double(d) * Double(d))  // loss only (compared with a tolerance)
                let (qv, c) = Quantizer.quantize(wv0, scale: scale[paramBase[i] + r], zeroOrOffset: zero[paramBase[i] + r],
                                                 maxq: maxq, minOffset: minOffset)
                q[r * n + col] = qv
                codes[r * n + col] = UInt8(c)
                let diff = wv0 - qv
                loss += Double(diff * diff) * halfInvD2
                let e = diff / d
                er[i] = e
                // W1[:, i:] -= err ⊗ Hinv[col, i1+i : i2] as torch does it: the product is rounded,
                // then subtracted (no FMA). Column i itself is not read again, so it is skipped.
                // 8 lanes at a time; every lane performs the same two roundings as the scalar tail.
                let hrow = hinv + col * n + i1
                var j = i &+ 1
                let ev = SIMD8<Float>(repeating: e)
                while j &+ 8 <= count {
                    let wv = UnsafeRawPointer(w1 + j).loadUnaligned(as: SIMD8<Float>.self)
                    let hv = UnsafeRawPointer(hrow + j).loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(w1 + j).storeBytes(of: wv - ev * hv, as: SIMD8<Float>.self)
                    j &+= 8
                }
                while j < count { w1[j] = w1[j] - e * hrow[j]; j &+= 1 }
            }
        }
        return loss
    }
}

/// Monotonic lap timer.
struct Stopwatch {
    private var last = DispatchTime.now().uptimeNanoseconds
    /// Seconds since the previous lap (or creation).
    mutating func lap() -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { last = now }
        return Double(now - last) / 1e9
    }
}

/// Round-to-nearest baseline (`--method rtn`): the same `Quantizer`, one `find_params` per group of
/// the original weight, no error feedback, no Hessian.
public enum RTN {
    /// `weight` [rows, columns] row-major; `groupSize` -1 = per channel.
    public static func quantize(weight: [Float], rows: Int, columns: Int, groupSize: Int,
                                quantizer config: QuantizerConfig) throws -> QuantizedWeight {
        guard rows > 0 && columns > 0 else { throw QuantError.invalidSetting("empty weight [\(rows), \(columns)]") }
        guard groupSize == -1 || groupSize > 0 else {
            throw QuantError.invalidSetting("groupSize must be positive or -1, got \(groupSize)")
        }
        guard weight.count == rows * columns else {
            throw QuantError.shapeMismatch(what: "weight [\(rows), \(columns)]", expected: rows * columns, actual: weight.count)
        }
        if let bad = weight.firstIndex(where: { !$0.isFinite }) { throw QuantError.nonFinite(what: "weight", index: bad) }
        let quantizer = Quantizer(config)
        let n = columns, gs = groupSize == -1 ? columns : groupSize
        let ng = (n + gs - 1) / gs
        var Q = [Float](repeating: 0, count: rows * n)
        var codes = [UInt8](repeating: 0, count: rows * n)
        var scale = [Float](repeating: 0, count: rows * ng), zero = scale
        weight.withUnsafeBufferPointer { w in
            for g in 0..<ng {
                let c0 = g * gs, cn = min(gs, n - c0)
                let p = quantizer.findParams(w.baseAddress!, rows: rows, rowStride: n, colStart: c0, colCount: cn)
                for r in 0..<rows {
                    scale[r * ng + g] = p.scale[r]; zero[r * ng + g] = p.zero[r]
                    for c in c0..<(c0 + cn) {
                        let (qv, code) = Quantizer.quantize(w[r * n + c], scale: p.scale[r], zeroOrOffset: p.zero[r],
                                                            maxq: config.maxq, minOffset: config.minOffset)
                        Q[r * n + c] = qv; codes[r * n + c] = UInt8(code)
                    }
                }
            }
        }
        let gIdx = (0..<n).map { Int32($0 / gs) }
        return QuantizedWeight(rows: rows, columns: n, q: Q, codes: codes, scale: scale, zero: zero,
                               groups: ng, gIdx: gIdx, lossSum: 0)
    }
}

extension QuantizedWeight {
    /// A result read back from disk (a resumed conversion's finished blocks); timings are zero.
    public init(rows: Int, columns: Int, q: [Float], codes: [UInt8], scale: [Float], zero: [Float], groups: Int, gIdx: [Int32],
                lossSum: Double) {
        self.rows = rows; self.columns = columns; self.q = q; self.codes = codes; self.scale = scale; self.zero = zero
        self.groups = groups; self.gIdx = gIdx; self.lossSum = lossSum
    }
}
