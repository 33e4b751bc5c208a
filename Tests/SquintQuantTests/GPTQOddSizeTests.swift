import XCTest
import SquintTensor
import SquintQuant

/// The fast fasterquant against the literal scalar port (`GPTQ.fasterquantReference`) on odd shapes,
/// group sizes that do not match the block size, dead columns, act-order and static groups. The two
/// differ only in how the trailing update is summed (sgemm vs a float64 dot product), so codes may
/// flip only at exact rounding ties: we require >= 99.9% and report the count.
final class GPTQOddSizeTests: XCTestCase {
    func randomProblem(rows: Int, cols: Int, tokens: Int, deadColumns: [Int] = [], seed: UInt64) throws -> (w: [Float], h: [Float]) {
        var rng = SplitMix64(seed: seed)
        let w = (0..<(rows * cols)).map { _ in rng.normal() * 0.05 }
        var x = (0..<(tokens * cols)).map { _ in rng.normal() }
        for t in 0..<tokens { for c in deadColumns { x[t * cols + c] = 0 } }
        var h = Hessian(columns: cols)
        try h.addBatch(x, tokens: tokens)
        return (w, h.matrix)
    }

    func check(rows: Int, cols: Int, groupSize: Int, blockSize: Int = 128, actOrder: Bool = false, staticGroups: Bool = false,
               sym: Bool = true, bits: Int = 4, dead: [Int] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        let (w, h) = try randomProblem(rows: rows, cols: cols, tokens: cols + 64, deadColumns: dead, seed: UInt64(rows * 1000 + cols))
        var opts = GPTQOptions(quantizer: try QuantizerConfig(bits: bits, symmetric: sym), blockSize: blockSize,
                               groupSize: groupSize, actOrder: actOrder, staticGroups: staticGroups)
        let label = "\(rows)x\(cols) g\(groupSize) b\(blockSize) act\(actOrder) static\(staticGroups) sym\(sym) bits\(bits) dead\(dead)"
        let ref = try GPTQ.fasterquantReference(weight: w, rows: rows, columns: cols, hessian: h, options: opts)
        for threads in [1, 3] {
            opts.threads = threads
            let fast = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: opts)
            XCTAssertEqual(fast.groups, ref.groups, label, file: file, line: line)
            XCTAssertEqual(fast.gIdx, ref.gIdx, label, file: file, line: line)
            let same = zip(fast.codes, ref.codes).filter { $0 == $1 }.count
            XCTAssertGreaterThanOrEqual(Double(same), 0.999 * Double(ref.codes.count), "\(label): \(same)/\(ref.codes.count)", file: file, line: line)
            if same == ref.codes.count {
                let maxQ = zip(fast.q, ref.q).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(maxQ, 1e-5, label, file: file, line: line)
                XCTAssertEqual(fast.lossSum, ref.lossSum, accuracy: 1e-4 * max(ref.lossSum, 1e-12), label, file: file, line: line)
            }
            // First group of each row reads W before any feedback: identical.
            for r in 0..<rows { XCTAssertEqual(fast.scale[r * fast.groups], ref.scale[r * ref.groups], label, file: file, line: line) }
            // q really is scale[:, g] * (code - zero[:, g]).
            for r in 0..<rows {
                for c in 0..<cols {
                    let g = Int(fast.gIdx[c])
                    XCTAssertEqual(fast.q[r * cols + c], fast.scale[r * fast.groups + g] * (Float(fast.codes[r * cols + c]) - fast.zero[r * fast.groups + g]),
                                   label, file: file, line: line)
                }
            }
            for c in dead { for r in 0..<rows { XCTAssertEqual(fast.q[r * cols + c], 0, "dead column", file: file, line: line) } }
        }
    }

    func testOddShapesAndGroupings() throws {
        try check(rows: 1, cols: 31, groupSize: 8, blockSize: 16)
        try check(rows: 33, cols: 129, groupSize: 32)                              // groups smaller than blocks
        try check(rows: 31, cols: 127, groupSize: 96, blockSize: 32)               // groups straddle blocks
        try check(rows: 17, cols: 257, groupSize: 256, blockSize: 64)              // groups larger than blocks
        try check(rows: 33, cols: 129, groupSize: -1)                              // per channel
        try check(rows: 33, cols: 129, groupSize: 32, actOrder: true)
        try check(rows: 33, cols: 129, groupSize: 32, actOrder: true, staticGroups: true)
        try check(rows: 33, cols: 129, groupSize: 32, staticGroups: true)
        try check(rows: 65, cols: 96, groupSize: 32, sym: false, dead: [0, 5, 95])
        try check(rows: 65, cols: 96, groupSize: 32, bits: 3)
        try check(rows: 129, cols: 64, groupSize: 16, actOrder: true, bits: 2)
        try check(rows: 9, cols: 40, groupSize: 8, bits: 8)
    }

    func testAllZeroWeightQuantizesToZero() throws {
        let (_, h) = try randomProblem(rows: 4, cols: 64, tokens: 100, seed: 7)
        let r = try GPTQ.fasterquant(weight: [Float](repeating: 0, count: 4 * 64), rows: 4, columns: 64, hessian: h,
                                     options: GPTQOptions(quantizer: try QuantizerConfig(), groupSize: 32))
        XCTAssertTrue(r.q.allSatisfy { $0 == 0 })
        XCTAssertTrue(r.codes.allSatisfy { $0 == 8 })
        XCTAssertTrue(r.scale.allSatisfy { $0 == Float(2) / 15 })
        XCTAssertEqual(r.lossSum, 0)
    }

    func testBadInputsThrow() throws {
        let opts = GPTQOptions(quantizer: try QuantizerConfig())
        XCTAssertThrowsError(try GPTQ.fasterquant(weight: [1, 2], rows: 1, columns: 3, hessian: [Float](repeating: 0, count: 9), options: opts))
        XCTAssertThrowsError(try GPTQ.fasterquant(weight: [1, .nan], rows: 1, columns: 2, hessian: [1, 0, 0, 1], options: opts)) { e in
            XCTAssertEqual(e as? QuantError, .nonFinite(what: "weight", index: 1))
        }
        // Indefinite H with no damping: LAPACK refuses, we throw (torch raises too).
        var o = opts; o.percDamp = 0
        XCTAssertThrowsError(try GPTQ.fasterquant(weight: [1, 2], rows: 1, columns: 2, hessian: [1, 2, 2, 1], options: o)) { e in
            guard case QuantError.notPositiveDefinite = e else { return XCTFail("\(e)") }
        }
        var h = Hessian(columns: 2)
        XCTAssertThrowsError(try h.addBatch([1, 2, 3], tokens: 2))
    }
}

/// `GPTQOptions.hessianShrink` (`convert --hessian-shrink`): H's off-diagonal entries scaled toward
/// zero before damping.
final class HessianShrinkTests: XCTestCase {
    static func problem(rows: Int, cols: Int, tokens: Int, seed: UInt64) throws -> (w: [Float], h: [Float]) {
        var rng = SplitMix64(seed: seed)
        let w = (0..<(rows * cols)).map { _ in rng.normal() * 0.05 }
        // Correlated inputs (a shared component per token), fewer tokens than columns: the regime
        // where the full H is a poor estimate and GPTQ's error feedback is strong.
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            let common = rng.normal()
            for c in 0..<cols { x[t * cols + c] = rng.normal() * Float(1 + c % 5) + 2 * common }
        }
        var h = Hessian(columns: cols)
        try h.addBatch(x, tokens: tokens)
        return (w, h.matrix)
    }

    /// With A = 1 the Hessian is diagonal, so the inverse factor is diagonal and the error feedback
    /// adds exact zeros: every code equals round-to-nearest's on the same static groups, bit for bit,
    /// with any act-order permutation and thread count.
    func testFullShrinkIsRoundToNearest() throws {
        let rows = 24, cols = 96
        let (w, h) = try Self.problem(rows: rows, cols: cols, tokens: 40, seed: 5)
        let qc = try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16)
        let rtn = try RTN.quantize(weight: w, rows: rows, columns: cols, groupSize: 32, quantizer: qc)
        for threads in [1, 2] {
            var o = GPTQOptions(quantizer: qc, blockSize: 32, groupSize: 32, actOrder: true, staticGroups: true)
            o.threads = threads
            o.hessianShrink = 1
            let full = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o)
            XCTAssertEqual(full.codes, rtn.codes)
            XCTAssertEqual(full.q, rtn.q)
            o.hessianShrink = 0
            let gptq = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o)
            XCTAssertNotEqual(gptq.codes, rtn.codes, "plain GPTQ feeds errors forward")
        }
    }

    /// A = 0.5 against the literal scalar port with the same shrink (which scales each off-diagonal
    /// entry in its own loop), and against a run on a Hessian shrunk by hand with A = 0: the option
    /// changes exactly the off-diagonal entries, before damping (damping reads only the diagonal).
    func testHalfShrinkMatchesTheReferenceAndAHandShrunkHessian() throws {
        let rows = 20, cols = 72
        let (w, h) = try Self.problem(rows: rows, cols: cols, tokens: 30, seed: 9)
        let qc = try QuantizerConfig(bits: 4, symmetric: true)
        var o = GPTQOptions(quantizer: qc, blockSize: 32, groupSize: 24, actOrder: true, staticGroups: false)
        o.hessianShrink = 0.5
        let shrunk = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o)
        let ref = try GPTQ.fasterquantReference(weight: w, rows: rows, columns: cols, hessian: h, options: o)
        let same = zip(shrunk.codes, ref.codes).filter { $0 == $1 }.count
        XCTAssertGreaterThanOrEqual(Double(same), 0.999 * Double(ref.codes.count), "\(same)/\(ref.codes.count)")
        var byHand = h
        for i in 0..<cols { for j in 0..<cols where j != i { byHand[i * cols + j] *= 0.5 } }
        o.hessianShrink = 0
        let manual = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: byHand, options: o)
        XCTAssertEqual(shrunk.codes, manual.codes)
        XCTAssertEqual(shrunk.lossSum, manual.lossSum)
        let plain = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o)
        XCTAssertNotEqual(plain.codes, shrunk.codes)
        for bad: Float in [-0.1, 1.5, .nan] {
            o.hessianShrink = bad
            XCTAssertThrowsError(try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o))
        }
    }
}

/// `GPTQOptions.scaleWeights = .imatrix`: each static group's scale is searched with llama.cpp's
/// weights diag(H)·sqrt(σ² + w²), σ² the mean square of the whole original row (not of the group).
final class ScaleWeightsTests: XCTestCase {
    func testImatrixWeightsUseTheWholeRowsMeanSquare() throws {
        let rows = 16, cols = 96, gs = 32
        let (w, h) = try HessianShrinkTests.problem(rows: rows, cols: cols, tokens: 40, seed: 21)
        var qc = try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16)
        qc.signedMaxScale = true
        var o = GPTQOptions(quantizer: qc, blockSize: 32, groupSize: gs, actOrder: false, staticGroups: true)
        o.scaleSearch = true
        let hessianWeighted = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o)
        o.scaleWeights = .imatrix
        let imatrixWeighted = try GPTQ.fasterquant(weight: w, rows: rows, columns: cols, hessian: h, options: o)
        let q = Quantizer(qc)
        let diag = (0..<cols).map { h[$0 * cols + $0] }
        var sigma2 = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var sum = 0.0
            for c in 0..<cols { sum += Double(w[r * cols + c]) * Double(w[r * cols + c]) }
            sigma2[r] = Float(sum / Double(cols))
        }
        let groups = cols / gs
        var differing = 0
        for g in 0..<groups {
            let base = q.findParams(w, rows: rows, rowStride: cols, colStart: g * gs, colCount: gs)
            let want = diag.withUnsafeBufferPointer { d in sigma2.withUnsafeBufferPointer { s2 in
                q.searchScales(w, rows: rows, rowStride: cols, colStart: g * gs, colCount: gs,
                               weights: d.baseAddress! + g * gs, base: base, rowSigma2: s2.baseAddress!)
            }}
            for r in 0..<rows {
                XCTAssertEqual(imatrixWeighted.scale[r * groups + g], want.scale[r], "row \(r) group \(g)")
                if imatrixWeighted.scale[r * groups + g] != hessianWeighted.scale[r * groups + g] { differing += 1 }
            }
        }
        XCTAssertGreaterThan(differing, 0, "the weighting changes some scales")
    }
}
