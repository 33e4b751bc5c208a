import Foundation
import XCTest
import SquintQuant
import SquintTensor

/// Quantizer edge cases, with expected values worked out by hand from AutoGPTQ's quantizer.py
/// formulas (SPEC §5.3), and the sub-steps it relies on.
final class QuantizerTests: XCTestCase {
    func params(_ x: [Float], sym: Bool, bits: Int = 4) throws -> QuantParams {
        let q = Quantizer(try QuantizerConfig(bits: bits, symmetric: sym))
        return x.withUnsafeBufferPointer { q.findParams($0.baseAddress!, rows: 1, rowStride: x.count, colStart: 0, colCount: x.count) }
    }

    func testAllZeroGroupGetsRangeMinusOneToOne() throws {
        // xmin = xmax = 0 -> [-1, 1]: scale 2/15; sym zero 8. Asym zero = round(1 / fl(2/15)): fl(2/15) is
        // 0.13333334 (rounded up), so the quotient is 7.4999996 and the zero is 7, not 8 (checked with
        // torch: torch.round(1 / (torch.tensor(2.)/15)) == 7).
        let sym = try params([0, 0, 0, 0], sym: true)
        XCTAssertEqual(sym.scale, [Float(2) / 15]); XCTAssertEqual(sym.zero, [8])
        let asym = try params([0, 0, 0], sym: false)
        XCTAssertEqual(asym.scale, [Float(2) / 15]); XCTAssertEqual(asym.zero, [7])
        // Every zero quantizes to 0 (code 8).
        let r = Quantizer.quantize(0, scale: sym.scale[0], zero: 8, maxq: 15)
        XCTAssertEqual(r.value, 0); XCTAssertEqual(r.code, 8)
    }

    func testSymmetricGroupWithoutNegativesKeepsXminZeroAndClipsAbove7Steps() throws {
        // rowmin 0.25 -> xmin = 0 (never made -xmax): scale = 1.5/15 = 0.1 in float32, zero 8.
        let p = try params([0.25, 1.5, 0.5], sym: true)
        XCTAssertEqual(p.scale, [Float(1.5) / 15]); XCTAssertEqual(p.zero, [8])
        // 1.5/0.1 = 15 -> 15 + 8 = 23, clamped to 15 -> value 7 * scale: the largest weight is clipped.
        let r = Quantizer.quantize(1.5, scale: p.scale[0], zero: 8, maxq: 15)
        XCTAssertEqual(r.code, 15)
        XCTAssertEqual(r.value, p.scale[0] * 7)
    }

    func testSymmetricUsesLargestMagnitude() throws {
        let p = try params([-3, 1], sym: true)
        XCTAssertEqual(p.scale, [Float(6) / 15]); XCTAssertEqual(p.zero, [8])
        // -3 / 0.4 = -7.5 -> round half even = -8 -> code 0, value -3.2.
        let r = Quantizer.quantize(-3, scale: p.scale[0], zero: 8, maxq: 15)
        XCTAssertEqual(r.code, 0); XCTAssertEqual(r.value, p.scale[0] * -8)
    }

    func testAsymmetricRangeAndZeroPoint() throws {
        // [-1, 2]: scale 3/15 = 0.2, zero = round(1/0.2) = 5.
        let p = try params([-1, 0.5, 2], sym: false)
        XCTAssertEqual(p.scale, [Float(3) / 15]); XCTAssertEqual(p.zero, [5])
        // All-positive asym group: xmin = 0 -> zero 0 (the value AutoGPTQ v1 packing cannot store).
        let pos = try params([0.5, 2], sym: false)
        XCTAssertEqual(pos.zero, [0]); XCTAssertEqual(pos.scale, [Float(2) / 15])
    }

    func testRoundingIsHalfToEvenLikeTorchRound() {
        for (v, e) in [(0.5, 0.0), (1.5, 2.0), (2.5, 2.0), (-0.5, -0.0), (-1.5, -2.0), (-2.5, -2.0), (7.4999995, 7.0), (1e7 + 1, 1e7 + 1)] as [(Float, Float)] {
            XCTAssertEqual(Quantizer.roundHalfEven(v), e, "\(v)")
            XCTAssertEqual(Quantizer.roundHalfEven(v), v.rounded(.toNearestOrEven), "\(v)")
        }
    }

    func testOtherBitWidths() throws {
        let p2 = try params([-1, 1], sym: true, bits: 2)
        XCTAssertEqual(p2.scale, [Float(2) / 3]); XCTAssertEqual(p2.zero, [2])
        let p3 = try params([-1, 1], sym: true, bits: 3)
        XCTAssertEqual(p3.scale, [Float(2) / 7]); XCTAssertEqual(p3.zero, [4])
        let p8 = try params([-1, 1], sym: false, bits: 8)
        XCTAssertEqual(p8.scale, [Float(2) / 255]); XCTAssertEqual(p8.zero, [(Float(1) / (Float(2) / 255)).rounded(.toNearestOrEven)])
        XCTAssertThrowsError(try QuantizerConfig(bits: 5))
    }

    func testPerTensorModeRepeatsOneRangeForEveryRow() throws {
        let q = Quantizer(try QuantizerConfig(bits: 4, symmetric: true, perChannel: false))
        let x: [Float] = [0.1, -0.2, 3, 0]  // 2 rows x 2 cols
        let p = x.withUnsafeBufferPointer { q.findParams($0.baseAddress!, rows: 2, rowStride: 2, colStart: 0, colCount: 2) }
        XCTAssertEqual(p.scale, [Float(6) / 15, Float(6) / 15])
    }
}

/// `Quantizer.searchScales` (GPTQ's `scaleSearch`, `convert --scale-search`): llama.cpp's
/// importance-weighted scale choice for a symmetric grid.
final class ScaleSearchTests: XCTestCase {
    func weightedError(_ x: [Float], _ h: [Float], _ s: Float) -> Double {
        zip(x, h).reduce(0.0) { e, p in
            let d = Double(p.0 - Quantizer.quantize(p.0, scale: s, zero: 8, maxq: 15).value)
            return e + Double(p.1) * d * d
        }
    }

    /// By hand: x = (0.5, 0.3). The signed-max scale is 0.5 / -8 = -0.0625 (0.3 lands on 0.3125).
    /// With the first weight's importance 0, the first candidate (t = -9: -0.0625·8/7.1 = -0.0704)
    /// gives 0.3 the code offset -4, whose least-squares scale 0.3 / -4 = -0.075 represents it exactly:
    /// error 0, and no later candidate is strictly better. With equal importance the codes (-8, -5)
    /// win: scale (0.5·-8 + 0.3·-5) / (64 + 25) = -5.5 / 89.
    func testHandWorkedGroup() throws {
        let q = Quantizer(try QuantizerConfig(bits: 4, symmetric: true))
        var c = try QuantizerConfig(bits: 4, symmetric: true); c.signedMaxScale = true
        let signed = Quantizer(c)
        let x: [Float] = [0.5, 0.3]
        let base = signed.findParams(x, rows: 1, rowStride: 2, colStart: 0, colCount: 2)
        XCTAssertEqual(base.scale, [-0.0625])
        let h0: [Float] = [0, 1], h1: [Float] = [1, 1]
        XCTAssertEqual(q.searchScales(x, rows: 1, rowStride: 2, colStart: 0, colCount: 2, weights: h0, base: base).scale, [-0.075])
        let s = q.searchScales(x, rows: 1, rowStride: 2, colStart: 0, colCount: 2, weights: h1, base: base).scale[0]
        XCTAssertEqual(s, Float((Double(Float(0.5)) * -8 + Double(Float(0.3)) * -5) / 89))
        XCTAssertLessThan(weightedError(x, h1, s), weightedError(x, h1, -0.0625))
    }

    /// On random groups (heavy-tailed weights, importances spanning four decades, float16 scales):
    /// the chosen scale is a float16, never has a larger weighted error than the signed-max scale it
    /// starts from, and is strictly better on most groups.
    func testNeverWorseThanTheMaxScaleAndUsuallyBetter() throws {
        var c = try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16); c.signedMaxScale = true
        let q = Quantizer(c)
        var rng = SplitMix64(seed: 11)
        let rows = 64, cols = 32
        let x = (0..<(rows * cols)).map { _ -> Float in
            let u = rng.unit() - 0.5
            return u * u * u * 8
        }
        let h = (0..<cols).map { _ in Float(pow(10, 4 * Double(rng.unit()) - 2)) }
        let base = q.findParams(x, rows: rows, rowStride: cols, colStart: 0, colCount: cols)
        let found = q.searchScales(x, rows: rows, rowStride: cols, colStart: 0, colCount: cols, weights: h, base: base)
        var better = 0
        for r in 0..<rows {
            let row = Array(x[(r * cols)..<((r + 1) * cols)])
            XCTAssertEqual(Float(Float16(found.scale[r])), found.scale[r])
            let e = weightedError(row, h, found.scale[r]), e0 = weightedError(row, h, base.scale[r])
            XCTAssertLessThanOrEqual(e, e0)
            if e < e0 { better += 1 }
        }
        XCTAssertGreaterThan(better, rows / 2)
        XCTAssertEqual(found.zero, base.zero)
    }
    /// llama.cpp's weighting (`rowSigma2`), by hand on the group above with equal importances: row 0
    /// has σ² = 0, so weight j counts |x_j| = (0.5, 0.3); the codes (-8, -5) still win and the
    /// least-squares scale becomes (0.5·0.5·-8 + 0.3·0.3·-5) / (0.5·64 + 0.3·25) = -2.45 / 39.5
    /// (diag(H) alone: -5.5 / 89). Row 1 (the same weights, σ² = 0.34) counts sqrt(0.34 + x_j²).
    func testImatrixWeightingByHand() throws {
        let q = Quantizer(try QuantizerConfig(bits: 4, symmetric: true))
        let x: [Float] = [0.5, 0.3, 0.5, 0.3], h: [Float] = [1, 1]
        var c = try QuantizerConfig(bits: 4, symmetric: true); c.signedMaxScale = true
        let base = Quantizer(c).findParams(x, rows: 2, rowStride: 2, colStart: 0, colCount: 2)
        XCTAssertEqual(base.scale, [-0.0625, -0.0625])
        let sigma2: [Float] = [0, 0.34]
        let s = q.searchScales(x, rows: 2, rowStride: 2, colStart: 0, colCount: 2, weights: h, base: base, rowSigma2: sigma2).scale
        let (a, b) = (Double(Float(0.5)), Double(Float(0.3)))
        XCTAssertEqual(s[0], Float((a * a * -8 + b * b * -5) / (a * 64 + b * 25)))
        let wa = Double((Float(0.34) + Float(0.5) * Float(0.5)).squareRoot())
        let wb = Double((Float(0.34) + Float(0.3) * Float(0.3)).squareRoot())
        XCTAssertEqual(s[1], Float((wa * a * -8 + wb * b * -5) / (wa * 64 + wb * 25)))
        let plain = q.searchScales(x, rows: 2, rowStride: 2, colStart: 0, colCount: 2, weights: h, base: base).scale
        XCTAssertEqual(plain, [Float((a * -8 + b * -5) / 89), Float((a * -8 + b * -5) / 89)])
    }
}
