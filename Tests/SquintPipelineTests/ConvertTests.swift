import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor
@testable import SquintPipeline
import TestSupport

/// `convert` against the official AutoGPTQ run on the tiny model (fixtures/qwen-vl-tiny/int4/:
/// the quantized tensors of the official Int4 checkpoint, its small fp16 tensors, the sha256 of the
/// large ones, config/quantize_config and the per-module loss log), with the same 8 calibration
/// pairs (fixtures/calibration) and settings (bits 4, group 128, sym, damp 0.01, true sequential).
final class ConvertTests: XCTestCase {
    /// One synthetic tiny model and one GPTQ AutoGPTQ-format conversion, shared by the tests.
    struct Shared {
        let root: String
        let model: String
        let autogptq: String
        let result: ConvertResult
    }
    nonisolated(unsafe) static var cached: Shared?
    nonisolated(unsafe) static var cachedError: Error?

    static let modules = ["attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj"]
    static var allModules: [String] { (0..<2).flatMap { l in modules.map { "transformer.h.\(l).\($0)" } } }
    static var pairs: String { Fixtures.path("calibration/pairs.jsonl") }
    static var vocab: String { Fixtures.path("tokenizer/qwen.tiktoken") }

    static func shared() throws -> Shared {
        if let cached { return cached }
        if let cachedError { throw cachedError }
        do {
            let root = Fixtures.temporaryFolder("convert")
            let model = "\(root)/model"
            _ = try Synth.run(.init(configPath: Fixtures.path("qwen-vl-tiny/config.json"), seed: 20240611, format: .safetensors,
                                    maxShardSize: 40_000_000, output: model, vocabPath: vocab))
            var o = ConvertOptions(model: model, calibration: pairs, output: "\(root)/int4-autogptq")
            o.format = .autogptq
            o.maxShardSize = 40_000_000     // shards + index, as the real release (and a cheap source checksum for the repack)
            let r = try Converter.run(o)
            cached = Shared(root: root, model: model, autogptq: "\(root)/int4-autogptq", result: r)
            return cached!
        } catch { cachedError = error; throw error }
    }

    override class func tearDown() {
        if let c = cached { try? FileManager.default.removeItem(atPath: c.root) }
        cached = nil
    }

    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("convert-case") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func official() throws -> SafetensorsFile { try SafetensorsFile(path: Fixtures.path("qwen-vl-tiny/int4/quantized_modules.safetensors")) }
    func ours(_ s: Shared) throws -> TensorFile { try CheckpointOpener.open(s.autogptq).file }

    func fm(write data: Data, to path: String) throws {
        try FileManager.default.createDirectory(atPath: Paths.parent(of: path), withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }

    static func words(_ v: TensorView) -> [UInt32] {
        (0..<(v.bytes.count / 4)).map { UInt32(littleEndian: v.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }
    static func halves(_ v: TensorView) -> [Float] {
        (0..<(v.bytes.count / 2)).map { Float(Float16(bitPattern: UInt16(littleEndian: v.bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))) }
    }
    /// 4-bit codes of a qweight [in/8, out] word array, unpacked by SPEC §5.4 (low nibble first).
    static func codes(_ w: [UInt32]) -> [UInt8] { w.flatMap { x in (0..<8).map { UInt8((x >> (4 * UInt32($0))) & 0xF) } } }

    // MARK: - Parity with the official AutoGPTQ run

    func testCalibrationTokensMatchTheOfficialRun() throws {
        let log = try Fixtures.json("qwen-vl-tiny/int4/gptq_log.json") as! [String: Any]
        let samples = (log["calibration"] as! [String: Any])["samples"] as! [[String: Any]]
        let set = try CalibrationSet(path: Self.pairs, tokenizer: try .init(vocabularyFile: Self.vocab))
        XCTAssertEqual(set.samples.map(\.image), samples.map { $0["image"] as! String })
        XCTAssertEqual(set.samples.map(\.tokens.count), samples.map { $0["n_tokens"] as! Int })
        XCTAssertEqual(set.totalTokens, (log["calibration"] as! [String: Any])["total_tokens"] as! Int)
        XCTAssertEqual(set.samples[0].imagePath, Fixtures.path("calibration/images/skimage_astronaut.png"))
    }

    /// The calibration activations themselves: the inputs of block 1 (ViT + embeddings + the
    /// quantized block 0) against the c_attn inputs the official driver captured
    /// (fixtures/gptq-cases/l1_attn_c_attn.safetensors `X` = ln_1 of those inputs).
    func testBlockOneInputsMatchTheOfficialDriversActivations() throws {
        let s = try Self.shared()
        var o = ConvertOptions(model: s.model, calibration: Self.pairs, output: "\(tmp)/stop.sq4")
        let work = Converter.workFolder(for: o.output)
        var x1: [Float] = []
        var lengths: [Int] = []
        o.afterBlock = { l in
            let state = try WorkFolder<ConvertWorkState>.read("\(work)/state.json")!
            lengths = state.tokens
            let store = try ActivationStore(folder: "\(work)/acts-1", hidden: 128, tokens: state.tokens, budget: 0)
            for i in 0..<state.tokens.count { x1 += try store.get(i) }
            throw ConvertError.interrupted(afterBlock: l)
        }
        XCTAssertThrowsError(try Converter.run(o))
        let ref = try SafetensorsFile(path: Fixtures.path("gptq-cases/l1_attn_c_attn.safetensors"))
        let X = Kernels.floats(try ref.view("X"))                                // [2582, 128]
        XCTAssertEqual(lengths.reduce(0, +) * 128, X.count)
        let source = try CheckpointOpener.open(s.model).file
        let g = Kernels.floats(try source.view("transformer.h.1.ln_1.weight"))
        var ln = [Float](repeating: 0, count: x1.count)
        Kernels.rmsNorm(x1, weight: g, &ln, rows: x1.count / 128, dim: 128, eps: 1e-6)
        var num = 0.0, den = 0.0
        for (a, b) in zip(ln, X) { num += Double(a - b) * Double(a - b); den += Double(b) * Double(b) }
        // Measured 7.1e-7: float32 summation order only.
        XCTAssertLessThan((num / den).squareRoot(), 1e-5)
    }

    /// One-character relative names (`squint convert m -o o`) used to crash in Foundation's path code
    /// (SIGILL in `deletingLastPathComponent`); synth, convert and the calibration's relative images
    /// must work from the current folder. The RTN file must equal the one written under full paths.
    func testOneCharacterRelativeNames() throws {
        let s = try Self.shared()
        let fm = FileManager.default
        let previous = fm.currentDirectoryPath
        defer { _ = fm.changeCurrentDirectoryPath(previous) }
        XCTAssertTrue(fm.changeCurrentDirectoryPath(tmp))
        _ = try Synth.run(.init(configPath: Fixtures.path("qwen-vl-tiny/config.json"), seed: 20240611, format: .safetensors,
                                maxShardSize: 40_000_000, output: "m", vocabPath: Self.vocab))
        try fm.copyItem(atPath: Fixtures.path("calibration/images"), toPath: "images")
        try fm.copyItem(atPath: Self.pairs, toPath: "p")              // images named relative to "p"'s folder: "."
        var o = ConvertOptions(model: "m", calibration: "p", output: "o")
        o.format = .autogptq
        o.maxShardSize = 40_000_000
        let r = try Converter.run(o)
        XCTAssertEqual(r.samples, s.result.samples)
        let shards = try fm.contentsOfDirectory(atPath: s.autogptq).filter { $0.hasSuffix(".safetensors") }
        XCTAssertFalse(shards.isEmpty)
        for f in shards {
            let (a, b) = (try MappedFile(path: "o/\(f)"), try MappedFile(path: "\(s.autogptq)/\(f)"))
            XCTAssertEqual(sha256Hex(a.bytes), sha256Hex(b.bytes), f)
        }
    }

    /// --bits 3 --format autogptq: AutoGPTQ's 3-bit layout (qweight [in·3/32, out], qzeros [groups, out·3/32],
    /// zero − 1 = 3 in every field for sym), with RTN so that every code can be recomputed here from the
    /// source weight by AutoGPTQ's min-max rule. The runtime refuses it by name instead of misreading it.
    func testThreeBitAutoGPTQOutput() throws {
        let s = try Self.shared()
        var o = ConvertOptions(model: s.model, calibration: nil, output: "\(tmp)/ag3")
        o.method = .rtn; o.format = .autogptq; o.bits = 3
        _ = try Converter.run(o)
        let f = try CheckpointOpener.open("\(tmp)/ag3")
        XCTAssertEqual(f.quantization?.bits, 3)
        let source = try CheckpointOpener.open(s.model).file
        for m in ["transformer.h.0.mlp.c_proj", "transformer.h.1.attn.c_attn"] {
            let w = Kernels.floats(try source.view(m + ".weight"))                   // [out, in]
            let (out, inF) = (try source.view(m + ".weight").info.shape[0], try source.view(m + ".weight").info.shape[1])
            XCTAssertEqual(try f.file.view(m + ".qweight").info.shape, [inF * 3 / 32, out])
            XCTAssertEqual(try f.file.view(m + ".qzeros").info.shape, [inF / 128, out * 3 / 32])
            let qw = Self.words(try f.file.view(m + ".qweight")).map { Int32(bitPattern: $0) }
            let qz = Self.words(try f.file.view(m + ".qzeros")).map { Int32(bitPattern: $0) }
            XCTAssertEqual(Set(AutoGPTQPacking.unpackColumns(qz, rows: inF / 128, cols: out, bits: 3)), [3])
            let codes = AutoGPTQPacking.unpackRows(qw, rows: inF, cols: out, bits: 3)   // [in, out]
            var mismatches = 0
            for r in 0..<out {
                for g in 0..<(inF / 128) {
                    // AutoGPTQ's find_params (sym, per row-group, float32): xmin = min(x, 0), xmax = max(x, 0),
                    // xmax = max(|xmin|, xmax), xmin = -xmax where xmin < 0; scale = (xmax - xmin) / 7, zero 4.
                    let xs = w[(r * inF + g * 128)..<(r * inF + g * 128 + 128)]
                    var lo = min(xs.min()!, 0), hi = max(xs.max()!, 0)
                    hi = max(abs(lo), hi)
                    if lo < 0 { lo = -hi }
                    if lo == 0 && hi == 0 { lo = -1; hi = 1 }
                    let scale = (hi - lo) / 7
                    for i in (g * 128)..<(g * 128 + 128) {
                        let expected = min(max((w[r * inF + i] / scale).rounded(.toNearestOrEven) + 4, 0), 7)
                        if Float(codes[i * out + r]) != expected { mismatches += 1 }
                    }
                }
            }
            XCTAssertEqual(mismatches, 0, m)
        }
        XCTAssertThrowsError(try LoadedModel(folder: "\(tmp)/ag3", vocab: Self.vocab)) { e in
            XCTAssertTrue("\(e)".contains("3-bit AutoGPTQ checkpoint"), "\(e)")
        }
    }

    /// RTN: one find_params per group of the original weight, no calibration. Against the official
    /// Quantizer's RTN of the same weights (fixtures/gptq-cases `rtn_sym_g128`).
    func testRTNMatchesTheOfficialQuantizer() throws {
        let s = try Self.shared()
        var o = ConvertOptions(model: s.model, calibration: nil, output: "\(tmp)/rtn")
        o.method = .rtn; o.format = .autogptq
        let r = try Converter.run(o)
        XCTAssertEqual(r.samples, 0)
        let f = try SafetensorsFile(path: "\(tmp)/rtn/model.safetensors")
        for (case_, module) in [("l0_mlp_c_proj", "transformer.h.0.mlp.c_proj"), ("l1_attn_c_attn", "transformer.h.1.attn.c_attn")] {
            let ref = try SafetensorsFile(path: Fixtures.path("gptq-cases/\(case_).safetensors"))
            let codes = try ref.view("rtn_sym_g128.codes")                        // U8 [out, in]
            let out = codes.info.shape[0], inF = codes.info.shape[1]
            let words = Self.words(try f.view(module + ".qweight"))              // [in/8, out]
            var mismatches = 0
            for o in 0..<out {
                for i in 0..<inF where UInt8((words[(i / 8) * out + o] >> (4 * UInt32(i % 8))) & 0xF) != codes.bytes[o * inF + i] {
                    mismatches += 1
                }
            }
            XCTAssertEqual(mismatches, 0, module)
            let scale = Kernels.floats(try ref.view("rtn_sym_g128.scale"))        // [out, groups] float32
            let groups = scale.count / out
            let ours = Self.halves(try f.view(module + ".scales"))               // [groups, out] fp16
            for o in 0..<out { for g in 0..<groups { XCTAssertEqual(ours[g * out + o], Float(Float16(scale[o * groups + g])), module) } }
        }
    }

    func testCodesAgreeWithAutoGPTQ() throws {
        let s = try Self.shared()
        let (a, b) = (try ours(s), try official())
        var same = 0, total = 0
        var report: [String] = []
        for m in Self.allModules {
            let ca = Self.codes(Self.words(try a.view(m + ".qweight"))), cb = Self.codes(Self.words(try b.view(m + ".qweight")))
            XCTAssertEqual(ca.count, cb.count, m)
            let k = zip(ca, cb).filter { $0 == $1 }.count
            same += k; total += cb.count
            report.append(String(format: "%@ %.4f%%", m, 100 * Double(k) / Double(cb.count)))
            if m.hasPrefix("transformer.h.0.") || m == "transformer.h.1.attn.c_attn" {
                // Inputs identical up to float32 noise: every code and the packed words agree exactly.
                XCTAssertEqual(k, cb.count, "\(m): codes differ from AutoGPTQ")
                XCTAssertEqual(try a.view(m + ".qweight").bytes.elementsEqual(try b.view(m + ".qweight").bytes), true, m)
            }
        }
        let pct = 100 * Double(same) / Double(total)
        print("convert parity: identical codes \(String(format: "%.4f", pct))% (\(same)/\(total)); " + report.joined(separator: ", "))
        // Measured 98.68%: block 0 is bit-identical; block 1 diverges through float32 noise in its
        // inputs (GPTQ's error feedback amplifies it; see docs/QUANTIZING.md "Agreement").
        XCTAssertGreaterThanOrEqual(pct, 98.5)
    }

    /// The whole official pipeline (torch ViT + resampler, official QWenBlock, AutoGPTQ fasterquant;
    /// scripts/parity/official_gptq.py, mode torchvit) run on this machine with 2 threads instead of the
    /// reference's 1 lands on other codes than the reference in 1.32% of the weights, all in block 1,
    /// where float32 noise is amplified. Squint's conversion equals that run on every code: the
    /// end-to-end difference from the reference is the official code's own spread, not ours.
    func testEveryCodeEqualsTheOfficialPipelineOnTwoThreads() throws {
        let s = try Self.shared()
        let a = try ours(s)
        let official = try SafetensorsFile(path: Fixtures.path("qwen-vl-tiny/int4/official_codes_torchvit_2threads.safetensors"))
        var same = 0, total = 0
        for m in Self.allModules {
            let expected = try official.view(m + ".codes")                 // [out, in] U8
            let (rows, cols) = (expected.info.shape[0], expected.info.shape[1])
            let codes = Self.codes(Self.words(try a.view(m + ".qweight")))   // word (c/8, r), nibble c%8
            var k = 0
            for r in 0..<rows { for c in 0..<cols where codes[((c / 8) * rows + r) * 8 + c % 8] == expected.bytes[r * cols + c] { k += 1 } }
            XCTAssertEqual(k, rows * cols, "\(m): \(rows * cols - k) codes differ from the official pipeline's")
            same += k; total += rows * cols
        }
        XCTAssertEqual(total, 425_984)
        XCTAssertEqual(same, total)
    }

    /// The block loop alone (per-group Hessians over the samples, fasterquant, fake-quantized re-runs
    /// feeding the next group and block) against the official code on the same activations: the
    /// fixture holds block-0 calibration inputs and the codes that a torch transcription of the
    /// official QWenBlock + AutoGPTQ (scripts/parity/official_gptq.py, run with the reference's AVX2
    /// kernels on one thread; provenance in fixtures/qwen-vl-tiny/int4/README.md) computes from them.
    /// Every code of both blocks must agree: from equal inputs, nothing in our quantization path
    /// departs from AutoGPTQ.
    func testFromTheSameActivationsEveryCodeMatchesTheOfficialCode() throws {
        // The fixture's official codes were computed (in torch) from block inputs that Squint made
        // with 2 threads, and within a block GPTQ's choices follow the last bit of every activation
        // (one different code changes the error carried to all later columns): OpenBLAS's sgemm sums
        // the rows at the edge of each thread's part in another order, so the same run on 1 thread
        // starts to differ at block 0's mlp.w1 (8 codes) and cascades. This test therefore runs the
        // configuration the fixture was made in, whatever $SQUINT_THREADS says; the 1-thread run is
        // covered by testEveryCodeEqualsTheOfficialPipelineOnTwoThreads's sibling checks and by the
        // code agreement bounds of testCodesAgreeWithAutoGPTQ.
        let savedThreads = Threads.count
        Threads.count = 2
        defer { Threads.count = savedThreads }
        let s = try Self.shared()
        let fixture = try SafetensorsFile(path: Fixtures.path("qwen-vl-tiny/int4/official_codes_from_block0_inputs.safetensors"))
        let opened = try CheckpointOpener.open(s.model)
        let model = try QwenVLModel(config: opened.config!, weights: opened.file)
        let h = model.config.hiddenSize
        let tokens = try (0..<8).map { try fixture.view("sample.\($0)").info.shape[0] }
        XCTAssertEqual(tokens.reduce(0, +), s.result.tokens)
        var inputs = try ActivationStore(folder: "\(tmp)/acts-0", hidden: h, tokens: tokens, budget: 1 << 30)
        for i in 0..<8 { try inputs.put(i, Kernels.floats(try fixture.view("sample.\(i)"))) }
        let o = ConvertOptions(model: s.model, calibration: Self.pairs, output: "\(tmp)/unused")
        let qconfig = try QuantizerConfig(bits: 4, symmetric: true, perChannel: true)
        let gopts = GPTQOptions(quantizer: qconfig, blockSize: 128, percDamp: 0.01, groupSize: 128, actOrder: false, staticGroups: false)
        var same = 0, total = 0
        for l in 0..<2 {
            let outputs = try ActivationStore(folder: "\(tmp)/acts-\(l + 1)", hidden: h, tokens: tokens, budget: 1 << 30)
            var seconds: [String: Double] = [:]
            let (packed, _, _) = try Converter.quantizeBlock(l, model: model, weights: opened.file, inputs: inputs, outputs: outputs, options: o,
                                                          gptq: gopts, quantizer: qconfig, stageSeconds: &seconds, tick: { _, _ in })
            XCTAssertEqual(packed.count, 5)
            for (m, p) in packed {
                let name = "transformer.h.\(l).\(m.rawValue)"
                let expected = try fixture.view(name + ".codes")        // [out, in] U8
                let (rows, cols) = (expected.info.shape[0], expected.info.shape[1])
                let ours = Self.codes(p.qweight.map { UInt32(bitPattern: $0) })   // word (c/8, r), nibble c%8
                var k = 0
                for r in 0..<rows { for c in 0..<cols where ours[((c / 8) * rows + r) * 8 + c % 8] == expected.bytes[r * cols + c] { k += 1 } }
                XCTAssertEqual(k, rows * cols, "\(name): \(rows * cols - k) codes differ from the official code")
                same += k; total += rows * cols
            }
            inputs = outputs
        }
        XCTAssertEqual(total, 425_984)
        XCTAssertEqual(same, total)
    }

    func testZerosGroupIndexAndBiasIdenticalScalesWithinTolerance() throws {
        let s = try Self.shared()
        let (a, b) = (try ours(s), try official())
        for m in Self.allModules {
            for suffix in [".qzeros", ".g_idx", ".bias"] {
                XCTAssertTrue(try a.view(m + suffix).bytes.elementsEqual(try b.view(m + suffix).bytes), m + suffix)
            }
            XCTAssertTrue(Self.words(try a.view(m + ".qzeros")).allSatisfy { $0 == 0x7777_7777 }, m)
            let sa = Self.halves(try a.view(m + ".scales")), sb = Self.halves(try b.view(m + ".scales"))
            if m == "transformer.h.1.mlp.c_proj" {
                // The module where block-1 noise cascades: scales of later groups are found on the
                // error-fed weight. The first group (found on the original weight) is exact.
                let out = 128
                XCTAssertEqual(Array(sa[0..<out]), Array(sb[0..<out]), m)
                let worst = zip(sa, sb).map { abs($0 - $1) / abs($1) }.max()!
                XCTAssertLessThan(worst, 0.1, m)
            } else {
                XCTAssertEqual(sa, sb, m + ".scales")
            }
        }
    }

    func testPerModuleLossesMatchTheGPTQLog() throws {
        let s = try Self.shared()
        let log = try Fixtures.json("qwen-vl-tiny/int4/gptq_log.json") as! [String: Any]
        let ref = log["modules"] as! [[String: Any]]
        XCTAssertEqual(s.result.modules.map(\.module), ref.map { $0["module"] as! String })
        // The log file beside the output holds the same entries.
        let written = try JSONDecoder().decode(ConvertResult.self, from: Data(contentsOf: URL(fileURLWithPath: "\(s.autogptq)/convert_log.json")))
        XCTAssertEqual(written.modules.map(\.avgLoss), s.result.modules.map(\.avgLoss))
        for (m, r) in zip(s.result.modules, ref) {
            let expected = r["avg_loss"] as! Double
            XCTAssertEqual(m.nsamples, r["nsamples"] as! Int)
            XCTAssertEqual(m.tokens, r["tokens"] as! Int)
            XCTAssertEqual(m.shapeOutIn, r["shape_out_in"] as! [Int])
            // Block 0: same inputs, same H up to summation order -> ~1e-6. Block 1: inputs carry
            // float32 noise from block 0 -> within 1%.
            let tol = m.module.hasPrefix("transformer.h.0.") ? 1e-4 : 1e-2
            XCTAssertEqual(m.avgLoss, expected, accuracy: tol * expected, m.module)
        }
    }

    func testAutoGPTQFolderHasTheOfficialFilesAndTensors() throws {
        let s = try Self.shared()
        let ref = Fixtures.path("qwen-vl-tiny/int4")
        for f in ["config.json", "quantize_config.json"] {
            var ours = try String(contentsOfFile: "\(s.autogptq)/\(f)", encoding: .utf8)
            // The source came from `synth`, whose label (docs/SYNTHETIC_WEIGHTS.md) follows the weights
            // into the config, in transformers' sorted place; the official file has everything else.
            if f == "config.json" {
                XCTAssertTrue(ours.contains("\n  \"squint_synthetic\": true,\n"))
                ours = ours.replacingOccurrences(of: "\n  \"squint_synthetic\": true,\n", with: "\n")
            }
            XCTAssertEqual(Data(ours.utf8), try Data(contentsOf: URL(fileURLWithPath: "\(ref)/\(f)")), f)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(s.autogptq)/generation_config.json")),
                       try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("qwen-vl-tiny/generation_config.json"))))
        XCTAssertEqual(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: "\(s.autogptq)/qwen.tiktoken"))),
                       sha256Hex(try Data(contentsOf: URL(fileURLWithPath: Self.vocab))))
        let a = try ours(s)
        let dense = try SafetensorsFile(path: "\(ref)/dense_small_f16.safetensors")
        let large = try Fixtures.json("qwen-vl-tiny/int4/dense_large_sha256.json") as! [String: [String: Any]]
        let quant = try official()
        // Same names, dtypes and shapes as the official file.
        let expected = Set(dense.tensors.map(\.name) + quant.tensors.map(\.name) + large.keys)
        XCTAssertEqual(Set(a.tensors.map(\.name)), expected)
        for t in dense.tensors + quant.tensors {
            XCTAssertEqual(a.info(t.name)?.dtype, t.dtype, t.name); XCTAssertEqual(a.info(t.name)?.shape, t.shape, t.name)
        }
        // Non-quantized tensors are the fp16 of the BF16 source, byte for byte.
        for t in dense.tensors {
            XCTAssertTrue(try a.view(t.name).bytes.elementsEqual(try dense.view(t.name).bytes), t.name)
        }
        for (name, d) in large {
            XCTAssertEqual(a.info(name)?.shape, d["shape"] as? [Int])
            XCTAssertEqual(sha256Hex(try a.view(name).bytes), d["sha256"] as! String, name)
        }
    }

    func testRealConfigAutoGPTQPlanMatchesTheOfficialTensorList() throws {
        let config = try QwenVLConfig.load(path: Fixtures.path("qwen-vl/config-bf16.json"))
        let plan = ConvertOutput.autogptqTensors(config: config, bits: 4, groupSize: 128)
        let dtypeName: [DType: String] = [.f16: "float16", .i32: "int32"]
        var expected: [String: (String, String)] = [:]
        for line in try String(contentsOfFile: Fixtures.path("qwen-vl/tensors-int4.tsv"), encoding: .utf8).split(separator: "\n")
        where !line.hasPrefix("#") {
            let f = line.split(separator: "\t").map(String.init)
            expected[f[0]] = (f[1].replacingOccurrences(of: " ", with: ""), f[2])
        }
        XCTAssertEqual(plan.count, expected.count)
        XCTAssertEqual(Set(plan.map(\.name)), Set(expected.keys))
        for t in plan {
            XCTAssertEqual("[" + t.shape.map(String.init).joined(separator: ",") + "]", expected[t.name]?.0, t.name)
            XCTAssertEqual(dtypeName[t.dtype], expected[t.name]?.1, t.name)
        }
        let shards = try ConvertOutput.autogptqShards(config: config, bits: 4, groupSize: 128, maxShardSize: 2_000_000_000)
        XCTAssertEqual(shards.map(\.fileName), (1...5).map { "model-0000\($0)-of-00005.safetensors" })
    }

    // MARK: - Int4 logits

    /// A float32 model from an AutoGPTQ folder the way the Int4 references ran it: block linears
    /// dequantized as W = scale · (q − (zst + 1)) (exact in float32), every other tensor the fp16
    /// value widened. `modules` overrides the quantized tensors (e.g. with the official ones).
    func dequantizedModel(_ folder: String, modules: TensorFile? = nil) throws -> QwenVLModel {
        let config = try QwenVLConfig.load(path: "\(folder)/config.json")
        let file = try CheckpointOpener.open(folder).file
        let mem = InMemoryTensorFile()
        for spec in config.bf16TensorSpecs() {
            if let (prefix, part) = ConvertOutput.blockLinear(spec.name) {
                let src: TensorFile = modules ?? file
                if part.hasSuffix(".weight") {
                    let m = try AutoGPTQLayout.module(in: src, prefix: prefix)
                    try mem.add(name: spec.name, shape: spec.shape, f32: AutoGPTQLayout.dequantize(m) { Float(Float16(bitPattern: $0)) })
                } else {
                    try mem.add(name: spec.name, shape: spec.shape, f32: Kernels.floats(try src.view(spec.name)))
                }
            } else {
                try mem.add(name: spec.name, shape: spec.shape, f32: Kernels.floats(try file.view(spec.name)))
            }
        }
        return try QwenVLModel(config: config, weights: mem)
    }

    struct LogitComparison { var hiddenRel: [Double]; var top1Agree: Double; var maxTop20Diff: Float; var maxLSEDiff: Float }

    /// Prefill of the reference prompt (292 ids, one image) compared with the official Int4 run.
    func compareWithInt4Reference(_ model: QwenVLModel) throws -> LogitComparison {
        let prompt = try SafetensorsFile(path: Fixtures.path("qwen-vl-tiny/reference.safetensors"))
        let ref = try SafetensorsFile(path: Fixtures.path("qwen-vl-tiny/int4/int4_reference_small.safetensors"))
        let ids = (0..<292).map { Int32(littleEndian: try! prompt.view("input_ids").bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        let px = FloatTensor(shape: [1, 3, 448, 448], data: Kernels.floats(try prompt.view("pixel_values")))
        let features = try model.vision.encode(pixelValues: px)
        let cache = KVCache(config: model.config, capacity: ids.count)
        let out = try model.language.prefill(ids: ids, imageFeatures: features, cache: cache, allLogits: true, keepHiddenStates: true)
        let hs = Kernels.floats(try ref.view("hidden_states"))          // [3, 292, 128]
        var rel: [Double] = []
        for k in 0..<3 {
            let a = out.hiddenStates[k].data, b = Array(hs[(k * 292 * 128)..<((k + 1) * 292 * 128)])
            var num = 0.0, den = 0.0
            for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
            rel.append((num / den).squareRoot())
        }
        let topIds = try ref.view("topk_ids"), topLogits = Kernels.floats(try ref.view("topk_logits"))   // [292, 20]
        let lse = Kernels.floats(try ref.view("logsumexp"))
        let V = model.config.vocabSize
        var agree = 0, maxDiff: Float = 0, maxLSE: Float = 0
        for t in 0..<292 {
            let row = Array(out.logits.data[(t * V)..<((t + 1) * V)])
            let id0 = Int(Int32(littleEndian: topIds.bytes.loadUnaligned(fromByteOffset: 4 * (t * 20), as: Int32.self)))
            if argmax(row) == id0 { agree += 1 }
            for k in 0..<20 {
                let id = Int(Int32(littleEndian: topIds.bytes.loadUnaligned(fromByteOffset: 4 * (t * 20 + k), as: Int32.self)))
                maxDiff = max(maxDiff, abs(row[id] - topLogits[t * 20 + k]))
            }
            let m = row.max()!
            let l = m + log(row.reduce(Float(0)) { $0 + exp($1 - m) })
            maxLSE = max(maxLSE, abs(l - lse[t]))
        }
        return LogitComparison(hiddenRel: rel, top1Agree: Double(agree) / 292, maxTop20Diff: maxDiff, maxLSEDiff: maxLSE)
    }

    func testInt4LogitsAgreeWithTheOfficialInt4Reference() throws {
        let s = try Self.shared()
        // Control: the official quantized tensors with our fp16 tensors reproduce the reference.
        let official = try compareWithInt4Reference(try dequantizedModel(s.autogptq, modules: try official()))
        print("int4 logits, official modules: \(official)")
        XCTAssertEqual(official.top1Agree, 1)
        XCTAssertLessThan(official.maxTop20Diff, 1e-3)
        // Ours: block 0 is identical; block 1 differs in 1.3% of its codes.
        let ours = try compareWithInt4Reference(try dequantizedModel(s.autogptq))
        print("int4 logits, our conversion: \(ours)")
        // Measured: hidden after ln_f 1.26% (relative), top-1 290/292, top-20 logits within 0.23, while
        // the quantization drift itself (BF16 reference vs Int4 reference) is 3.16%, 272/292 and 0.17
        // in logsumexp. Our Int4 is ~2.5x closer to the official Int4 than the official Int4 is to BF16.
        XCTAssertLessThan(ours.hiddenRel[1], 1e-5)           // entering block 1: block 0 is the official one
        XCTAssertLessThan(ours.hiddenRel[2], 0.02)
        XCTAssertGreaterThanOrEqual(ours.top1Agree, 0.98)
        XCTAssertLessThan(ours.maxTop20Diff, 0.3)
        XCTAssertLessThan(ours.maxLSEDiff, 0.15)
    }

    // MARK: - SQ4 output, repack, resume, determinism

    func testSQ4RecordsHoldTheAutoGPTQResultAndTheBF16Source() throws {
        let s = try Self.shared()
        var o = ConvertOptions(model: s.model, calibration: Self.pairs, output: "\(tmp)/tiny.sq4")
        o.memoryBudget = 1    // every activation goes through the zstd files
        let r = try Converter.run(o)
        XCTAssertGreaterThan(r.spilledBytes, 0)
        let f = try SquintInt4File(path: "\(tmp)/tiny.sq4")
        try f.verify()
        XCTAssertEqual(f.linears.count, 10)
        // run/validate check the checksums before using the file: a flipped bit in a tensor is refused
        // (unless verification is turned off), never run silently.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: f.path))
        let at = f.tensors.first { $0.name == "transformer.wte.weight" }!.offset + 1000     // absolute file offset
        bytes[at] ^= 0x10
        try fm(write: bytes, to: "\(tmp)/flipped/model.sq4")
        for name in ["config.json", "qwen.tiktoken"] where FileManager.default.fileExists(atPath: "\(s.model)/\(name)") {
            try FileManager.default.copyItem(atPath: "\(s.model)/\(name)", toPath: "\(tmp)/flipped/\(name)")
        }
        XCTAssertThrowsError(try LoadedModel(folder: "\(tmp)/flipped/model.sq4", vocab: Self.vocab)) { e in
            XCTAssertTrue("\(e)".contains("transformer.wte.weight") && "\(e)".contains("checksum mismatch"), "\(e)")
        }
        XCTAssertNoThrow(try LoadedModel(folder: "\(tmp)/flipped/model.sq4", vocab: Self.vocab, verifyChecksums: false))
        XCTAssertEqual(f.header.tokenizer.qwenTiktokenSHA256, sha256Hex(try Data(contentsOf: URL(fileURLWithPath: Self.vocab))))
        XCTAssertEqual(f.header.quantization, SQ4Quantization())
        XCTAssertEqual(f.header.provenance.tool, Converter.toolVersion)
        XCTAssertEqual(f.header.provenance.sourceSHA256,
                       sha256Hex(try Data(contentsOf: URL(fileURLWithPath: "\(s.model)/model.safetensors.index.json"))))
        let ag = try ours(s)
        for m in Self.allModules {
            let back = try AutoGPTQLayout.toAutoGPTQ(try f.quantizedLinear(m), path: f.path)
            for (x, suffix) in [(back.qweight, ".qweight"), (back.qzeros, ".qzeros"), (back.scales, ".scales"), (back.gIdx, ".g_idx")] {
                XCTAssertTrue(x.bytes.elementsEqual(try ag.view(m + suffix).bytes), m + suffix)
            }
            XCTAssertEqual(f.linears.first { $0.name == m }?.hasBias, m.hasSuffix("c_attn"))
        }
        let source = try CheckpointOpener.open(s.model).file
        for name in ["transformer.wte.weight", "transformer.h.1.ln_2.weight", "transformer.visual.conv1.weight", "lm_head.weight"] {
            XCTAssertEqual(f.info(name)?.dtype, .bf16)
            XCTAssertTrue(try f.view(name).bytes.elementsEqual(try source.view(name).bytes), name)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(tmp)/tiny.sq4.log.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Converter.workFolder(for: "\(tmp)/tiny.sq4")))
    }

    /// Issue 16 item 5: the SQ4 file carries the folder's generation_config (version 2), and a lone
    /// file samples with it when no generation_config.json lies beside it.
    func testSQ4CarriesTheGenerationConfigALoneFileSamplesWith() throws {
        let s = try Self.shared()
        let model = "\(tmp)/gen-model"
        try FileManager.default.copyItem(atPath: s.model, toPath: model)
        try FileManager.default.removeItem(atPath: "\(model)/generation_config.json")
        try Data("{\"do_sample\": true, \"top_k\": 5, \"top_p\": 0.65}".utf8).write(to: URL(fileURLWithPath: "\(model)/generation_config.json"))
        var o = ConvertOptions(model: model, calibration: nil, output: "\(tmp)/lone/gen.sq4")
        o.method = .rtn
        try FileManager.default.createDirectory(atPath: "\(tmp)/lone", withIntermediateDirectories: false)
        _ = try Converter.run(o)
        let f = try SquintInt4File(path: "\(tmp)/lone/gen.sq4")
        XCTAssertEqual(f.version, 2)
        XCTAssertEqual(f.header.generationConfig?["top_p"], .double(0.65, text: "0.65"))
        XCTAssertEqual(f.header.generationConfig?["top_k"], .integer(5))
        let lone = try LoadedModel(folder: "\(tmp)/lone/gen.sq4")
        XCTAssertEqual(lone.generation.topP, 0.65)
        XCTAssertEqual(lone.generation.topK, 5)
    }

    func testInterruptedRunResumesToTheSameBytesAndRunsAreDeterministic() throws {
        let s = try Self.shared()
        var a = ConvertOptions(model: s.model, calibration: Self.pairs, output: "\(tmp)/a.sq4")
        a.maxSamples = 3
        _ = try Converter.run(a)
        a.output = "\(tmp)/b.sq4"
        a.afterBlock = { if $0 == 0 { throw ConvertError.interrupted(afterBlock: $0) } }
        XCTAssertThrowsError(try Converter.run(a)) { XCTAssertEqual($0 as? ConvertError, .interrupted(afterBlock: 0)) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/b.sq4"), "no partial output")
        let work = Converter.workFolder(for: "\(tmp)/b.sq4")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(work)/block-0.safetensors"))
        XCTAssertEqual(try WorkFolder<ConvertWorkState>.read("\(work)/state.json")?.threads, Threads.count)
        // What the CLI adds to any other failure (disk full, ...): what was kept and how to go on.
        XCTAssertEqual(Converter.resumeHint(for: "\(tmp)/b.sq4"), "1 finished block is saved in \(work): fix the problem and "
            + "run the same command with --resume to continue, or delete that folder to start over")
        XCTAssertNil(Converter.resumeHint(for: "\(tmp)/never-run.sq4"))
        // Without --resume the saved state is neither lost nor silently reused.
        a.afterBlock = nil
        XCTAssertThrowsError(try Converter.run(a)) { guard case .workState = $0 as? ConvertError else { return XCTFail("\($0)") } }
        // What a kill -9 during the final write leaves: the atomic writer's temporary file.
        let stale = "\(tmp)/.b.sq4.tmp-999999-1"
        try Data("partial".utf8).write(to: URL(fileURLWithPath: stale))
        a.resume = true
        let r = try Converter.run(a)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertEqual(r.resumedFromBlock, 1)
        XCTAssertEqual(r.modules.count, 10)
        XCTAssertEqual(r.samples, 3)
        let bytesA = try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/a.sq4"))
        XCTAssertEqual(bytesA, try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/b.sq4")), "resumed run differs")
        a.resume = false; a.output = "\(tmp)/c.sq4"
        _ = try Converter.run(a)
        XCTAssertEqual(bytesA, try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/c.sq4")), "second run differs")
        XCTAssertFalse(FileManager.default.fileExists(atPath: work))
    }

    /// A saved state records the thread count its run started with; resuming on another count is
    /// allowed (the output is still a valid conversion) but warned about, since it cannot give the
    /// bytes of an uninterrupted run; states from before the count was kept resume without a warning.
    func testResumingOnAnotherThreadCountIsWarnedAbout() throws {
        let saved = Threads.count
        defer { Threads.count = saved }
        let out = "\(tmp)/threads.sq4"
        func reopen() throws -> WorkFolder<BlockProgress> {
            try WorkFolder<BlockProgress>(output: out, fingerprint: "f", resume: true, force: false)
        }
        Threads.count = 2
        let first = try WorkFolder<BlockProgress>(output: out, fingerprint: "f", resume: false, force: false)
        try first.write(BlockProgress(fingerprint: "f", blocksDone: 1, threads: Threads.count))
        XCTAssertNil(try reopen().threadWarning)
        Threads.count = 1
        let w = try XCTUnwrap(try reopen().threadWarning)
        XCTAssertTrue(w.contains("saved run used 2 threads and this one uses 1"), w)
        XCTAssertTrue(w.contains("--threads 2"), w)
        try first.write(BlockProgress(fingerprint: "f", blocksDone: 1, threads: nil))
        XCTAssertFalse(try String(contentsOfFile: first.statePath, encoding: .utf8).contains("threads"))
        XCTAssertNil(try reopen().threadWarning)
        first.remove()
    }

    /// The progress bar's work (estimated FLOPs, ConvertWork) adds up to its total on a full run, a
    /// resumed run starts at the work of the saved blocks with the rate clock restarted (so its ETA is
    /// not inflated by work it did not do), and the ETA formula counts only clocked work.
    func testProgressWorkAddsUpAndAResumedRunStartsAtItsSavedBlocks() throws {
        let s = try Self.shared()
        var a = ConvertOptions(model: s.model, calibration: Self.pairs, output: "\(tmp)/work-a.sq4")
        a.maxSamples = 2
        var seen: [(done: Int, total: Int, work: Double, workTotal: Double)] = []
        let bar = ProgressBar(label: "t", unit: .items("steps"))
        bar.observer = { d, t, w, wt, _ in seen.append((d, t, w, wt)) }
        _ = try Converter.run(a, progress: bar)
        let full = try XCTUnwrap(seen.last)
        XCTAssertEqual(full.done, full.total, "every step ticked once")
        XCTAssertEqual(full.work, full.workTotal, accuracy: full.workTotal * 1e-12, "every step's work counted once")
        XCTAssertEqual(seen.count, full.total)
        // Calibration: each image weighs more than any one block pass of the tiny model.
        let imageWork = seen[0].work, passWork = seen[seen.count - 1].work - seen[seen.count - 2].work
        XCTAssertGreaterThan(imageWork, passWork)

        a.output = "\(tmp)/work-b.sq4"
        a.afterBlock = { if $0 == 0 { throw ConvertError.interrupted(afterBlock: $0) } }
        seen = []
        XCTAssertThrowsError(try Converter.run(a, progress: bar))
        let atKill = try XCTUnwrap(seen.last)
        a.afterBlock = nil; a.resume = true
        seen = []
        let bar2 = ProgressBar(label: "t", unit: .items("steps"))
        bar2.observer = { d, t, w, wt, _ in seen.append((d, t, w, wt)) }
        _ = try Converter.run(a, progress: bar2)
        let first = try XCTUnwrap(seen.first), last = try XCTUnwrap(seen.last)
        XCTAssertEqual(first.done, atKill.done + 1, "the resumed count continues after the saved block")
        XCTAssertEqual(bar2.clockDone, atKill.done, "the rate clock starts at the saved blocks")
        XCTAssertEqual(bar2.clockWork, atKill.work, accuracy: atKill.work * 1e-12)
        XCTAssertEqual(last.work, full.workTotal, accuracy: full.workTotal * 1e-12)
        // 25 of 100 units done in 10 s after a resume at 20: 5 per 10 s, 75 left -> 150 s.
        XCTAssertEqual(ProgressBar.eta(work: 25, workTotal: 100, clockWork: 20, seconds: 10), 150, accuracy: 1e-9)
        XCTAssertEqual(ProgressBar.eta(work: 20, workTotal: 100, clockWork: 20, seconds: 10), .infinity)
    }

    /// The output's write has its own byte progress (the full-size SQ4 took 344 s with none): it ends at
    /// its total, and that total is every byte of tensor data the written file holds.
    func testWriteProgressCountsEveryTensorByteOfTheOutput() throws {
        let s = try Self.shared()
        for format in [ConvertOptions.OutputFormat.squint, .autogptq] {
            var o = ConvertOptions(model: s.model, calibration: nil, output: "\(tmp)/rtn-\(format.rawValue)")
            o.method = .rtn; o.format = format
            var seen: [(Int, Int)] = []
            let bar = ProgressBar(label: "write", unit: .bytes)
            bar.observer = { d, t, _, _, _ in seen.append((d, t)) }
            _ = try Converter.run(o, writeProgress: bar)
            let last = try XCTUnwrap(seen.last, "\(format)")
            XCTAssertEqual(last.0, last.1, "\(format)")
            XCTAssertEqual(seen.map(\.0), seen.map(\.0).sorted(), "\(format): never backwards")
            let file = try CheckpointOpener.open(o.output).file
            XCTAssertEqual(last.1, file.tensors.reduce(0) { $0 + $1.byteCount }, "\(format)")
        }
    }

    /// /proc/self/status prints "%8lu kB" after a tab: from 10^7 kB on there is no space before the
    /// number. The peak RSS of the 1.5B's conversion (~11 GiB) was reported as 0 before this.
    func testMemoryFieldsAreReadAtEveryWidth() {
        let status = "Name:\tsquint\nVmHWM:\t11234567 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 9876543 kB\nRssFile:\t10000000 kB\n"
        let m = MemoryUsage.parse(status: status)
        XCTAssertEqual(m.peakRSS, 11_234_567 * 1024)
        XCTAssertEqual(m.anonymous, 9_876_543 * 1024)
        XCTAssertEqual(m.fileBacked, 10_000_000 * 1024)
        XCTAssertEqual(MemoryUsage.parse(status: "VmHWM:\t    2048 kB\n").peakRSS, 2048 * 1024)
        XCTAssertGreaterThan(peakRSSBytes(), 0)
    }

    func testAutoGPTQCheckpointIsRepackedWithoutRequantising() throws {
        let s = try Self.shared()
        let o = ConvertOptions(model: s.autogptq, calibration: nil, output: "\(tmp)/repacked.sq4")
        let r = try Converter.run(o)
        XCTAssertEqual(r.mode, "repacked")
        let f = try SquintInt4File(path: "\(tmp)/repacked.sq4")
        let ag = try ours(s)
        for m in Self.allModules {
            let rec = try f.quantizedLinear(m)
            let words = Self.words(try ag.view(m + ".qweight"))     // [in/8, out]
            let out = rec.spec.outFeatures
            var mismatches = 0
            for i in 0..<rec.spec.inFeatures {
                for o in 0..<out where rec.code(o, i) != UInt8((words[(i / 8) * out + o] >> (4 * UInt32(i % 8))) & 0xF) { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, m)
            XCTAssertNil(rec.zeros); XCTAssertNil(rec.perm)
            XCTAssertEqual(f.info(m + ".bias")?.dtype, .f16)
        }
        XCTAssertEqual(f.info("transformer.wte.weight")?.dtype, .f16)
        // The AutoGPTQ folder itself cannot be the target of another AutoGPTQ conversion.
        var bad = o; bad.format = .autogptq; bad.output = "\(tmp)/again"
        XCTAssertThrowsError(try Converter.run(bad))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/again"))
    }

    // MARK: - Refusals leave nothing behind

    func assertRefused(_ o: ConvertOptions, file: StaticString = #filePath, line: UInt = #line, _ check: (Error) -> Void) {
        XCTAssertThrowsError(try Converter.run(o), file: file, line: line, check)
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output), "output left behind", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Converter.workFolder(for: o.output)), "work folder left behind", file: file, line: line)
    }

    func testRefusals() throws {
        let s = try Self.shared()
        // Existing output: untouched.
        let existing = "\(tmp)/existing.sq4"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: existing))
        XCTAssertThrowsError(try Converter.run(ConvertOptions(model: s.model, calibration: Self.pairs, output: existing))) {
            XCTAssertEqual($0 as? FormatError, .exists(path: existing))
        }
        XCTAssertEqual(try String(contentsOfFile: existing, encoding: .utf8), "keep")

        // A bad jsonl line is named file:line.
        let calib = "\(tmp)/calib"
        try FileManager.default.createDirectory(atPath: "\(calib)/images", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("calibration/images/skimage_chelsea.png"), toPath: "\(calib)/images/cat.png")
        let good = #"{"image": "images/cat.png", "prompt": "Describe this image.", "caption": "A cat."}"#
        for (text, lineNo, needle) in [(good + "\n{\"image\": \"images/cat.png\", \"prompt\": 3, \"caption\": \"x\"}\n", 2, "prompt"),
                                       (good + "\n" + good + "\nnot json\n", 3, "JSON"),
                                       ("{\"image\": \"images/cat.png\"}\n", 1, "prompt")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: "\(calib)/pairs.jsonl"))
            assertRefused(ConvertOptions(model: s.model, calibration: "\(calib)/pairs.jsonl", output: "\(tmp)/o.sq4")) { e in
                XCTAssertTrue("\(e)".hasPrefix("\(calib)/pairs.jsonl:\(lineNo): "), "\(e)")
                XCTAssertTrue("\(e)".contains(needle), "\(e)")
            }
        }
        // A missing image is named.
        try Data((good + "\n" + good.replacingOccurrences(of: "cat.png", with: "dog.png") + "\n").utf8)
            .write(to: URL(fileURLWithPath: "\(calib)/pairs.jsonl"))
        assertRefused(ConvertOptions(model: s.model, calibration: "\(calib)/pairs.jsonl", output: "\(tmp)/o.sq4")) { e in
            XCTAssertEqual(e as? PairsFileError, .image(path: "\(calib)/pairs.jsonl", line: 2, image: "images/dog.png",
                                                        problem: "no such file (looked at \(calib)/images/dog.png)"))
        }
        // Settings no format can hold.
        for (format, bits, group) in [(ConvertOptions.OutputFormat.squint, 3, 128), (.squint, 8, 128), (.autogptq, 5, 128),
                                      (.autogptq, 4, 100), (.squint, 4, 0)] {
            var o = ConvertOptions(model: s.model, calibration: Self.pairs, output: "\(tmp)/o-\(bits)-\(group)")
            o.format = format; o.bits = bits; o.groupSize = group
            assertRefused(o) { guard case .invalidOption = $0 as? ConvertError else { return XCTFail("\($0)") } }
        }
    }
}
