/// A plain, literal port of AutoGPTQ's `fasterquant` (SPEC §5.3), kept beside the fast one so tests can
/// check the fast path's blocking, grouping and permutation logic on odd sizes. Slow: O(rows·cols²)
/// scalar loops, no BLAS except the shared LAPACK factorisation. Not for production use.
extension GPTQ {
    public static func fasterquantReference(weight: [Float], rows: Int, columns n: Int, hessian: [Float],
                                            options: GPTQOptions) throws -> QuantizedWeight {
        try options.validate(columns: n)
        precondition(weight.count == rows * n && hessian.count == n * n)
        let quantizer = Quantizer(options.quantizer)
        let maxq = options.quantizer.maxq
        var W = weight, H = hessian
        func at(_ r: Int, _ c: Int) -> Int { r * n + c }
        let full = quantizer.findParams(W, rows: rows, rowStride: n, colStart: 0, colCount: n)
        for i in 0..<n where H[at(i, i)] == 0 { H[at(i, i)] = 1; for r in 0..<rows { W[at(r, i)] = 0 } }
        let gs = options.groupSize
        var groups: [QuantParams] = []
        if gs != -1 && options.staticGroups {
            for g in stride(from: 0, to: n, by: gs) {
                groups.append(quantizer.findParams(W, rows: rows, rowStride: n, colStart: g, colCount: min(gs, n - g)))
            }
        }
        var perm = Array(0..<n)
        if options.actOrder {
            let diag = (0..<n).map { H[at($0, $0)] }
            perm.sort { diag[$0] != diag[$1] ? diag[$0] > diag[$1] : $0 < $1 }
            W = (0..<(rows * n)).map { W[at($0 / n, perm[$0 % n])] }
            H = (0..<(n * n)).map { H[at(perm[$0 / n], perm[$0 % n])] }
        }
        for i in 0..<n { for j in 0..<n where j != i { H[at(i, j)] *= 1 - options.hessianShrink } }
        var s = 0.0
        for i in 0..<n { s += Double(H[at(i, i)]) }
        let damp = options.percDamp * (Float(s) / Float(n))
        for i in 0..<n { H[at(i, i)] += damp }
        try LinearAlgebra.upperCholeskyOfInverse(&H, n: n, precision: options.hinvPrecision)
        let Hinv = H

        var Q = [Float](repeating: 0, count: rows * n)
        var codes = [UInt8](repeating: 0, count: rows * n)
        var current = full
        var created: [QuantParams] = []
        var loss = 0.0
        for i1 in stride(from: 0, to: n, by: options.blockSize) {
            let i2 = min(i1 + options.blockSize, n), count = i2 - i1
            var W1 = [Float](repeating: 0, count: rows * count)        // W[:, i1:i2].clone()
            for r in 0..<rows { for i in 0..<count { W1[r * count + i] = W[at(r, i1 + i)] } }
            var Err1 = [Float](repeating: 0, count: rows * count)
            for i in 0..<count {
                let col = i1 + i
                if gs != -1 {
                    if !options.staticGroups {
                        if col % gs == 0 {
                            current = quantizer.findParams(W, rows: rows, rowStride: n, colStart: col, colCount: min(gs, n - col))
                            created.append(current)
                        }
                    } else {
                        current = groups[(options.actOrder ? perm[col] : col) / gs]
                    }
                }
                let d = Hinv[at(col, col)]
                for r in 0..<rows {
                    let w = W1[r * count + i]
                    let (qv, c) = Quantizer.quantize(w, scale: current.scale[r], zeroOrOffset: current.zero[r], maxq: maxq,
                                                     minOffset: options.quantizer.minOffset)
                    Q[at(r, col)] = qv; codes[at(r, col)] = UInt8(c)
                    loss += Double((w - qv) * (w - qv) / (d * d) / 2)
                    let err = (w - qv) / d
                    for j in i..<count {
                        let prod = err * Hinv[at(col, i1 + j)]
                        W1[r * count + j] = W1[r * count + j] - prod
                    }
                    Err1[r * count + i] = err
                }
            }
            // W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:], each dot product in float64 then rounded.
            for r in 0..<rows {
                for c in i2..<n {
                    var acc = 0.0
                    for k in 0..<count { acc += Double(Err1[r * count + k]) * Double(Hinv[at(i1 + k, c)]) }
                    W[at(r, c)] = W[at(r, c)] - Float(acc)
                }
            }
        }
        let g = gs == -1 ? n : gs
        var gIdx = (0..<n).map { Int32((options.staticGroups && options.actOrder && gs != -1 ? perm[$0] : $0) / g) }
        if options.actOrder {
            var inv = [Int](repeating: 0, count: n)
            for k in 0..<n { inv[perm[k]] = k }
            Q = (0..<(rows * n)).map { Q[at($0 / n, inv[$0 % n])] }
            codes = (0..<(rows * n)).map { codes[at($0 / n, inv[$0 % n])] }
            gIdx = (0..<n).map { gIdx[inv[$0]] }
        }
        if gs != -1 && options.staticGroups { created = groups }
        if created.isEmpty { created = [full] }
        let ng = created.count
        var scale = [Float](repeating: 0, count: rows * ng), zero = scale
        for (k, p) in created.enumerated() { for r in 0..<rows { scale[r * ng + k] = p.scale[r]; zero[r * ng + k] = p.zero[r] } }
        return QuantizedWeight(rows: rows, columns: n, q: Q, codes: codes, scale: scale, zero: zero,
                               groups: ng, gIdx: gIdx, lossSum: loss)
    }
}

extension Quantizer {
    /// `findParams` on a Swift array (used by the reference implementation).
    func findParams(_ x: [Float], rows: Int, rowStride: Int, colStart: Int, colCount: Int) -> QuantParams {
        x.withUnsafeBufferPointer { findParams($0.baseAddress!, rows: rows, rowStride: rowStride, colStart: colStart, colCount: colCount) }
    }
}
