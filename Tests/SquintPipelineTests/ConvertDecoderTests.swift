import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor
import TestSupport
@testable import SquintPipeline

/// GPTQ to GGUF Q4_0 for DecoderLM models, on the tiny random Qwen2 made by transformers
/// (fixtures/decoders/qwen2-tiny: hidden 64, intermediate 96, 2 blocks, vocab 300, tied lm_head),
/// turned into an F32 GGUF here with our writer. Ground truths: GGUFDequant (checked against gguf-py
/// in the GGUF tests) decoding our blocks, and the Q8_0 reference quantiser (bit-identical to gguf-py).
final class ConvertDecoderTests: XCTestCase {
    var tmp = ""
    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "squint-convdec-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    /// The fixture as an F32 GGUF with llama.cpp's qwen2 keys and a placeholder gpt2 vocabulary.
    func makeSourceGGUF() throws -> String {
        let hf = try DecoderLM.load(folder: fixturePath("decoders/qwen2-tiny"))
        let d = hf.dims
        let st = try SafetensorsFile(path: fixturePath("decoders/qwen2-tiny/model.safetensors"))
        let w = GGUFWriter()
        try w.add(key: "general.architecture", .string("qwen2"))
        try w.add(key: "general.file_type", .uint32(0))
        try w.add(key: "qwen2.context_length", .uint32(256))
        try w.add(key: "qwen2.embedding_length", .uint32(UInt32(d.hidden)))
        try w.add(key: "qwen2.block_count", .uint32(UInt32(d.layers)))
        try w.add(key: "qwen2.feed_forward_length", .uint32(UInt32(d.intermediate)))
        try w.add(key: "qwen2.attention.head_count", .uint32(UInt32(d.heads)))
        try w.add(key: "qwen2.attention.head_count_kv", .uint32(UInt32(d.kvHeads)))
        try w.add(key: "qwen2.rope.freq_base", .float32(Float(d.ropeTheta)))
        try w.add(key: "qwen2.attention.layer_norm_rms_epsilon", .float32(Float(d.rmsNormEps)))
        try w.add(key: "tokenizer.ggml.model", .string("gpt2"))
        try w.add(key: "tokenizer.ggml.pre", .string("qwen2"))
        try w.add(key: "tokenizer.ggml.tokens", .array(.string, (0..<d.vocab).map { .string("t\($0)") }))
        try w.add(key: "tokenizer.ggml.merges", .array(.string, []))
        for (h, g) in zip(d.tensorTable(.huggingFace), d.tensorTable(.gguf)) {
            try w.addTensor(name: g.name, type: .f32, shape: g.shape, values: Kernels.floats(try st.view(h.name)))
        }
        let path = tmp + "/tiny-f32.gguf"
        try w.write(to: path, overwrite: false)
        return path
    }

    func windows(_ n: Int, _ len: Int, vocab: Int) -> [[Int32]] {
        (0..<n).map { k in (0..<len).map { Int32(($0 * 37 + k * 101 + ($0 * $0) % 13) % vocab) } }
    }

    /// Every block linear's Q4_0 bytes decode (GGUFDequant) to exactly GPTQ's fake-quantized weight,
    /// with and without act-order (static groups); GPTQ really fed errors back (loss > 0 and codes
    /// that differ from RTN's somewhere).
    func testQ4_0BlocksDecodeBitExactlyToGPTQWeights() throws {
        let src = try makeSourceGGUF()
        for descAct in [false, true] {
            let tm = try TextModel.open(src)
            var o = DecoderConvert.Options(); o.descAct = descAct
            let mods = try DecoderConvert.quantize(model: tm.model, windows: windows(4, 48, vocab: tm.model.dims.vocab), options: o)
            XCTAssertEqual(mods.count, 2 * 7)
            var rtnDiffers = false
            for m in mods {
                let bytes = try DecoderConvert.q4_0Bytes(m.weight)
                let back = bytes.withUnsafeBytes { GGUFDequant.dequantize(.q4_0, blocks: $0) }
                XCTAssertEqual(back.map(\.bitPattern), m.weight.q.map(\.bitPattern), "\(m.log.module) desc_act \(descAct)")
                XCTAssertGreaterThan(m.weight.lossSum, 0)
                let tmOrig = try TextModel.open(src)
                let W = Kernels.floats((tmOrig.model.linear(layer: m.layer, m.linear) as! Linear).weightView)
                let rtn = try RTN.quantize(weight: W, rows: m.weight.rows, columns: m.weight.columns, groupSize: 32,
                                           quantizer: try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16))
                if rtn.codes != m.weight.codes { rtnDiffers = true }
                // The float16 rounding is what makes d exact: every scale is a float16 value.
                XCTAssertTrue(m.weight.scale.allSatisfy { Float(Float16($0)) == $0 })
            }
            XCTAssertTrue(rtnDiffers)
        }
    }

    /// `--rtn down`: every ffn_down is exactly what round-to-nearest makes of the original weight, and
    /// every other linear of block 0 (whose inputs both runs share) exactly what plain GPTQ makes; the log
    /// marks the RTN modules. A linear the model does not have is refused by name.
    func testRTNLinearsInsideAGPTQRunAreRoundedToNearest() throws {
        let src = try makeSourceGGUF()
        let ws = windows(3, 40, vocab: 300)
        var o = DecoderConvert.Options(); o.grid = .q4_0; o.descAct = true
        let plain = try DecoderConvert.quantize(model: try TextModel.open(src).model, windows: ws, options: o)
        var rtnAll = o; rtnAll.method = .rtn
        let rtn = try DecoderConvert.quantize(model: try TextModel.open(src).model, windows: ws, options: rtnAll)
        var mixed = o; mixed.rtnLinears = [.down]
        let mods = try DecoderConvert.quantize(model: try TextModel.open(src).model, windows: ws, options: mixed)
        XCTAssertEqual(mods.map(\.log.module), plain.map(\.log.module))
        for (i, m) in mods.enumerated() {
            if m.linear == .down {
                XCTAssertEqual(m.weight.codes, rtn[i].weight.codes, m.log.module)
                XCTAssertEqual(m.weight.scale, rtn[i].weight.scale, m.log.module)
                XCTAssertEqual(m.log.method, "rtn")
                XCTAssertEqual(m.log.avgLoss, 0)
            } else {
                XCTAssertNil(m.log.method)
                XCTAssertGreaterThan(m.log.avgLoss, 0, m.log.module)
                if m.layer == 0 { XCTAssertEqual(m.weight.codes, plain[i].weight.codes, m.log.module) }
            }
        }
        XCTAssertNotEqual(mods.first { $0.layer == 1 && $0.linear == .q }?.weight.codes,
                          plain.first { $0.layer == 1 && $0.linear == .q }?.weight.codes, "block 1 sees block 0's RTN down")
        var fused = o; fused.rtnLinears = [.qkv]
        XCTAssertThrowsError(try DecoderConvert.quantize(model: try TextModel.open(src).model, windows: ws, options: fused)) {
            XCTAssertEqual("\($0)", "\(ConvertError.invalidOption("--rtn qkv: this model's block linears are q, k, v, o, gate, up, down"))")
        }
    }

    /// Without float16 scale rounding (AutoGPTQ default) scales are not float16 values in general: the
    /// option is what makes the Q4_0 encoding exact, and Q4_0 encoding refuses such scales.
    func testQ4_0RefusesScalesThatAreNotFloat16() throws {
        let W: [Float] = (0..<64).map { Float(($0 * 29) % 17) / 7 - 1.1 }
        let q = try RTN.quantize(weight: W, rows: 2, columns: 32, groupSize: 32, quantizer: try QuantizerConfig(bits: 4, symmetric: true))
        XCTAssertFalse(q.scale.allSatisfy { Float(Float16($0)) == $0 })
        XCTAssertThrowsError(try DecoderConvert.q4_0Bytes(q))
        let q16 = try RTN.quantize(weight: W, rows: 2, columns: 32, groupSize: 32,
                                   quantizer: try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16))
        let back = try DecoderConvert.q4_0Bytes(q16).withUnsafeBytes { GGUFDequant.dequantize(.q4_0, blocks: $0) }
        XCTAssertEqual(back.map(\.bitPattern), q16.q.map(\.bitPattern))
    }

    /// The written GGUF reopens through TextModel; its tensors are: block linears = GPTQ's q (bit for
    /// bit), 1-D tensors = the source's F32, token_embd (tied: no output.weight) = Q8_0 of the source;
    /// its logits equal those of a DecoderLM built from exactly those float32 values (same code, same
    /// weights: identical). Metadata: copied, file_type 2, squint provenance.
    func testWrittenGGUFReopensWithTheQuantizedWeights() throws {
        let src = try makeSourceGGUF()
        let tm = try TextModel.open(src)
        let mods = try DecoderConvert.quantize(model: tm.model, windows: windows(3, 40, vocab: tm.model.dims.vocab), options: .init())
        let out = tmp + "/tiny-q4_0.gguf"
        try DecoderConvert.writeGGUF(source: tm.gguf!, architecture: tm.model.architecture, dims: tm.model.dims, modules: mods,
                                     provenance: "test", to: out, overwrite: false)
        // A block linear without its quantized module is refused, not written from the float weight.
        XCTAssertThrowsError(try DecoderConvert.writeGGUF(source: tm.gguf!, architecture: tm.model.architecture, dims: tm.model.dims,
                                                          modules: Array(mods.dropLast()), provenance: "test", to: tmp + "/partial.gguf",
                                                          overwrite: false)) { XCTAssertTrue("\($0)".contains("no quantized module"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/partial.gguf"))
        let back = try TextModel.open(out)
        let f = back.gguf!, s = tm.gguf!
        XCTAssertEqual(f.value(forKey: "general.file_type")?.int, 2)
        XCTAssertEqual(f.value(forKey: "squint.quantization")?.string, "test")
        XCTAssertEqual(f.value(forKey: "qwen2.block_count")?.int, 2)
        XCTAssertEqual(f.ggufTensors.map(\.name), s.ggufTensors.map(\.name))
        var expected: [String: [Float]] = [:]
        for t in s.ggufTensors {
            let v = try GGUFDequant.dequantize(t, of: s)
            if t.shape.count == 1 { expected[t.name] = v }
            else if t.name == "token_embd.weight" {
                expected[t.name] = GGUFQuantize.quantize(.q8_0, v)!.withUnsafeBytes { GGUFDequant.dequantize(.q8_0, blocks: $0) }
            }
        }
        for m in mods { expected[DecoderTensorNaming.gguf.module(m.layer, m.linear) + ".weight"] = m.weight.q }
        for t in f.ggufTensors {
            XCTAssertEqual(t.type, t.shape.count == 1 ? .f32 : t.name == "token_embd.weight" ? .q8_0 : .q4_0, t.name)
            XCTAssertEqual(try GGUFDequant.dequantize(t, of: f).map(\.bitPattern), expected[t.name]?.map(\.bitPattern), t.name)
        }
        let ref = try DecoderLM.fromGGUF(architecture: back.model.architecture, dims: back.model.dims,
                                         shapes: s.ggufTensors.map { ($0.name, $0.shape) }, path: "<expected>") { expected[$0]! }
        let ids: [Int32] = [5, 17, 250, 3, 99, 42, 7]
        let a = try back.model.prefill(tokens: ids, cache: back.model.makeCache()).logits.data
        let b = try ref.prefill(tokens: ids, cache: ref.makeCache()).logits.data
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
        // And the in-memory quantized model (float32 embedding) is close to the file's (Q8_0 embedding).
        let c = try tm.model.prefill(tokens: ids, cache: tm.model.makeCache()).logits.data
        XCTAssertFalse(zip(a, c).allSatisfy { $0 == $1 })
    }

    func testCalibrationWindowsAreTheFirstWholeWindows() throws {
        let toks: [Int32] = Array(0..<23)
        XCTAssertEqual(try DecoderConvert.calibrationWindows(tokens: toks, count: 9, length: 5, bos: nil),
                       [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]])
        XCTAssertEqual(try DecoderConvert.calibrationWindows(tokens: toks, count: 2, length: 5, bos: 99), [[99, 1, 2, 3, 4], [99, 6, 7, 8, 9]])
        XCTAssertThrowsError(try DecoderConvert.calibrationWindows(tokens: toks, count: 1, length: 30, bos: nil))
    }

    /// Llama files keep q/k rows in llama.cpp's order: the byte-row permutation the writer applies is
    /// the inverse of the reader's `DecoderLM.unpermuteGGUFRows`.
    func testLlamaRowPermutationInvertsTheReaders() {
        let rows = 24, heads = 3, cols = 2
        let values: [Float] = (0..<(rows * cols)).map { Float($0) }
        let bytes = values.withUnsafeBytes { Array($0) }
        let permuted = DecoderConvert.permuteRowsToGGUF(bytes, rows: rows, heads: heads, rowBytes: cols * 4)
        let floats = permuted.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertNotEqual(floats, values)
        XCTAssertEqual(DecoderLM.unpermuteGGUFRows(floats, rows: rows, heads: heads), values)
    }

    /// With `signedMaxScale` (--grid llama-q4_0) RTN is llama.cpp's Q4_0 grid: on few-bit weights (k/1024, as bf16-born
    /// weights (d = m / -8 is then exact) every d is the reference quantiser's (GGUFQuantize, bit-equal
    /// to gguf-py) and every code too, except exact ties (x/d = k + 1/2), which torch's rounding sends
    /// to even and llama.cpp's `(int)(x/d + 8.5)` sends up. AutoGPTQ's grid (2·max|w|/15) differs.
    func testLlamaGridRTNMatchesTheReferenceQ4_0ExceptTies() throws {
        var g = SplitMix64(seed: 7)
        let rows = 16, cols = 64
        // k/1024 with |k| <= 15 and one ±16 per block: 8·k/16 is a half-integer for odd k (many ties, as
        // bf16-born weights have), and the ±16 pins each block's extreme.
        var W: [Float] = (0..<(rows * cols)).map { _ in Float(Int(g.symmetric() * 15.9)) / 1024 }
        for b in 0..<(rows * cols / 32) { W[b * 32 + (b * 7) % 32] = b % 2 == 0 ? 16.0 / 1024 : -16.0 / 1024 }
        var cfg = try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16)
        cfg.signedMaxScale = true
        let ours = try DecoderConvert.q4_0Bytes(try RTN.quantize(weight: W, rows: rows, columns: cols, groupSize: 32, quantizer: cfg))
        let ref = GGUFQuantize.quantize(.q4_0, W)!
        XCTAssertEqual(ours.count, ref.count)
        var ties = 0
        for b in 0..<(ours.count / 18) {
            XCTAssertEqual(ours[b * 18], ref[b * 18]); XCTAssertEqual(ours[b * 18 + 1], ref[b * 18 + 1])
            let d = Float(Float16(bitPattern: UInt16(ref[b * 18]) | UInt16(ref[b * 18 + 1]) << 8))
            for j in 0..<32 {
                let sh = j < 16 ? 0 : 4, k = j % 16
                let a = Int((ours[b * 18 + 2 + k] >> sh) & 15), r = Int((ref[b * 18 + 2 + k] >> sh) & 15)
                let v = W[b * 32 + j] / d
                if v - v.rounded(.down) == 0.5 { ties += 1; XCTAssertTrue(r == a || r == a + 1) } else { XCTAssertEqual(a, r, "block \(b) element \(j)") }
            }
        }
        XCTAssertGreaterThan(ties, 0)   // the data exercises the tie rule
        let autogptq = try DecoderConvert.q4_0Bytes(try RTN.quantize(weight: W, rows: rows, columns: cols, groupSize: 32,
                                                                     quantizer: try QuantizerConfig(bits: 4, symmetric: true, scaleRounding: .float16)))
        XCTAssertNotEqual(autogptq, ref)
    }

    // MARK: Q4_1

    /// Q4_1 output (`--gguf-type q4_1`): every block linear's bytes decode (GGUFDequant, bit-equal to
    /// gguf-py: float32 `(d * q) + m`) to exactly GPTQ's fake-quantized weight, and that weight is
    /// (scale·code) + offset with the scale and offset GPTQ decided (both float16 values, scale > 0),
    /// with and without act-order (static groups). Loss > 0 and codes that differ from RTN's: GPTQ ran.
    func testQ4_1BlocksDecodeBitExactlyToGPTQWeights() throws {
        let src = try makeSourceGGUF()
        for descAct in [false, true] {
            let tm = try TextModel.open(src)
            var o = DecoderConvert.Options(); o.descAct = descAct; o.target = .q4_1
            let mods = try DecoderConvert.quantize(model: tm.model, windows: windows(4, 48, vocab: tm.model.dims.vocab), options: o)
            XCTAssertEqual(mods.count, 2 * 7)
            var rtnDiffers = false, codesSeen = Set<UInt8>()
            for m in mods {
                let w = m.weight
                let back = try DecoderConvert.q4_1Bytes(w).withUnsafeBytes { GGUFDequant.dequantize(.q4_1, blocks: $0) }
                XCTAssertEqual(back.map(\.bitPattern), w.q.map(\.bitPattern), "\(m.log.module) desc_act \(descAct)")
                for r in 0..<w.rows {
                    for c in 0..<w.columns {
                        let g = r * w.groups + c / 32
                        let d = w.scale[g], off = w.zero[g], code = w.codes[r * w.columns + c]
                        codesSeen.insert(code)
                        let product = d * Float(code)
                        XCTAssertEqual(w.q[r * w.columns + c].bitPattern, (product + off).bitPattern)
                        if c % 32 == 0 { XCTAssertTrue(d > 0 && Float(Float16(d)) == d && Float(Float16(off)) == off) }
                    }
                }
                XCTAssertGreaterThan(w.lossSum, 0)
                let W = Kernels.floats((try TextModel.open(src).model.linear(layer: m.layer, m.linear) as! Linear).weightView)
                let rtn = try RTN.quantize(weight: W, rows: w.rows, columns: w.columns, groupSize: 32, quantizer: try o.quantizer)
                if rtn.codes != w.codes { rtnDiffers = true }
            }
            XCTAssertTrue(rtnDiffers)
            XCTAssertEqual(codesSeen.count, 16)  // the asymmetric grid uses both ends
        }
    }

    /// RTN on the Q4_1 grid against llama.cpp's reference Q4_1 quantiser (GGUFQuantize, bit-equal to
    /// gguf-py): every block's stored d and m are the same bytes (f16((max-min)/15), f16(min)); codes
    /// may differ by one where the reference's float32 d and our float16 d put x on different sides of a
    /// rounding boundary (the reference rounds d a second time after choosing codes; we do not).
    /// Without float16 rounding the offsets are not float16 values and Q4_1 encoding refuses them.
    func testQ4_1GridMatchesTheReferenceScaleAndMin() throws {
        var g = SplitMix64(seed: 11)
        let rows = 8, cols = 96
        let W: [Float] = (0..<(rows * cols)).map { i in Float(g.symmetric()) * 0.05 + (i % 64 < 32 ? 0.02 : -0.01) }
        var o = DecoderConvert.Options(); o.target = .q4_1
        let q = try RTN.quantize(weight: W, rows: rows, columns: cols, groupSize: 32, quantizer: try o.quantizer)
        let ours = try DecoderConvert.q4_1Bytes(q), ref = GGUFQuantize.quantize(.q4_1, W)!
        XCTAssertEqual(ours.count, ref.count)
        var differ = 0
        for b in 0..<(ours.count / 20) {
            XCTAssertEqual(Array(ours[(b * 20)..<(b * 20 + 4)]), Array(ref[(b * 20)..<(b * 20 + 4)]), "block \(b) d/m")
            for j in 0..<32 {
                let sh = j < 16 ? 0 : 4, k = j % 16
                let a = Int((ours[b * 20 + 4 + k] >> sh) & 15), r = Int((ref[b * 20 + 4 + k] >> sh) & 15)
                XCTAssertLessThanOrEqual(abs(a - r), 1)
                if a != r { differ += 1 }
            }
        }
        XCTAssertLessThan(differ, rows * cols / 20)
        var raw = try QuantizerConfig(bits: 4, symmetric: false)
        raw.minOffset = true
        XCTAssertThrowsError(try DecoderConvert.q4_1Bytes(try RTN.quantize(weight: W, rows: rows, columns: cols, groupSize: 32, quantizer: raw)))
        var wrongGrid = DecoderConvert.Options(); wrongGrid.target = .q4_1; wrongGrid.grid = .q4_0
        XCTAssertThrowsError(try DecoderConvert.quantize(model: try TextModel.open(try makeSourceGGUF()).model, windows: [], options: wrongGrid))
    }

    /// A Q4_1 file: file_type 3 (MOSTLY_Q4_1), block linears Q4_1 decoding to GPTQ's q, the rest as
    /// for Q4_0 (tied embedding: Q8_0; 1-D: F32).
    func testWrittenQ4_1GGUFHoldsQ4_1Blocks() throws {
        let src = try makeSourceGGUF()
        let tm = try TextModel.open(src)
        var o = DecoderConvert.Options(); o.target = .q4_1; o.method = .rtn
        let mods = try DecoderConvert.quantize(model: tm.model, windows: [], options: o)
        let out = tmp + "/tiny-q4_1.gguf"
        try DecoderConvert.writeGGUF(source: tm.gguf!, architecture: tm.model.architecture, dims: tm.model.dims, modules: mods,
                                     target: .q4_1, provenance: "test", to: out, overwrite: false)
        let f = try GGUFFile(path: out)
        XCTAssertEqual(f.value(forKey: "general.file_type")?.int, 3)
        var byName: [String: [Float]] = [:]
        for m in mods { byName[DecoderTensorNaming.gguf.module(m.layer, m.linear) + ".weight"] = m.weight.q }
        for t in f.ggufTensors {
            XCTAssertEqual(t.type, t.shape.count == 1 ? .f32 : t.name == "token_embd.weight" ? .q8_0 : .q4_1, t.name)
            if let q = byName[t.name] { XCTAssertEqual(try GGUFDequant.dequantize(t, of: f).map(\.bitPattern), q.map(\.bitPattern), t.name) }
        }
        XCTAssertEqual(byName.count, 14)
    }
}
