import Foundation
import XCTest
import CSquintKernels
import SquintFormats
import SquintTensor
import SquintModels

/// Fast kernels against their scalar references and against float64 ground truth, on the odd sizes
/// that exercise every vector tail (1, 31, 33, 127, 129).
final class KernelTests: XCTestCase {
    static let oddSizes = [1, 31, 33, 127, 129]

    /// Deterministic values in [-1, 1) (SplitMix64), so failures reproduce.
    func values(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    func bf16(_ x: [Float]) -> [UInt16] { var o = [UInt16](repeating: 0, count: x.count); sq_f32_to_bf16(x, &o, x.count); return o }
    func f16(_ x: [Float]) -> [UInt16] { var o = [UInt16](repeating: 0, count: x.count); sq_f32_to_f16(x, &o, x.count); return o }
    func widenBF16(_ x: [UInt16]) -> [Float] { var o = [Float](repeating: 0, count: x.count); sq_bf16_to_f32_ref(x, &o, x.count); return o }
    func widenF16(_ x: [UInt16]) -> [Float] { var o = [Float](repeating: 0, count: x.count); sq_f16_to_f32_ref(x, &o, x.count); return o }

    /// y = x Wᵀ + b in float64 (ground truth for every linear path).
    func linearF64(_ x: [Float], _ w: [Float], _ b: [Float]?, tokens: Int, out: Int, inp: Int) -> [Float] {
        var y = [Float](repeating: 0, count: tokens * out)
        for t in 0..<tokens { for o in 0..<out {
            var acc = 0.0
            for k in 0..<inp { acc += Double(x[t * inp + k]) * Double(w[o * inp + k]) }
            y[t * out + o] = Float(acc + Double(b?[o] ?? 0))
        } }
        return y
    }

    /// Dot products of n terms of size ~1 in float32: error grows like sqrt(n) * eps * |terms|.
    func dotTolerance(_ n: Int) -> Float { 4e-7 * Float(n).squareRoot() * 4 + 1e-6 }

    func testMatvecBF16AndF16MatchScalarReferenceAndFloat64() {
        for inp in Self.oddSizes { for out in Self.oddSizes {
            let w = values(out * inp, seed: UInt64(inp * 1000 + out)), x = values(inp, seed: 7), b = values(out, seed: 9)
            for isBF16 in [true, false] {
                let wb = isBF16 ? bf16(w) : f16(w)
                let wf = isBF16 ? widenBF16(wb) : widenF16(wb)
                var fast = [Float](repeating: .nan, count: out), ref = fast
                if isBF16 {
                    sq_matvec_bf16(wb, x, b, &fast, inp, 0, out); sq_matvec_bf16_ref(wb, x, b, &ref, inp, 0, out)
                } else {
                    sq_matvec_f16(wb, x, b, &fast, inp, 0, out); sq_matvec_f16_ref(wb, x, b, &ref, inp, 0, out)
                }
                let truth = linearF64(x, wf, b, tokens: 1, out: out, inp: inp)
                for o in 0..<out {
                    XCTAssertEqual(fast[o], truth[o], accuracy: dotTolerance(inp), "fast \(isBF16 ? "bf16" : "f16") \(out)x\(inp) row \(o)")
                    XCTAssertEqual(ref[o], truth[o], accuracy: dotTolerance(inp), "ref \(out)x\(inp) row \(o)")
                }
            }
        } }
    }

    func testMatvecF32MatchesScalarReferenceAndFloat64() {
        for inp in Self.oddSizes { for out in Self.oddSizes {
            let w = values(out * inp, seed: UInt64(inp * 1000 + out) ^ 0x5A), x = values(inp, seed: 17), b = values(out, seed: 19)
            var fast = [Float](repeating: .nan, count: out), ref = fast
            sq_matvec_f32(w, x, b, &fast, inp, 0, out); sq_matvec_f32_ref(w, x, b, &ref, inp, 0, out)
            let truth = linearF64(x, w, b, tokens: 1, out: out, inp: inp)
            for o in 0..<out {
                XCTAssertEqual(fast[o], truth[o], accuracy: dotTolerance(inp), "fast f32 \(out)x\(inp) row \(o)")
                XCTAssertEqual(ref[o], truth[o], accuracy: dotTolerance(inp), "ref f32 \(out)x\(inp) row \(o)")
            }
        } }
    }

    func testMatvecRowRangeWritesOnlyItsRows() {
        let inp = 33, out = 31
        let wb = bf16(values(out * inp, seed: 3)), x = values(inp, seed: 4)
        var y = [Float](repeating: -7, count: out)
        sq_matvec_bf16(wb, x, nil, &y, inp, 5, 20)
        XCTAssertEqual(Array(y[0..<5]), [Float](repeating: -7, count: 5))
        XCTAssertEqual(Array(y[20...]), [Float](repeating: -7, count: 11))
        XCTAssertFalse(y[5..<20].contains(-7))
    }

    func testLinearAllPathsMatchFloat64() throws {
        // tokens 1 (fused matvec), 5 (tiled sgemm); in 8193 forces several row tiles (tile = 2^20 floats).
        let shapes = [(out: 31, inp: 33), (out: 129, inp: 127), (out: 129, inp: 8193)]
        for (out, inp) in shapes { for dtype in [DType.bf16, .f16, .f32] { for tokens in [1, 5] { for layout in [Linear.Layout.outIn, .inOut] {
            let w = values(out * inp, seed: UInt64(out + inp)), x = values(tokens * inp, seed: 11), b = values(out, seed: 12)
            let file = InMemoryTensorFile()
            // Stored shape: [out, in] for .outIn, [in, out] for .inOut (the transpose of the same matrix).
            var stored = w
            if layout == .inOut { for o in 0..<out { for k in 0..<inp { stored[k * out + o] = w[o * inp + k] } } }
            let shape = layout == .outIn ? [out, inp] : [inp, out]
            let wEff: [Float]
            switch dtype {
            case .bf16:
                let h = bf16(stored)
                try file.add(name: "w", dtype: .bf16, shape: shape) { $0.copyBytes(from: h.withUnsafeBytes { Array($0) }) }
                wEff = widenBF16(bf16(w))
            case .f16:
                let h = f16(stored)
                try file.add(name: "w", dtype: .f16, shape: shape) { $0.copyBytes(from: h.withUnsafeBytes { Array($0) }) }
                wEff = widenF16(f16(w))
            default:
                try file.add(name: "w", shape: shape, f32: stored)
                wEff = w
            }
            let lin = Linear(weight: try file.view("w"), bias: b, layout: layout)
            XCTAssertEqual(lin.inFeatures, inp); XCTAssertEqual(lin.outFeatures, out)
            var y = [Float](repeating: .nan, count: tokens * out)
            lin.forward(x, tokens: tokens, &y, scratch: FloatBuffer())
            let truth = linearF64(x, wEff, b, tokens: tokens, out: out, inp: inp)
            let tol = dotTolerance(inp) * 4
            let worst = zip(y, truth).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, tol, "\(dtype) \(layout) tokens \(tokens) \(out)x\(inp)")
        } } } }
    }

    func testLayerNormFastMatchesReferenceAndFloat64() {
        for dim in Self.oddSizes {
            let rows = 3
            let x = values(rows * dim, seed: UInt64(dim)).map { $0 * 3 + 0.5 }, w = values(dim, seed: 1), b = values(dim, seed: 2)
            var fast = [Float](repeating: 0, count: rows * dim), ref = fast
            sq_layernorm(x, w, b, &fast, rows, dim, 1e-6)
            sq_layernorm_ref(x, w, b, &ref, rows, dim, 1e-6)
            for r in 0..<rows {
                let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
                let mean = row.reduce(0, +) / Double(dim)
                let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
                for k in 0..<dim {
                    let t = (row[k] - mean) / (v + 1e-6).squareRoot() * Double(w[k]) + Double(b[k])
                    XCTAssertEqual(Double(fast[r * dim + k]), t, accuracy: 2e-5 * (1 + abs(t)), "fast dim \(dim)")
                    XCTAssertEqual(Double(ref[r * dim + k]), t, accuracy: 2e-5 * (1 + abs(t)), "ref dim \(dim)")
                }
            }
        }
    }

    func testRMSNormFastMatchesReferenceAndFloat64() {
        for dim in Self.oddSizes {
            let x = values(2 * dim, seed: UInt64(dim) + 5).map { $0 * 4 }, w = values(dim, seed: 3).map { 1 + $0 * 0.2 }
            var fast = [Float](repeating: 0, count: 2 * dim), ref = fast
            sq_rmsnorm(x, w, &fast, 2, dim, 1e-6)
            sq_rmsnorm_ref(x, w, &ref, 2, dim, 1e-6)
            for r in 0..<2 {
                let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
                let rs = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(dim) + 1e-6).squareRoot()
                for k in 0..<dim {
                    let t = row[k] * rs * Double(w[k])
                    XCTAssertEqual(Double(fast[r * dim + k]), t, accuracy: 1e-5 * (1 + abs(t)))
                    XCTAssertEqual(Double(ref[r * dim + k]), t, accuracy: 1e-5 * (1 + abs(t)))
                }
            }
        }
    }

    func testRMSNormOfAllZeroRowIsZero() {
        let x = [Float](repeating: 0, count: 33), w = [Float](repeating: 1, count: 33)
        var y = [Float](repeating: .nan, count: 33)
        sq_rmsnorm(x, w, &y, 1, 33, 1e-6)
        XCTAssertEqual(y, x)
    }

    func testAddFastMatchesReference() {
        for n in Self.oddSizes {
            let x = values(n, seed: 1)
            var a = values(n, seed: 2), b = a
            sq_add(&a, x, n); sq_add_ref(&b, x, n)
            XCTAssertEqual(a, b)
        }
    }

    func testGeluIsExactErfForm() {
        // Values of 0.5 x (1 + erf(x/√2)) from float64; tanh-approximate GELU would miss by ~1e-3 at x = 1.5.
        let xs: [Float] = [-3, -1.5, -0.5, 0, 0.5, 1, 1.5, 3]
        var y = [Float](repeating: 0, count: xs.count)
        sq_gelu_erf(xs, &y, xs.count)
        for (x, v) in zip(xs, y) {
            let t = 0.5 * Double(x) * (1 + erf(Double(x) / 2.0.squareRoot()))
            XCTAssertEqual(Double(v), t, accuracy: 1e-6)
        }
    }

    func testSiluMulAndSoftmaxAgainstFloat64() {
        let a = values(129, seed: 1).map { $0 * 4 }, g = values(129, seed: 2).map { $0 * 6 }
        var y = [Float](repeating: 0, count: 129)
        sq_silu_mul(a, g, &y, 129)
        for i in 0..<129 {
            let t = Double(a[i]) * Double(g[i]) / (1 + exp(-Double(g[i])))
            XCTAssertEqual(Double(y[i]), t, accuracy: 1e-5 * (1 + abs(t)))
        }
        // Softmax over the first 31 of 33 columns; large values test the max subtraction.
        var s = values(2 * 33, seed: 3).map { $0 * 50 + 80 }
        let orig = s
        sq_softmax_rows(&s, 2, 31, 33)
        for r in 0..<2 {
            let row = orig[(r * 33)..<(r * 33 + 31)].map(Double.init)
            let m = row.max()!, z = row.map { exp($0 - m) }.reduce(0, +)
            for k in 0..<31 { XCTAssertEqual(Double(s[r * 33 + k]), exp(row[k] - m) / z, accuracy: 1e-6) }
            XCTAssertEqual(s[r * 33 + 31], orig[r * 33 + 31], "columns past `cols` are untouched")
        }
    }

    func testSoftmaxFastMatchesReferenceOnOddSizesAndExtremes() {
        for cols in Self.oddSizes {
            // Spread of 200 around the max: small terms underflow to 0 in both versions.
            var a = values(3 * (cols + 2), seed: UInt64(cols)).map { $0 * 100 }
            var b = a
            a[0] = 80; b[0] = 80   // large values: the max subtraction keeps exp in range
            sq_softmax_rows(&a, 3, cols, cols + 2)
            sq_softmax_rows_ref(&b, 3, cols, cols + 2)
            for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 4e-7 * max(b[i], 1e-30) + 1e-37, "cols \(cols) index \(i)") }
            for r in 0..<3 {
                let sum = a[(r * (cols + 2))..<(r * (cols + 2) + cols)].reduce(0, +)
                XCTAssertEqual(sum, 1, accuracy: 2e-6)
            }
        }
    }

    func testRotaryIsHalfSplitNeoX() {
        // One token, 2 heads of dim 8: pairs (j, j+4) rotate by angle θ_j.
        let dim = 8, half = 4
        var x = values(2 * dim, seed: 5)
        let orig = x
        let theta: [Float] = [0.3, -1.2, 2.0, 0.01]
        Kernels.rotary(&x, tokens: 1, heads: 2, dim: dim, stride: 2 * dim,
                       cos: theta.map { cos($0) }, sin: theta.map { sin($0) }, scale: [2])
        for h in 0..<2 { for j in 0..<half {
            let a = orig[h * dim + j], b = orig[h * dim + j + half]
            XCTAssertEqual(x[h * dim + j], 2 * (a * cos(theta[j]) - b * sin(theta[j])), accuracy: 1e-6)
            XCTAssertEqual(x[h * dim + j + half], 2 * (b * cos(theta[j]) + a * sin(theta[j])), accuracy: 1e-6)
        } }
    }

    func testBicubicResizeWeightsSumToOneIncludingClampedBorders() {
        // The four cubic weights (A = -0.75) sum to 1 and border taps are clamped, so a constant
        // grid stays constant everywhere. Torch parity itself is checked in ParityTests on the real
        // tables (vit_pos_embed_interp, resampler_pos_k).
        let constant = [Float](repeating: 2.5, count: 16 * 16 * 3)
        let out = Kernels.bicubicResize(constant, channels: 3, from: 16, to: 32)
        XCTAssertEqual(out.count, 32 * 32 * 3)
        for v in out { XCTAssertEqual(v, 2.5, accuracy: 1e-6) }
        XCTAssertEqual(Kernels.bicubicResize(constant, channels: 3, from: 16, to: 16), constant)
    }

    func testAttentionCausalMaskAndStridedHeads() {
        // 3 queries, 3 keys, 1 head of dim 2, scores divided by c; query i sees keys 0...i.
        let q: [Float] = [1, 0, 0, 1, 1, 1], k: [Float] = [1, 0, 0, 1, 2, 2], v: [Float] = [1, 10, 2, 20, 3, 30]
        var out = [Float](repeating: 0, count: 6)
        q.withUnsafeBufferPointer { qb in k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in
            Attention.forward(q: HeadLayout(base: qb.baseAddress!, rowStride: 2, headStep: 2),
                              k: HeadLayout(base: kb.baseAddress!, rowStride: 2, headStep: 2),
                              v: HeadLayout(base: vb.baseAddress!, rowStride: 2, headStep: 2),
                              nq: 3, nk: 3, heads: 1, headDim: 2, scaling: .divideScores(2), causalPast: 0,
                              out: &out, outStride: 2, scores: FloatBuffer(), qScratch: FloatBuffer())
        } } }
        XCTAssertEqual(out[0], 1, accuracy: 1e-6); XCTAssertEqual(out[1], 10, accuracy: 1e-6)
        let e0 = exp(0.0), e1 = exp(0.5)            // query 1: scores [0, 0.5]
        XCTAssertEqual(Double(out[2]), (1 * e0 + 2 * e1) / (e0 + e1), accuracy: 1e-6)
        let s = [0.5, 0.5, 2.0].map { exp($0) }      // query 2: scores [0.5, 0.5, 2]
        XCTAssertEqual(Double(out[4]), (s[0] + 2 * s[1] + 3 * s[2]) / s.reduce(0, +), accuracy: 1e-5)
    }

    func testNTKAlphaAndLognFollowTheOfficialFormulas() {
        XCTAssertEqual(QwenLM.ntkAlpha(sequenceLength: 292, trainedLength: 2048), 1)
        XCTAssertEqual(QwenLM.ntkAlpha(sequenceLength: 2048, trainedLength: 2048), 1)
        XCTAssertEqual(QwenLM.ntkAlpha(sequenceLength: 2049, trainedLength: 2048), 3)
        XCTAssertEqual(QwenLM.ntkAlpha(sequenceLength: 4096, trainedLength: 2048), 3)
        XCTAssertEqual(QwenLM.ntkAlpha(sequenceLength: 4097, trainedLength: 2048), 7)
        XCTAssertEqual(QwenLM.lognScale(position: 2047, trainedLength: 2048), 1)
        XCTAssertEqual(QwenLM.lognScale(position: 4095, trainedLength: 2048), Float(log(4096.0) / log(2048.0)))
    }
}
