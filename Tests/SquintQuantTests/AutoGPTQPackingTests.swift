import XCTest
import SquintFormats
import SquintQuant
import SquintTensor
import TestSupport

/// The v1 layout, byte for byte: hand-built words from SPEC §5.4, and the official packed tensors of the
/// qwen-vl-tiny Int4 checkpoint (fixtures/gptq-cases/packed_official.safetensors).
final class AutoGPTQPackingTests: XCTestCase {
    // MARK: bit layout

    func testFourBitWordHoldsLowestInputIndexInLowestNibble() {
        // One output column, inputs 0..7 carrying codes 0..7: SPEC §5.4 gives 0x76543210.
        let codes: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7]
        let words = AutoGPTQPacking.packRows(codes, rows: 8, cols: 1, bits: 4)
        XCTAssertEqual(words, [Int32(bitPattern: 0x7654_3210)])
        XCTAssertEqual(AutoGPTQPacking.unpackRows(words, rows: 8, cols: 1, bits: 4), codes)
        // Code 15 in the top nibble makes the int32 negative (bit pattern kept).
        XCTAssertEqual(AutoGPTQPacking.packRows([0, 0, 0, 0, 0, 0, 0, 15], rows: 8, cols: 1, bits: 4),
                       [Int32(bitPattern: 0xF000_0000)])
    }

    func testTwoAndEightBitWords() {
        let c2: [UInt8] = (0..<16).map { UInt8($0 % 4) }  // 0,1,2,3,0,1,2,3,...
        XCTAssertEqual(AutoGPTQPacking.packRows(c2, rows: 16, cols: 1, bits: 2), [Int32(bitPattern: 0xE4E4_E4E4)])
        let c8: [UInt8] = [0x01, 0x02, 0x03, 0xFF]
        XCTAssertEqual(AutoGPTQPacking.packRows(c8, rows: 4, cols: 1, bits: 8), [Int32(bitPattern: 0xFF03_0201)])
        XCTAssertEqual(AutoGPTQPacking.unpackRows([Int32(bitPattern: 0xFF03_0201)], rows: 4, cols: 1, bits: 8), c8)
    }

    /// 3 bits: AutoGPTQ's 32-codes-in-3-words layout (codes 10 and 21 straddle words), against the
    /// words its packing loop produces (fixtures/gptq-cases/pack3_autogptq.safetensors, made by
    /// scripts/fixtures/autogptq_pack3.py) for qweight (along inputs) and qzeros (zero - 1, along outputs).
    func testThreeBitLayoutMatchesAutoGPTQsLoop() throws {
        let f = try SafetensorsFile(path: Fixtures.path("gptq-cases/pack3_autogptq.safetensors"))
        let codes = Array(try f.view("codes").bytes), zeros = Array(try f.view("zeros").bytes)
        let (nIn, nOut) = (try f.view("codes").info.shape[0], try f.view("codes").info.shape[1])
        let groups = try f.view("zeros").info.shape[0]
        func words(_ name: String) throws -> [Int32] {
            let v = try f.view(name)
            return (0..<(v.bytes.count / 4)).map { Int32(littleEndian: v.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        }
        let qweight = try words("qweight"), qzeros = try words("qzeros")
        XCTAssertEqual(try f.view("qweight").info.shape, [nIn / 32 * 3, nOut])
        XCTAssertEqual(try f.view("qzeros").info.shape, [groups, nOut / 32 * 3])
        XCTAssertEqual(AutoGPTQPacking.packRows(codes, rows: nIn, cols: nOut, bits: 3), qweight)
        XCTAssertEqual(AutoGPTQPacking.packColumns(zeros.map { $0 - 1 }, rows: groups, cols: nOut, bits: 3), qzeros)
        XCTAssertEqual(AutoGPTQPacking.unpackRows(qweight, rows: nIn, cols: nOut, bits: 3), codes)
        XCTAssertEqual(AutoGPTQPacking.unpackColumns(qzeros, rows: groups, cols: nOut, bits: 3), zeros.map { $0 - 1 })
        // Through pack(): Q on the grid of each code, sym zero 4 (stored 3), one group per 32 inputs.
        let g = nIn / 32
        var q = [Float](repeating: 0, count: nOut * nIn)
        for o in 0..<nOut { for i in 0..<nIn { q[o * nIn + i] = 0.5 * (Float(codes[i * nOut + o]) - 4) } }
        let p = try AutoGPTQPacking.pack(q: q, scale: [Float](repeating: 0.5, count: nOut * g), zero: [Float](repeating: 4, count: nOut * g),
                                         gIdx: (0..<nIn).map { Int32($0 / 32) }, bias: nil, inFeatures: nIn, outFeatures: nOut, groups: g, bits: 3)
        XCTAssertEqual(p.qweight, qweight)
        XCTAssertEqual(Set(AutoGPTQPacking.unpackColumns(p.qzeros, rows: g, cols: nOut, bits: 3)), [3])
        XCTAssertEqual(AutoGPTQPacking.dequantize(p), (0..<(nIn * nOut)).map { q[($0 % nOut) * nIn + $0 / nOut] })
    }

    /// Every width: the stream layout round-trips and agrees with the whole-code-per-word formula of
    /// 2, 4 and 8 bits.
    func testPackUnpackRoundTripForEveryWidth() {
        var rng = SplitMix64(seed: 5)
        for bits in [2, 3, 4, 8] {
            let rows = 64, cols = 32
            let codes = (0..<(rows * cols)).map { _ in UInt8(rng.next() % UInt64(1 << bits)) }
            let w = AutoGPTQPacking.packRows(codes, rows: rows, cols: cols, bits: bits)
            XCTAssertEqual(w.count, rows * bits / 32 * cols)
            XCTAssertEqual(AutoGPTQPacking.unpackRows(w, rows: rows, cols: cols, bits: bits), codes, "bits \(bits)")
            let z = AutoGPTQPacking.packColumns(codes, rows: rows, cols: cols, bits: bits)
            XCTAssertEqual(AutoGPTQPacking.unpackColumns(z, rows: rows, cols: cols, bits: bits), codes, "bits \(bits)")
            if bits != 3 {
                let k = 32 / bits
                for r in 0..<(rows / k) {
                    for c in 0..<cols {
                        var word: UInt32 = 0
                        for j in 0..<k { word |= UInt32(codes[(r * k + j) * cols + c]) << UInt32(bits * j) }
                        XCTAssertEqual(w[r * cols + c], Int32(bitPattern: word))
                    }
                }
            }
        }
    }

    func testQzerosPackAlongOutputColumnsAndStoreZeroMinusOne() throws {
        // Sym 4-bit: zero 8 everywhere -> every stored nibble 7 -> 0x77777777 (SPEC §5.4).
        let out = 16, inF = 8
        let q = [Float](repeating: 0, count: out * inF)
        let p = try AutoGPTQPacking.pack(q: q, scale: [Float](repeating: 0.5, count: out), zero: [Float](repeating: 8, count: out),
                                         gIdx: [Int32](repeating: 0, count: inF), bias: nil,
                                         inFeatures: inF, outFeatures: out, groups: 1, bits: 4)
        XCTAssertEqual(p.qzeros, [2_004_318_071, 2_004_318_071])
        // q = 0 -> code = zero = 8 in every nibble.
        XCTAssertEqual(p.qweight, [Int32](repeating: Int32(bitPattern: 0x8888_8888), count: out))
        XCTAssertEqual(p.bias, [UInt16](repeating: 0, count: out))
        XCTAssertEqual(AutoGPTQPacking.packColumns([1, 2, 3, 4, 5, 6, 7, 8], rows: 1, cols: 8, bits: 4),
                       [Int32(bitPattern: 0x8765_4321)])
    }

    // MARK: refusals (AutoGPTQ would corrupt silently)

    func testThreeBitNeedsMultiplesOf32() {
        XCTAssertThrowsError(try AutoGPTQPacking.pack(q: [Float](repeating: 0, count: 16 * 32), scale: [Float](repeating: 1, count: 32),
                                                      zero: [Float](repeating: 4, count: 32), gIdx: [Int32](repeating: 0, count: 16),
                                                      bias: nil, inFeatures: 16, outFeatures: 32, groups: 1, bits: 3)) { e in
            guard case QuantError.invalidSetting(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("multiples of 32 for 3-bit"), m)
        }
    }

    func testAsymZeroPointOfZeroIsRefused() {
        // zero 0 -> zero-1 = -1: numpy's astype(uint32) wraps it to 0xFFFFFFFF, which ORs over 7 neighbours.
        XCTAssertThrowsError(try AutoGPTQPacking.pack(q: [Float](repeating: 0, count: 8 * 8), scale: [Float](repeating: 1, count: 8),
                                                      zero: [0, 1, 1, 1, 1, 1, 1, 1], gIdx: [Int32](repeating: 0, count: 8),
                                                      bias: nil, inFeatures: 8, outFeatures: 8, groups: 1, bits: 4)) { e in
            guard case QuantError.notPackable = e else { return XCTFail("\(e)") }
        }
    }

    func testScaleThatUnderflowsInFp16IsRefusedInsteadOfWrapping() {
        // Scale 1e-9 rounds to fp16 0: AutoGPTQ's round((q + z·s)/0) is inf/NaN, cast to int garbage.
        let q: [Float] = (0..<64).map { Float($0 % 8) * 1e-9 }
        XCTAssertThrowsError(try AutoGPTQPacking.pack(q: q, scale: [Float](repeating: 1e-9, count: 8), zero: [Float](repeating: 8, count: 8),
                                                      gIdx: [Int32](repeating: 0, count: 8), bias: nil,
                                                      inFeatures: 8, outFeatures: 8, groups: 1, bits: 4)) { e in
            guard case QuantError.notPackable = e else { return XCTFail("\(e)") }
        }
        // Shapes not divisible by 8 are refused too.
        XCTAssertThrowsError(try AutoGPTQPacking.pack(q: [Float](repeating: 0, count: 12 * 8), scale: [Float](repeating: 1, count: 8),
                                                      zero: [Float](repeating: 8, count: 8), gIdx: [Int32](repeating: 0, count: 12),
                                                      bias: nil, inFeatures: 12, outFeatures: 8, groups: 1, bits: 4))
    }

    /// Unclamped rounding: a value off the grid by more than half a step still packs when the code
    /// stays in 0...15 (AutoGPTQ does not clamp), e.g. q = 7.4·s with zero 8 -> code round(15.4) = 15.
    func testPackRoundsWithoutClampInsideTheCodeRange() throws {
        let s: Float = 0.25
        var q = [Float](repeating: 0, count: 64)
        q[0] = 7.4 * s  // [out 0, in 0]
        let p = try AutoGPTQPacking.pack(q: q, scale: [Float](repeating: s, count: 8), zero: [Float](repeating: 8, count: 8),
                                         gIdx: [Int32](repeating: 0, count: 8), bias: nil,
                                         inFeatures: 8, outFeatures: 8, groups: 1, bits: 4)
        XCTAssertEqual(AutoGPTQPacking.unpack(p).codes[0], 15)
        q[0] = 7.6 * s  // round(15.6) = 16: AutoGPTQ would carry into the next nibble; we refuse.
        XCTAssertThrowsError(try AutoGPTQPacking.pack(q: q, scale: [Float](repeating: s, count: 8), zero: [Float](repeating: 8, count: 8),
                                                      gIdx: [Int32](repeating: 0, count: 8), bias: nil,
                                                      inFeatures: 8, outFeatures: 8, groups: 1, bits: 4))
    }

    // MARK: against the official checkpoint

    func testPackingTheReferenceResultReproducesTheOfficialTensorsByteForByte() throws {
        let official = try SafetensorsFile(path: "\(GPTQFixtures.root)/packed_official.safetensors")
        for caseName in GPTQFixtures.caseNames {
            let f = try GPTQFixtures.file(caseName)
            let W = try f32(f, "W"), H = try f32(f, "H")
            let rows = W.shape[0], cols = W.shape[1]
            let officialBias = try f16bits(official, "\(caseName).bias").values
            let expected = try AutoGPTQPacking.Packed(
                bits: 4, inFeatures: cols, outFeatures: rows, groups: try f32(f, "sym_g128.scale").shape[1],
                qweight: try i32(official, "\(caseName).qweight").values, qzeros: try i32(official, "\(caseName).qzeros").values,
                scales: try f16bits(official, "\(caseName).scales").values, gIdx: try i32(official, "\(caseName).g_idx").values,
                bias: officialBias)
            let bias = officialBias.map { AutoGPTQPacking.f32(f16Bits: $0) }  // fp16 -> f32 -> fp16 is exact

            // 1. The reference fasterquant output (fixture) packed by us.
            let refPacked = try AutoGPTQPacking.pack(
                q: try f32(f, "sym_g128.Q").values, scale: try f32(f, "sym_g128.scale").values,
                zero: try f32(f, "sym_g128.zero").values, gIdx: try i32(f, "sym_g128.g_idx").values, bias: bias,
                inFeatures: cols, outFeatures: rows, groups: expected.groups, bits: 4)
            XCTAssertEqual(refPacked, expected, "\(caseName): packing the reference Q")

            // 2. Our own fasterquant on the same W and H, packed.
            let ours = try GPTQ.fasterquant(weight: W.values, rows: rows, columns: cols, hessian: H.values,
                                            options: GPTQOptions(quantizer: try QuantizerConfig(bits: 4, symmetric: true)))
            let packed = try AutoGPTQPacking.pack(q: ours.q, scale: ours.scale, zero: ours.zero, gIdx: ours.gIdx, bias: bias,
                                                  inFeatures: cols, outFeatures: rows, groups: ours.groups, bits: 4)
            XCTAssertEqual(packed.qweight, expected.qweight, "\(caseName): qweight")
            XCTAssertEqual(packed.qzeros, expected.qzeros, "\(caseName): qzeros")
            XCTAssertEqual(packed.gIdx, expected.gIdx, "\(caseName): g_idx")
            XCTAssertEqual(packed.bias, expected.bias, "\(caseName): bias")
            // Scales come from W after error feedback: later groups may differ in the last float32 bits,
            // which fp16 rounding hides unless the value sits on an fp16 rounding boundary.
            let sameScales = zip(packed.scales, expected.scales).filter { $0 == $1 }.count
            print("[pack] \(caseName): fp16 scales identical \(sameScales)/\(expected.scales.count)")
            XCTAssertEqual(sameScales, expected.scales.count, "\(caseName): scales")

            // 3. Unpack: codes are the reference codes (transposed), stored zeros all 7.
            let (codes, zst) = AutoGPTQPacking.unpack(expected)
            let refCodes = try u8(f, "sym_g128.codes").values
            for i in 0..<cols { for o in 0..<rows { XCTAssertEqual(codes[i * rows + o], refCodes[o * cols + i]) } }
            XCTAssertTrue(zst.allSatisfy { $0 == 7 })
            // 4. Dequantize = fp16(scale) · (code − 8), SPEC §5.5.
            let deq = AutoGPTQPacking.dequantize(expected)
            let refScale = try f32(f, "sym_g128.scale").values
            for i in 0..<cols {
                for o in 0..<rows {
                    let s16 = AutoGPTQPacking.f32(f16Bits: AutoGPTQPacking.f16Bits(refScale[o * expected.groups + i / 128]))
                    XCTAssertEqual(deq[i * rows + o], s16 * (Float(refCodes[o * cols + i]) - 8))
                }
            }
        }
    }
}
