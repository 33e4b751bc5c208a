import CSquintKernels
import Foundation
import SquintFormats
import SquintTensor
import TestSupport
import XCTest


/// Builds SQ4 records in memory (codes in SQ4 block order via `Int4Pack`, the test's own packer).
enum Int4Pack {
    /// Packs codes [out][in] (stored input order) into SQ4 rows (Formats/SQUINT_INT4.md §4.1).
    static func pack(_ q: [[UInt8]]) -> [UInt8] {
        let inF = q[0].count
        var b = [UInt8](repeating: 0, count: q.count * inF / 2)
        for (o, row) in q.enumerated() {
            for k in 0..<inF { b[o * inF / 2 + (k / 32) * 16 + (k % 16)] |= row[k] << ((k % 32) < 16 ? 0 : 4) }
        }
        return b
    }

    static func record(out: Int, inF: Int, groupSize g: Int, symmetric: Bool, actOrder: Bool, seed: UInt64,
                       zeroGroups: Bool = false) throws -> (QuantizedLinearRecord, q: [[UInt8]]) {
        var r = SplitMix64(state: seed)
        let groups = inF / g
        var q = (0..<out).map { _ in (0..<inF).map { _ in UInt8(r.below(16)) } }
        var zeros = (0..<out * groups).map { _ in UInt8(r.below(17)) }            // 0...16
        var scalesF = (0..<out * groups).map { _ in Float(r.unit() * 0.05 + 0.001) }
        if zeroGroups {
            // Every other group of every row is all-zero: codes equal the zero point (or the scale is 0).
            for o in 0..<out {
                for gi in stride(from: 0, to: groups, by: 2) {
                    let z = symmetric ? 8 : Int(min(zeros[o * groups + gi], 15))
                    zeros[o * groups + gi] = UInt8(z)
                    for k in gi * g..<(gi + 1) * g { q[o][k] = UInt8(z) }
                }
                if groups > 1 { scalesF[o * groups + 1] = 0 }
            }
        }
        var scales = [UInt16](repeating: 0, count: scalesF.count)
        sq_f32_to_f16(scalesF, &scales, scalesF.count)
        let spec = QuantizedLinearSpec(name: "m", outFeatures: out, inFeatures: inF, groupSize: g, symmetric: symmetric,
                                       actOrder: actOrder, hasBias: false)
        var perm: [Int32] = Array(0..<Int32(inF))
        if actOrder { for i in stride(from: inF - 1, to: 0, by: -1) { perm.swapAt(i, r.below(i + 1)) } }
        let rec = try QuantizedLinearRecord(
            spec: spec, codes: OwnedBytes.view(name: spec.codesName, dtype: .u8, shape: [out, inF / 2], pack(q)),
            scales: OwnedBytes.view(name: spec.scalesName, dtype: .f16, shape: [out, groups], scales),
            zeros: symmetric ? nil : OwnedBytes.view(name: spec.zerosName, dtype: .u8, shape: [out, groups], zeros),
            perm: actOrder ? OwnedBytes.view(name: spec.permName, dtype: .i32, shape: [inF], perm) : nil,
            bias: nil, path: "<test>")
        return (rec, q)
    }
}

final class QuantKernelTests: XCTestCase {
    /// Relative tolerance of the float32 decode kernel against the double-accumulating ref, as a
    /// fraction of sum_k s*(q+z)*|x| (the magnitude of the two partial sums the kernel subtracts:
    /// s*sum(q*x) and s*z*sum(x)). float32 has 6e-8 relative precision; sums of up to 11008 terms
    /// in 8 lanes lose a few more bits, so 1e-5 leaves margin without hiding a wrong index.
    static let matvecRelTolerance: Float = 1e-5

    static let shapes: [(out: Int, groupSize: Int, groups: Int)] = {
        var s: [(Int, Int, Int)] = []
        for out in [1, 31, 33, 127, 129] { for g in [32, 64, 128] { s.append((out, g, out % 3 + 1)) } }
        return s
    }()

    private func matrix(_ rec: QuantizedLinearRecord, _ scales: [Float], _ body: (UnsafePointer<sq_q4_matrix>) -> Void) {
        scales.withUnsafeBufferPointer { s in
            var m = sq_q4_matrix(codes: rec.codes.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), scales: s.baseAddress!,
                                 zeros: rec.zeros.map { $0.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) },
                                 out: Int64(rec.spec.outFeatures), in: Int64(rec.spec.inFeatures), group_size: Int64(rec.spec.groupSize))
            body(&m)
        }
    }

    private func widenedScales(_ rec: QuantizedLinearRecord) -> [Float] {
        var s = [Float](repeating: 0, count: rec.spec.outFeatures * rec.spec.groups)
        rec.scales.bytes.withMemoryRebound(to: UInt16.self) { sq_f16_to_f32_ref($0.baseAddress!, &s, s.count) }
        return s
    }

    /// The dequantisation kernels (fast and ref) equal the spec formula computed here from the codes
    /// the test packed itself: W = float(scale) * float(q - z), bit for bit.
    func testDequantFastAndRefEqualTheSpecFormulaBitForBit() throws {
        for (i, sh) in Self.shapes.enumerated() {
            for sym in [true, false] {
                let inF = sh.groupSize * sh.groups
                let (rec, q) = try Int4Pack.record(out: sh.out, inF: inF, groupSize: sh.groupSize, symmetric: sym, actOrder: false,
                                                   seed: UInt64(i * 2 + (sym ? 1 : 0)), zeroGroups: i % 2 == 0)
                let s = widenedScales(rec)
                var fast = [Float](repeating: .nan, count: sh.out * inF), ref = fast
                matrix(rec, s) { m in
                    sq_q4_dequant_rows(m, 0, Int64(sh.out), &fast)
                    sq_q4_dequant_rows_ref(m, 0, Int64(sh.out), &ref)
                }
                for o in 0..<sh.out {
                    for k in 0..<inF {
                        let gi = k / sh.groupSize
                        let z = rec.zeros.map { Int($0.bytes[o * sh.groups + gi]) } ?? 8
                        XCTAssertEqual(rec.code(o, k), q[o][k])
                        let want = s[o * sh.groups + gi] * Float(Int(q[o][k]) - z)
                        XCTAssertEqual(fast[o * inF + k].bitPattern, want.bitPattern, "out \(sh.out) g \(sh.groupSize) [\(o), \(k)]")
                        XCTAssertEqual(ref[o * inF + k].bitPattern, want.bitPattern)
                    }
                }
            }
        }
    }

    /// Fast f32 and int8 decode kernels against their scalar references on odd sizes, both zero
    /// modes, with all-zero groups; the int8 path also against the exact product, within the bound
    /// that rounding x to int8 implies (|x - d*round(x/d)| <= d/2 per element).
    func testDecodeKernelsMatchScalarReferencesOnOddSizes() throws {
        for (i, sh) in Self.shapes.enumerated() {
            for sym in [true, false] {
                let inF = sh.groupSize * sh.groups
                let (rec, q) = try Int4Pack.record(out: sh.out, inF: inF, groupSize: sh.groupSize, symmetric: sym, actOrder: false,
                                                   seed: 1000 + UInt64(i * 2 + (sym ? 1 : 0)), zeroGroups: i % 3 == 0)
                var r = SplitMix64(state: 77 + UInt64(i))
                let x = (0..<inF).map { _ in r.symmetric() * 3 }
                let s = widenedScales(rec)
                var fast = [Float](repeating: .nan, count: sh.out), ref = fast
                matrix(rec, s) { m in
                    sq_q4_matvec_f32(m, x, &fast, 0, Int64(sh.out))
                    sq_q4_matvec_f32_ref(m, x, &ref, 0, Int64(sh.out))
                }
                for o in 0..<sh.out {
                    var mag: Float = 0
                    for k in 0..<inF {
                        let gi = k / sh.groupSize
                        let z = Float(rec.zeros.map { Int($0.bytes[o * sh.groups + gi]) } ?? 8)
                        mag += s[o * sh.groups + gi] * (Float(q[o][k]) + z) * abs(x[k])
                    }
                    XCTAssertEqual(fast[o], ref[o], accuracy: Self.matvecRelTolerance * mag + 1e-30,
                                   "f32 decode, out \(sh.out) g \(sh.groupSize) sym \(sym) row \(o)")
                }
                guard sh.groupSize % 64 == 0 && inF % 64 == 0 else { continue }
                var xq = [Int8](repeating: 0, count: inF), d8 = [Float](repeating: 0, count: inF / 64 * 8)
                var bsum = [Int32](repeating: 0, count: inF / 32)
                sq_q8_quantize(x, Int64(inF), &xq, &d8, &bsum)
                var q8 = [Float](repeating: .nan, count: sh.out), q8ref = q8
                matrix(rec, s) { m in
                    sq_q4_matvec_q8(m, xq, d8, bsum, &q8, 0, Int64(sh.out))
                    sq_q4_matvec_q8_ref(m, xq, d8, bsum, &q8ref, 0, Int64(sh.out))
                }
                for o in 0..<sh.out {
                    var absW: Float = 0, mag: Float = 0
                    for k in 0..<inF {
                        let gi = k / sh.groupSize, b = k / 32
                        let z = Float(rec.zeros.map { Int($0.bytes[o * sh.groups + gi]) } ?? 8)
                        let d = d8[8 * (b / 2) + 4 * (b % 2)]
                        absW += abs(s[o * sh.groups + gi] * (Float(q[o][k]) - z)) * d / 2
                        mag += s[o * sh.groups + gi] * (Float(q[o][k]) + z) * abs(x[k])
                    }
                    XCTAssertEqual(q8[o], q8ref[o], accuracy: Self.matvecRelTolerance * mag + 1e-30, "int8 fast vs ref row \(o)")
                    XCTAssertEqual(q8[o], ref[o], accuracy: absW * 1.001 + Self.matvecRelTolerance * mag + 1e-30,
                                   "int8 vs exact row \(o)")
                }
            }
        }
    }

    /// Each SIMD level of the float32 decode product equals its scalar twin bit for bit (same
    /// operations, same order), on odd row counts, both zero modes, group sizes that take the in-place
    /// AVX-512 path (multiples of 128) and those that do not, with outliers in x; and the twin stays
    /// within the summation-error bound of the double reference. Levels this CPU lacks run only their
    /// twin (still checked against the reference).
    func testF32DecodeLevelsEqualTheirScalarTwinsBitForBit() throws {
        let cases: [(out: Int, inF: Int, g: Int)] = [(1, 128, 128), (3, 256, 128), (33, 384, 128), (17, 512, 256),
                                                    (31, 96, 32), (7, 192, 64), (129, 640, 128), (5, 160, 32), (9, 4864, 128), (7, 6272, 128)]
        for (i, c) in cases.enumerated() {
            for sym in [true, false] {
                let (rec, q) = try Int4Pack.record(out: c.out, inF: c.inF, groupSize: c.g, symmetric: sym, actOrder: false,
                                                   seed: 500 + UInt64(i * 2 + (sym ? 1 : 0)), zeroGroups: i % 2 == 1)
                var r = SplitMix64(state: 91 + UInt64(i))
                var x = (0..<c.inF).map { _ in r.symmetric() * 3 }
                x[c.inF / 3] = 250; x[c.inF - 1] = -1e-3        // an outlier and a small value
                let s = widenedScales(rec)
                var ref = [Float](repeating: .nan, count: c.out)
                matrix(rec, s) { m in XCTAssertEqual(sq_q4_matvec_f32_level(m, x, &ref, 0, Int64(c.out), Int32(SQ_Q4_SCALAR)), 0) }
                for level in [Int32(SQ_Q4_AVX2), Int32(SQ_Q4_AVX512)] {
                    var twin = [Float](repeating: .nan, count: c.out), fast = twin
                    var ran: Int32 = -1
                    matrix(rec, s) { m in
                        XCTAssertEqual(sq_q4_matvec_f32_twin(m, x, &twin, 0, Int64(c.out), level), 0)
                        ran = sq_q4_matvec_f32_level(m, x, &fast, 0, Int64(c.out), level)
                    }
                    for o in 0..<c.out {
                        if ran == 0 {
                            XCTAssertEqual(fast[o].bitPattern, twin[o].bitPattern,
                                           "level \(level) out \(c.out) in \(c.inF) g \(c.g) sym \(sym) row \(o): \(fast[o]) vs twin \(twin[o])")
                        }
                        var mag: Float = 0
                        for k in 0..<c.inF {
                            let gi = k / c.g
                            let z = Float(rec.zeros.map { Int($0.bytes[o * (c.inF / c.g) + gi]) } ?? 8)
                            mag += s[o * (c.inF / c.g) + gi] * (Float(q[o][k]) + z) * abs(x[k])
                        }
                        XCTAssertEqual(twin[o], ref[o], accuracy: Self.matvecRelTolerance * mag + 1e-30,
                                       "twin level \(level) out \(c.out) g \(c.g) row \(o)")
                    }
                }
            }
        }
    }

    /// The int8-x product's VNNI level (vpdpbusd) gives the AVX2 level's bits (the same integer sums
    /// and float operations), on odd row counts and both zero modes; where the CPU lacks VNNI the
    /// level reports -1 and the case is skipped.
    func testInt8DecodeVNNILevelEqualsAVX2BitForBit() throws {
        for (i, c) in [(out: 1, inF: 128, g: 64), (out: 33, inF: 256, g: 128), (out: 7, inF: 4864, g: 128), (out: 129, inF: 192, g: 64)].enumerated() {
            for sym in [true, false] {
                let (rec, _) = try Int4Pack.record(out: c.out, inF: c.inF, groupSize: c.g, symmetric: sym, actOrder: false,
                                                   seed: 900 + UInt64(i * 2 + (sym ? 1 : 0)), zeroGroups: i % 2 == 0)
                var r = SplitMix64(state: 13 + UInt64(i))
                let x = (0..<c.inF).map { _ in r.symmetric() * 2 }
                var xq = [Int8](repeating: 0, count: c.inF), d8 = [Float](repeating: 0, count: c.inF / 64 * 8)
                var bsum = [Int32](repeating: 0, count: c.inF / 32)
                sq_q8_quantize(x, Int64(c.inF), &xq, &d8, &bsum)
                var a = [Float](repeating: .nan, count: c.out), v = a
                var ranA: Int32 = -1, ranV: Int32 = -1
                matrix(rec, widenedScales(rec)) { m in
                    ranA = sq_q4_matvec_q8_level(m, xq, d8, bsum, &a, 0, Int64(c.out), Int32(SQ_Q4_AVX2))
                    ranV = sq_q4_matvec_q8_level(m, xq, d8, bsum, &v, 0, Int64(c.out), Int32(SQ_Q4_AVX512))
                }
                guard ranA == 0 && ranV == 0 else { continue }
                XCTAssertEqual(a.map(\.bitPattern), v.map(\.bitPattern), "out \(c.out) in \(c.inF) g \(c.g) sym \(sym)")
            }
        }
    }

    /// scripts/test.sh's second pass states which levels it is there to test: `SQUINT_EXPECT_AVX512=1`
    /// (the AVX-512 build emulated on an AVX2-only CPU) or `0` (`SQUINT_NO_AVX512=1` on an AVX-512 CPU).
    /// Without this check a build flag or switch that stopped taking effect would let that pass test the
    /// path of the first pass again, and stay green. Skipped when the variable is unset.
    func testTheSecondPassRunsTheLevelsItIsMeantTo() throws {
        let expect = ProcessInfo.processInfo.environment["SQUINT_EXPECT_AVX512"]
        try XCTSkipIf(expect == nil, "SQUINT_EXPECT_AVX512 is set by scripts/test.sh's second pass")
        if expect == "1" {
            XCTAssertEqual(sq_q4_level(), Int32(SQ_Q4_AVX512), "Int4 float32-x decode level")
            XCTAssertEqual(sq_has_vnni(), 1, "int8 VNNI level")
            XCTAssertEqual(sq_cpu_has_avx512f(), 1, "AVX-512 Cholesky")
        } else {
            XCTAssertEqual(sq_q4_level(), Int32(SQ_Q4_AVX2), "Int4 float32-x decode level")
        }
    }

    /// `SQUINT_NO_AVX512=1` switches the dispatching entry point off AVX-512: its result is then the
    /// AVX2 level's bit for bit; unset, it is the best level's.
    func testF32DecodeDispatchRespectsNoAVX512() throws {
        let (rec, _) = try Int4Pack.record(out: 37, inF: 512, groupSize: 128, symmetric: false, actOrder: false, seed: 42)
        var r = SplitMix64(state: 3)
        let x = (0..<512).map { _ in r.symmetric() }
        let s = widenedScales(rec)
        let saved = ProcessInfo.processInfo.environment["SQUINT_NO_AVX512"]
        defer { if let saved { setenv("SQUINT_NO_AVX512", saved, 1) } else { unsetenv("SQUINT_NO_AVX512") } }
        for off in [true, false] {
            if off { setenv("SQUINT_NO_AVX512", "1", 1) } else { unsetenv("SQUINT_NO_AVX512") }
            let level = sq_q4_level()
            if off { XCTAssertNotEqual(level, Int32(SQ_Q4_AVX512)) }
            guard level != Int32(SQ_Q4_SCALAR) else { continue }
            var y = [Float](repeating: .nan, count: 37), twin = y
            matrix(rec, s) { m in
                sq_q4_matvec_f32(m, x, &y, 0, 37)
                XCTAssertEqual(sq_q4_matvec_f32_twin(m, x, &twin, 0, 37, level), 0)
            }
            XCTAssertEqual(y.map(\.bitPattern), twin.map(\.bitPattern), "SQUINT_NO_AVX512 \(off ? "set" : "unset"), level \(level)")
        }
    }

    /// The int8 quantisation of x: pair-interleaved order, d = max|x|/127, block sums (a pure layout
    /// check written from the header's description).
    func testQ8QuantizeLayout() {
        var r = SplitMix64(state: 5)
        let x = (0..<128).map { _ in r.symmetric() }
        var q = [Int8](repeating: 0, count: 128), d8 = [Float](repeating: 0, count: 16), bsum = [Int32](repeating: 0, count: 4)
        sq_q8_quantize(x, 128, &q, &d8, &bsum)
        for b in 0..<4 {
            let block = x[b * 32..<(b + 1) * 32]
            let d = block.map { abs($0) }.max()! / 127
            XCTAssertEqual(d8[8 * (b / 2) + 4 * (b % 2)], d)
            var sum: Int32 = 0
            for j in 0..<32 {
                let pos = 64 * (b / 2) + (j < 16 ? 0 : 32) + (b % 2) * 16 + j % 16
                XCTAssertEqual(Int(q[pos]), Int((x[b * 32 + j] / d).rounded(.toNearestOrEven)), "block \(b) j \(j)")
                sum += Int32(q[pos])
            }
            XCTAssertEqual(bsum[b], sum)
        }
    }

    /// QuantizedLinear with act order: forward (decode and prefill, 1 and 2 threads) equals the dense
    /// product with the dequantised weight in original input order.
    func testQuantizedLinearActOrderDecodeAndPrefillMatchDenseProduct() throws {
        for (out, g, groups, seed) in [(33, 64, 3, 1), (129, 32, 4, 2), (1, 128, 2, 3)] {
            let inF = g * groups
            let (rec, _) = try Int4Pack.record(out: out, inF: inF, groupSize: g, symmetric: seed % 2 == 0, actOrder: true, seed: UInt64(seed))
            let layer = QuantizedLinear(record: rec)
            let w = layer.dequantized()          // [out, in], original input order
            let stored = layer.dequantizedStored()
            var r = SplitMix64(state: 9)
            let tokens = 5
            let x = (0..<tokens * inF).map { _ in r.symmetric() }
            var want = [Float](repeating: 0, count: tokens * out)
            var mag = [Float](repeating: 0, count: tokens * out)
            for t in 0..<tokens { for o in 0..<out {
                var acc = 0.0, m: Float = 0
                for i in 0..<inF { acc += Double(w[o * inF + i]) * Double(x[t * inF + i]); m += abs(w[o * inF + i] * x[t * inF + i]) }
                want[t * out + o] = Float(acc); mag[t * out + o] = m
            } }
            // The permutation really is applied: stored column k is original column perm[k].
            let perm = (0..<inF).map { Int(Int32(littleEndian: rec.perm!.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            XCTAssertEqual(stored[0 * inF + 0], w[0 * inF + perm[0]])
            for threads in [1, 2] {
                for prefillFrom in [1, 1000] {
                    layer.threads = threads
                    layer.prefillFromTokens = prefillFrom
                    layer.tileRows = 16
                    var y = [Float](repeating: .nan, count: tokens * out)
                    layer.forward(x: x, tokens: tokens, into: &y)
                    for j in 0..<y.count {
                        XCTAssertEqual(y[j], want[j], accuracy: 1e-5 * mag[j] * 16 + 1e-30,
                                       "out \(out) threads \(threads) prefillFrom \(prefillFrom) [\(j)]")
                    }
                }
            }
        }
    }

    // MARK: against torch (fixtures/int4, real AutoGPTQ modules)

    static let modules = ["transformer.h.0.mlp.c_proj", "transformer.h.1.attn.c_attn", "synthetic.actorder_asym"]

    /// SQ4 dequantisation of the converted real modules equals torch's float32 SPEC §5.5 dequantisation
    /// of the AutoGPTQ tensors (and our Swift §5.5 reading of them) bit for bit.
    func testDequantOfConvertedAutoGPTQModulesEqualsTorchBitForBit() throws {
        let path = Fixtures.path("int4/autogptq_modules.safetensors")
        let file = try SafetensorsFile(path: path)
        for name in Self.modules {
            let m = try AutoGPTQLayout.module(in: file, prefix: name)
            let layer = QuantizedLinear(record: try AutoGPTQLayout.toSQ4(m, name: name, path: path))
            let torchW = try file.view(name + ".dequant_f32")
            let ours = layer.dequantized()
            let swiftRef = AutoGPTQLayout.dequantize(m) { h in var f: Float = 0; var hh = h; sq_f16_to_f32_ref(&hh, &f, 1); return f }
            XCTAssertEqual(ours.count, torchW.info.elementCount)
            var mismatches = 0
            for j in 0..<ours.count {
                let t = torchW.bytes.loadUnaligned(fromByteOffset: 4 * j, as: Float.self)
                if ours[j].bitPattern != t.bitPattern || swiftRef[j].bitPattern != t.bitPattern { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, "\(name): elements differing from torch's dequantised weight")
        }
    }

    /// Forward of the converted modules (bias included) against torch's float64 y = x W^T + b.
    func testForwardOfConvertedModulesMatchesTorch() throws {
        let path = Fixtures.path("int4/autogptq_modules.safetensors")
        let file = try SafetensorsFile(path: path)
        for name in Self.modules {
            let layer = QuantizedLinear(record: try AutoGPTQLayout.toSQ4(try AutoGPTQLayout.module(in: file, prefix: name), name: name, path: path))
            let xv = try file.view(name + ".x"), yv = try file.view(name + ".y_f64")
            let tokens = xv.info.shape[0], out = layer.spec.outFeatures
            let x = (0..<xv.info.elementCount).map { xv.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            let w = layer.dequantized()
            for (path_, prefillFrom) in [(QuantizedLinear.DecodePath.float32, 1000), (.float32, 1), (.int8, 1000)] {
                layer.decodePath = path_
                layer.prefillFromTokens = prefillFrom
                var y = [Float](repeating: .nan, count: tokens * out)
                layer.forward(x: x, tokens: tokens, into: &y)
                for t in 0..<tokens { for o in 0..<out {
                    let want = yv.bytes.loadUnaligned(fromByteOffset: 8 * (t * out + o), as: Double.self)
                    var mag: Float = 0, maxX: Float = 0
                    for i in 0..<layer.spec.inFeatures { mag += abs(w[o * layer.spec.inFeatures + i] * x[t * layer.spec.inFeatures + i]); maxX = max(maxX, abs(x[t * layer.spec.inFeatures + i])) }
                    // int8: each x is off by at most max|x|/254; float paths: summation error only.
                    var tol = Double(mag) * 2e-6 + 1e-6
                    if path_ == .int8 {
                        let absW = (0..<layer.spec.inFeatures).reduce(Float(0)) { $0 + abs(w[o * layer.spec.inFeatures + $1]) }
                        tol += Double(absW * maxX / 254)
                    }
                    XCTAssertEqual(Double(y[t * out + o]), want, accuracy: tol, "\(name) \(path_) prefillFrom \(prefillFrom) [\(t), \(o)]")
                } }
            }
        }
    }
}
