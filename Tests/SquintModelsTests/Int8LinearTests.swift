import CSquintKernels
import Foundation
import SquintFormats
import SquintTensor
import XCTest

/// The 8-bit lm_head of `run --int8-activations` (`Int8Linear`, q8.c).
final class Int8LinearTests: XCTestCase {
    private func randomMatrix(_ n: Int, _ k: Int, seed: UInt64) -> [Float] {
        var r = SplitMix64(state: seed)
        var w = (0..<n * k).map { _ in r.normal() * 0.05 }
        if n > 2 { for j in 0..<k { w[k + j] = 0 } }          // an all-zero row: d = 0, codes 0
        return w
    }

    private func quantizedX(_ x: [Float]) -> (q: [Int8], d8: [Float]) {
        var q = [Int8](repeating: 0, count: x.count), d8 = [Float](repeating: 0, count: x.count / 64 * 8)
        var bsum = [Int32](repeating: 0, count: x.count / 32)
        sq_q8_quantize(x, Int64(x.count), &q, &d8, &bsum)
        return (q, d8)
    }

    /// Packing: per block of 32, d = max|w|/127 and q = round-half-even(w/d), stored in the
    /// pair-interleaved order of sq_q8_quantize (written here from the header's description).
    func testPackRowsLayoutAndRounding() {
        let n = 3, k = 128
        let w = randomMatrix(n, k, seed: 11)
        var q = [Int8](repeating: 99, count: n * k), d = [Float](repeating: .nan, count: n * k / 32)
        sq_q8_pack_rows(w, Int64(k), 0, Int64(n), &q, &d)
        for o in 0..<n {
            for b in 0..<k / 32 {
                let block = w[o * k + b * 32..<o * k + (b + 1) * 32]
                let db = block.map { abs($0) }.max()! / 127
                XCTAssertEqual(d[o * k / 32 + b], db)
                for j in 0..<32 {
                    let pos = 64 * (b / 2) + (j < 16 ? 0 : 32) + (b % 2) * 16 + j % 16
                    let want = db > 0 ? Int((w[o * k + b * 32 + j] / db).rounded(.toNearestOrEven)) : 0
                    XCTAssertEqual(Int(q[o * k + pos]), want, "row \(o) block \(b) j \(j)")
                }
            }
        }
    }

    /// Every level (scalar twin, AVX2, AVX-512 VNNI) gives the same bits, and the result equals the
    /// exact sum over blocks of d_w * d_x * (integer dot) within float rounding of the sums. Levels the
    /// CPU lacks report -1 and are skipped.
    func testLevelsAgreeBitForBitAndMatchTheIntegerFormula() {
        for (n, k, seed) in [(1, 64, 1), (7, 896, 2), (33, 576, 3), (5, 1536, 4)] {
            let w = randomMatrix(n, k, seed: UInt64(seed))
            var q = [Int8](repeating: 0, count: n * k), d = [Float](repeating: 0, count: n * k / 32)
            sq_q8_pack_rows(w, Int64(k), 0, Int64(n), &q, &d)
            var r = SplitMix64(state: 70 + UInt64(seed))
            let x = (0..<k).map { _ in r.normal() * 3 }
            let (xq, d8) = quantizedX(x)
            var results: [[Float]] = []
            for level in [SQ_Q4_SCALAR, SQ_Q4_AVX2, SQ_Q4_AVX512] {
                var y = [Float](repeating: .nan, count: n)
                if sq_q8_matvec_q8_level(q, d, Int64(k), xq, d8, &y, 0, Int64(n), Int32(level)) == 0 { results.append(y) }
            }
            XCTAssertGreaterThanOrEqual(results.count, 1)
            for y in results.dropFirst() { XCTAssertEqual(y.map(\.bitPattern), results[0].map(\.bitPattern), "n \(n) k \(k)") }
            for o in 0..<n {
                var exact = 0.0, mag = 0.0
                for b in 0..<k / 32 {
                    var dot = 0
                    for j in 0..<32 {
                        let pos = 64 * (b / 2) + (j < 16 ? 0 : 32) + (b % 2) * 16 + j % 16
                        dot += Int(q[o * k + pos]) * Int(xq[pos])
                    }
                    let s = Double(d[o * k / 32 + b]) * Double(d8[8 * (b / 2) + 4 * (b % 2)])
                    exact += s * Double(dot); mag += abs(s * Double(dot))
                }
                // k/64 FMAs per lane + 3 adds + one rounded scale product per term: relative 2^-24 each.
                let bound = mag * Double(k / 64 + 5) * 0x1p-24 + 1e-30
                XCTAssertLessThanOrEqual(abs(Double(results[0][o]) - exact), bound, "row \(o) n \(n) k \(k)")
            }
        }
    }

    /// Int8Linear's one-token product against the exact float product of the source F16 layer, within
    /// the stated per-element rounding bound |x| dw/2 + |w| dx/2 + dw dx/4 (+ float rounding); several
    /// tokens go through the source layer unchanged; 1 and 2 threads give the same bits.
    func testOneTokenWithinTheRoundingBoundAndPrefillUnchanged() throws {
        let n = 37, k = 192
        let w = randomMatrix(n, k, seed: 21)
        let file = InMemoryTensorFile()
        _ = try file.add(name: "w", shape: [n, k], f32: w)
        let dense = Linear(weight: try file.view("w"), bias: nil)
        XCTAssertTrue(Int8Linear.supports(dense))
        let saved = Threads.count
        defer { Threads.count = saved }
        var r = SplitMix64(state: 5)
        let x = (0..<2 * k).map { _ in r.normal() }
        var outs: [[Float]] = []
        for threads in [1, 2] {
            Threads.count = threads
            let layer = Int8Linear(dense)
            var y = [Float](repeating: .nan, count: n)
            layer.forward(x, tokens: 1, &y, scratch: FloatBuffer())
            outs.append(y)
            var y2 = [Float](repeating: .nan, count: 2 * n), ref2 = y2
            layer.forward(x, tokens: 2, &y2, scratch: FloatBuffer())
            dense.forward(x, tokens: 2, &ref2, scratch: FloatBuffer())
            XCTAssertEqual(y2.map(\.bitPattern), ref2.map(\.bitPattern))
        }
        XCTAssertEqual(outs[0].map(\.bitPattern), outs[1].map(\.bitPattern))
        for o in 0..<n {
            let (exact, bound) = int8ProductBound(w, row: o, Array(x[..<k]))     // the first token
            XCTAssertLessThanOrEqual(abs(Double(outs[0][o]) - exact), bound, "row \(o)")
        }
        var f = [Float](repeating: .nan, count: n)
        dense.forward(x, tokens: 1, &f, scratch: FloatBuffer())
        XCTAssertNotEqual(f.map(\.bitPattern), outs[0].map(\.bitPattern), "the one-token product must be the 8-bit one")
    }
}
