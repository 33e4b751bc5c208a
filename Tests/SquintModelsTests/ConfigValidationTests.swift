import Foundation
import XCTest
import SquintFormats
import SquintModels
import TestSupport

/// Issue 17, item 1: every number of a config is checked (finite, in range, consistent) before it
/// sizes anything; each refusal is one line naming the file, the key and the allowed range. Before
/// the fix these values trapped (Int(Double) of a huge mlp_ratio, a negative range bound) or made
/// `inspect` allocate gigabytes (2^31 layers).
final class ConfigValidationTests: XCTestCase {
    func tiny() throws -> QwenVLConfig { try QwenVLConfig.load(path: fixturePath("qwen-vl-tiny/config.json")) }

    func assertRefused(_ c: QwenVLConfig, key: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try c.validate(path: "cfg.json"), file: file, line: line) { e in
            guard case .config(let p, let m)? = e as? ModelError else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertEqual(p, "cfg.json", file: file, line: line)
            XCTAssert(m.hasPrefix(key), "\(m)", file: file, line: line)
            XCTAssertFalse("\(e)".contains("\n"), file: file, line: line)
        }
    }

    func testTheTinyAndRealConfigsPass() throws {
        XCTAssertNoThrow(try tiny().validate())
        XCTAssertNoThrow(try QwenVLConfig.load(path: fixturePath("qwen-vl/config-bf16.json")))
        XCTAssertNoThrow(try QwenVLConfig.load(path: fixturePath("qwen-vl/config-int4.json")))
    }

    func testOutOfRangeNumbersAreRefusedByKeyBeforeAnythingIsSized() throws {
        let base = try tiny()
        let cases: [(String, (inout QwenVLConfig) -> Void)] = [
            ("visual.mlp_ratio", { $0.visual.mlpRatio = 1e300 }),
            ("visual.mlp_ratio", { $0.visual.mlpRatio = -4.9231 }),
            ("visual.mlp_ratio", { $0.visual.mlpRatio = .nan }),
            ("visual.mlp_ratio", { $0.visual.mlpRatio = .infinity }),
            ("visual.mlp_ratio", { $0.visual.mlpRatio = 0.001 }),         // width * ratio < 1
            ("num_hidden_layers", { $0.numHiddenLayers = -1 }),
            ("num_hidden_layers", { $0.numHiddenLayers = 1 << 31 }),
            ("visual.layers", { $0.visual.layers = -2 }),
            ("visual.layers", { $0.visual.layers = 1 << 31 }),
            ("num_attention_heads", { $0.numAttentionHeads = 0 }),
            ("visual.heads", { $0.visual.heads = 0 }),
            ("hidden_size", { $0.hiddenSize = 130 }),                     // not a multiple of 4 heads
            ("hidden_size", { $0.hiddenSize = -128 }),
            ("vocab_size", { $0.vocabSize = 0 }),
            ("vocab_size", { $0.vocabSize = Int.max }),
            ("seq_length", { $0.seqLength = -1 }),
            ("intermediate_size", { $0.intermediateSize = -768 }),
            ("intermediate_size", { $0.intermediateSize = 769 }),
            ("layer_norm_epsilon", { $0.layerNormEpsilon = .nan }),
            ("layer_norm_epsilon", { $0.layerNormEpsilon = -1e-6 }),
            ("rotary_emb_base", { $0.rotaryEmbBase = .infinity }),
            ("rotary_pct", { $0.rotaryPct = .nan }),
            ("visual.patch_size", { $0.visual.patchSize = 0 }),
            ("visual.patch_size", { $0.visual.patchSize = 449 }),
            ("visual.image_size", { $0.visual.imageSize = -448 }),
            ("visual.image_start_id", { $0.visual.imageStartId = 151934 }),   // <imgpad> would be past the vocabulary
            ("visual.width", { $0.visual.width = 66 }),                    // not a multiple of 4 heads
            ("kv_channels", { $0.kvChannels = 31 }),
            ("quantization_config.bits", { $0.quantizationConfig = QuantizationConfig(bits: 5) }),
            ("quantization_config.damp_percent", { $0.quantizationConfig = QuantizationConfig(dampPercent: .nan) }),
        ]
        for (key, mutate) in cases {
            var c = base
            mutate(&c)
            assertRefused(c, key: key)
        }
    }

    func testAFileNamesItselfTheKeyAndTheRange() throws {
        let dir = Fixtures.temporaryFolder("config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var text = try String(contentsOfFile: fixturePath("qwen-vl-tiny/config.json"), encoding: .utf8)
        text = text.replacingOccurrences(of: "\"mlp_ratio\": 4.9231", with: "\"mlp_ratio\": 1e300")
        try text.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try QwenVLConfig.load(path: dir + "/config.json")) { e in
            XCTAssertEqual("\(e)", "\(dir)/config.json: visual.mlp_ratio is 1e+300, allowed a finite number with 1 <= visual.width * mlp_ratio <= 1048576")
        }
    }

    func testQuantizationSettingsAreCheckedToo() {
        XCTAssertNoThrow(try QuantizationConfig().validate(path: "q.json"))
        XCTAssertNoThrow(try QuantizationConfig(groupSize: -1).validate(path: "q.json"))
        for (q, key) in [(QuantizationConfig(bits: 0), "bits"), (QuantizationConfig(groupSize: 0), "group_size"),
                         (QuantizationConfig(groupSize: -2), "group_size"), (QuantizationConfig(dampPercent: -0.1), "damp_percent"),
                         (QuantizationConfig(dampPercent: .infinity), "damp_percent")] {
            XCTAssertThrowsError(try q.validate(path: "q.json")) { XCTAssert("\($0)".hasPrefix("q.json: \(key) is "), "\($0)") }
        }
        XCTAssertNoThrow(try SQ4Quantization().validate(path: "m.sq4"))
        var s = SQ4Quantization(); s.dampPercent = .nan
        XCTAssertThrowsError(try s.validate(path: "m.sq4")) { XCTAssert("\($0)".contains("quantization.damp_percent is nan"), "\($0)") }
        s = SQ4Quantization(); s.groupSize = 1 << 40
        XCTAssertThrowsError(try s.validate(path: "m.sq4")) { XCTAssert("\($0)".contains("quantization.group_size"), "\($0)") }
    }

    // Item 5: a NaN or Inf scale is refused by tensor name when an Int4 layer is loaded.
    func testNonFiniteInt4ScalesAreRefusedByName() throws {
        let spec = QuantizedLinearSpec(name: "blk.w", outFeatures: 2, inFeatures: 64, groupSize: 32, symmetric: true,
                                       actOrder: false, hasBias: false)
        let codes = OwnedBytes.view(name: spec.codesName, dtype: .u8, shape: [2, 32], [UInt8](repeating: 0x88, count: 64))
        let good: [UInt16] = [0x3C00, 0x3C00, 0x3C00, 0x3C00]                 // 1.0
        XCTAssertNoThrow(try QuantizedLinearRecord(spec: spec, codes: codes, scales: OwnedBytes.view(name: spec.scalesName, dtype: .f16, shape: [2, 2], good),
                                                   zeros: nil, perm: nil, bias: nil, path: "m.sq4"))
        for (bits, what) in [(UInt16(0x7E00), "NaN"), (0xFC00, "Inf"), (0x7C00, "Inf")] {
            var s = good; s[3] = bits                                          // row 1, group 1
            let scales = OwnedBytes.view(name: spec.scalesName, dtype: .f16, shape: [2, 2], s)
            XCTAssertThrowsError(try QuantizedLinearRecord(spec: spec, codes: codes, scales: scales, zeros: nil, perm: nil, bias: nil, path: "m.sq4")) {
                XCTAssertEqual("\($0)", "m.sq4: invalid: linear 'blk.w': scale [1, 1] of 'blk.w.q4_scales' is \(what)")
            }
        }
    }

    // Item 5: NaN logits never make the sampler leave the vocabulary (it used to pick a padded id,
    // which the tokenizer then refused as "outside the vocabulary").
    func testSamplingNaNLogitsStaysInsideTheVocabulary() {
        var logits = [Float](repeating: .nan, count: 1000)
        logits[7] = 3
        for options in [SamplingOptions(doSample: true, topP: 0.3, seed: 1), SamplingOptions(doSample: true, topK: 5, seed: 2), .greedy] {
            var s = Sampler(options)
            XCTAssertEqual(s.next(logits), 7)
        }
        let allNaN = [Float](repeating: .nan, count: 1000)
        var s = Sampler(SamplingOptions(doSample: true, topP: 0.3, seed: 3))
        XCTAssert((0..<1000).contains(s.next(allNaN)))
        XCTAssertEqual(firstNonFinite(logits), 0)
        XCTAssertNil(firstNonFinite([Float](repeating: 1, count: 5)))
    }
}
