import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import SquintPipeline
import SquintTokenizer
import TestSupport

/// `Validator` on the tiny BF16 model vs the official Int4 tiny model, both on the reference prompt,
/// against drift computed by torch from the two reference implementations' own outputs
/// (fixtures/qwen-vl-tiny/int4/validate_expected.json and the two reference.safetensors), never from
/// Squint's.
///
/// Tolerances: our logits match each reference within 1.5e-5 absolute (observed by the parity tests);
/// KL and log-probabilities are smooth in the logits (a shift of every logit of either model by at most
/// e moves KL and log p by at most 2e each), so with both models off by 1.5e-5 the numbers may differ
/// by up to 4 x 1.5e-5 = 6e-5 absolute (observed: 2e-7 on KL, 7e-7 on log-perplexity).
final class ValidateTests: XCTestCase {
    static let tol = 6e-5

    final class Models {
        static let shared: Result<Models, Error> = Result { try Models() }
        let bf16: QwenVLModel, int4: QwenVLModel
        let ids: [Int32], pixels: FloatTensor
        let expected: [String: Any]
        let refBF16: FixtureSafetensors, refInt4: FixtureSafetensors
        let folder: String
        init() throws {
            let config = try QwenVLConfig.load(path: fixturePath("qwen-vl-tiny/config.json"))
            let synthetic = syntheticCheckpoint(config: config, seed: 20240611)
            bf16 = try QwenVLModel(config: config, weights: synthetic)
            folder = Fixtures.temporaryFolder("validate-int4")
            try TinyInt4.writeAutoGPTQFolder(synthetic: synthetic, to: folder)
            let opened = try CheckpointOpener.open(folder)
            int4 = try QwenVLModel(config: opened.config!, weights: opened.file)
            refBF16 = try FixtureSafetensors(path: fixturePath("qwen-vl-tiny/reference.safetensors"))
            refInt4 = try FixtureSafetensors(path: fixturePath("qwen-vl-tiny/int4/reference_trimmed.safetensors"))
            ids = try refBF16.ints("input_ids").values
            let px = try refBF16.floats("pixel_values")
            pixels = FloatTensor(shape: px.shape, data: px.values)
            expected = try Fixtures.json("qwen-vl-tiny/int4/validate_expected.json") as! [String: Any]
        }
    }

    var m: Models!
    override func setUpWithError() throws { m = try Models.shared.get() }
    override class func tearDown() {
        if let m = try? Models.shared.get() { try? FileManager.default.removeItem(atPath: m.folder) }
    }

    func testKLTopAgreementAndPerplexityOnTheRowsBothReferencesStoreInFull() throws {
        // Context = the first 277 tokens: scored positions 276...290 (each predicts the next prompt
        // token), all inside the 16 rows whose full logits both references store.
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: 277, pixelValues: m.pixels)
        let r = try Validator.run(bf16: m.bf16, int4: m.int4, samples: [sample], options: ValidateOptions(greedyTokens: 0, worstCount: 3))
        let rows = (m.expected["rows"] as! [[String: Any]]).filter { ($0["position"] as! Int) <= 290 }
        XCTAssertEqual(rows.count, 15)
        XCTAssertEqual(r.positions, 15)
        let kls = rows.map { $0["kl"] as! Double }
        XCTAssertEqual(r.klMean, kls.reduce(0, +) / 15, accuracy: Self.tol)
        XCTAssertEqual(r.klMax, kls.max()!, accuracy: Self.tol)
        XCTAssertEqual(r.klMedian, kls.sorted()[7], accuracy: Self.tol)
        let sorted = kls.sorted()
        XCTAssertEqual(r.klP99, sorted[13] + (sorted[14] - sorted[13]) * 0.86, accuracy: Self.tol)   // numpy linear: 0.99 * 14 = 13.86
        XCTAssertEqual(r.top1Agreement, Double(rows.filter { $0["top1_agree"] as! Bool }.count) / 15)
        XCTAssertEqual(r.top5Agreement, Double(rows.filter { $0["top5_agree"] as! Bool }.count) / 15)
        let nllA = rows.map { -($0["logprob_bf16"] as! Double) }.reduce(0, +) / 15
        let nllB = rows.map { -($0["logprob_int4"] as! Double) }.reduce(0, +) / 15
        XCTAssertEqual(log(r.pplBF16), nllA, accuracy: Self.tol)
        XCTAssertEqual(log(r.pplInt4), nllB, accuracy: Self.tol)
        XCTAssertEqual(log(r.pplRatio), nllB - nllA, accuracy: 2 * Self.tol)
        // The worst position is the reference's largest-KL row, with its token.
        let worst = rows.max { ($0["kl"] as! Double) < ($1["kl"] as! Double) }!
        XCTAssertEqual(r.worst.first?.position, worst["position"] as? Int)
        XCTAssertEqual(r.worst.first?.tokenId, worst["next_id"] as? Int)
        XCTAssertEqual(r.worst.first?.bf16TopId, worst["argmax_bf16"] as? Int)
        XCTAssertEqual(r.worst.first?.int4TopId, worst["argmax_int4"] as? Int)
        XCTAssertEqual(r.worst.count, 3)
        XCTAssertEqual(r.klHistogram.counts.reduce(0, +), 15)
    }

    func testTopAgreementAtEveryPositionMatchesTheReferenceTop20() throws {
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: 1, pixelValues: m.pixels)
        let r = try Validator.run(bf16: m.bf16, int4: m.int4, samples: [sample], options: ValidateOptions(greedyTokens: 0))
        let t1 = (m.expected["all_positions_top1_agree"] as! [Bool]).prefix(291)
        let t5 = (m.expected["all_positions_top5_agree"] as! [Bool]).prefix(291)
        XCTAssertEqual(r.positions, 291)
        XCTAssertEqual(r.top1Agreement, Double(t1.filter { $0 }.count) / 291)
        XCTAssertEqual(r.top5Agreement, Double(t5.filter { $0 }.count) / 291)
    }

    func testPerBlockAndImageFeatureDriftMatchTheReferenceHiddenStates() throws {
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: 277, pixelValues: m.pixels)
        let r = try Validator.run(bf16: m.bf16, int4: m.int4, samples: [sample], options: ValidateOptions(greedyTokens: 0))
        let (shape, ha) = try m.refBF16.floats("hidden_states")
        let hb = try m.refInt4.floats("hidden_states").values
        XCTAssertEqual(r.perBlock.map(\.name), ["embeddings", "block 0", "block 1 + ln_f"])
        let per = shape[1] * shape[2]
        func drift(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>, dim: Int) -> (Double, Double) {
            let x = Array(a), y = Array(b)
            var dd = 0.0, aa = 0.0, cos = 0.0
            for t in 0..<(x.count / dim) {
                var ab = 0.0, a2 = 0.0, b2 = 0.0
                for j in (t * dim)..<((t + 1) * dim) {
                    let u = Double(x[j]), w = Double(y[j])
                    dd += (w - u) * (w - u); ab += u * w; a2 += u * u; b2 += w * w
                }
                aa += a2; cos += ab / (a2.squareRoot() * b2.squareRoot())
            }
            return ((dd / aa).squareRoot(), cos / Double(x.count / dim))
        }
        for i in 0..<shape[0] {
            let (rel, cos) = drift(ha[(i * per)..<((i + 1) * per)], hb[(i * per)..<((i + 1) * per)], dim: shape[2])
            // Our two hidden states are each within Tol.hidden of their reference: the drift between
            // them (relative errors ~1e-2 here) agrees to ~1e-4 relative.
            XCTAssertEqual(r.perBlock[i].relativeError, rel, accuracy: 1e-4 + 1e-3 * rel, "block \(i - 1)")
            XCTAssertEqual(r.perBlock[i].cosine, cos, accuracy: 1e-5, "block \(i - 1)")
        }
        let fa = try m.refBF16.floats("image_features").values, fb = try m.refInt4.floats("image_features").values
        let (rel, cos) = drift(fa[...], fb[...], dim: 128)
        XCTAssertEqual(r.imageFeatures!.relativeError, rel, accuracy: 1e-4 + 1e-3 * rel)
        XCTAssertEqual(r.imageFeatures!.cosine, cos, accuracy: 1e-5)
    }

    func testGreedyContinuationsAreTheReferenceGreedyIds() throws {
        // Context = the whole prompt: each model's 8 greedy tokens are its reference's greedy_ids
        // (BF16 and Int4 differ at the 8th token: 68910 vs 10090).
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: m.ids.count, pixelValues: m.pixels)
        let r = try Validator.run(bf16: m.bf16, int4: m.int4, samples: [sample], options: ValidateOptions(greedyTokens: 8))
        let ga = try m.refBF16.ints("greedy_ids").values.map(Int.init), gb = try m.refInt4.ints("greedy_ids").values.map(Int.init)
        XCTAssertEqual(r.greedy.first?.bf16Ids, ga)
        XCTAssertEqual(r.greedy.first?.int4Ids, gb)
        let same = zip(ga, gb).filter { $0 == $1 }.count, prefix = zip(ga, gb).prefix { $0 == $1 }.count
        XCTAssertEqual(r.greedy.first?.matchedPrefix, prefix)
        XCTAssertEqual(r.greedyAgreement, Double(same) / 8)
        XCTAssertEqual(r.greedyPrefixAgreement, Double(prefix) / 8)
        XCTAssertEqual(r.positions, 0)
        // Nothing scored: the statistics are NaN, and a gate cannot pass on them.
        XCTAssert(r.klMean.isNaN && r.top1Agreement.isNaN && r.pplRatio.isNaN)
        XCTAssertFalse(Validator.gate(r, maxKL: 1, minTop1: nil).passed)
    }

    func testLongSequencesPastSeqLengthAreScoredInOnePass() throws {
        // seq_length 280: the 292-token prompt gets dynamic-NTK alpha 3 and logn scaling, its first 278
        // tokens alpha 1. Teacher forcing must then equal one whole-sequence prefill (not context +
        // caption chunks), and the greedy continuation a fresh prefill of the context, as generate() does.
        var config = m.bf16.config
        config.seqLength = 280
        let a = try QwenVLModel(config: config, weights: syntheticCheckpoint(config: config, seed: 20240611))
        let opened = try CheckpointOpener.open(m.folder)
        var c4 = opened.config!
        c4.seqLength = 280
        let b = try QwenVLModel(config: c4, weights: opened.file)
        let ctx = 278
        let sample = ValidationSample(label: "long", ids: m.ids, contextLength: ctx, pixelValues: m.pixels)
        var options = ValidateOptions(greedyTokens: 3, worstCount: 1000)
        options.maxSampleTokens = m.ids.count      // past seq_length on purpose (the default cuts there)
        let r = try Validator.run(bf16: a, int4: b, samples: [sample], options: options)
        var expectedKL: [Double] = []
        var full: [[Float]] = []
        for model in [a, b] {
            let f = try model.vision.encode(pixelValues: m.pixels)
            let cache = KVCache(config: config, capacity: m.ids.count)
            full.append(try model.language.prefill(ids: m.ids, imageFeatures: f, cache: cache, allLogits: true).logits.data)
        }
        let v = config.vocabSize
        for p in (ctx - 1)..<(m.ids.count - 1) {
            expectedKL.append(Validator.kl(Validator.logSoftmax(full[0][(p * v)..<((p + 1) * v)]), Validator.logSoftmax(full[1][(p * v)..<((p + 1) * v)])))
        }
        let got = r.worst.sorted { $0.position < $1.position }.map(\.kl)
        XCTAssertEqual(got.count, expectedKL.count)
        for (x, y) in zip(got, expectedKL) { XCTAssertEqual(x, y, accuracy: 1e-9) }
        for (model, ids) in [(a, r.greedy[0].bf16Ids), (b, r.greedy[0].int4Ids)] {
            let g = try model.generateGreedy(ids: Array(m.ids.prefix(ctx)), pixelValues: m.pixels, steps: 3)
            XCTAssertEqual(ids, g.ids.map(Int.init))
        }
    }

    /// Issue 17, item 5: a model whose weights hold NaN is refused at the first non-finite logit,
    /// naming the model, the sample and the position (it used to report `KL nan` with exit 0).
    func testNonFiniteLogitsAreRefusedWithModelSampleAndPosition() throws {
        let config = m.bf16.config
        let weights = syntheticCheckpoint(config: config, seed: 20240611)
        let head = try weights.view("lm_head.weight")                  // BF16 [vocab, hidden]
        XCTAssertEqual(head.info.dtype, .bf16)
        var bytes = [UInt8](head.bytes)
        let row = 1234 * config.hiddenSize * 2
        bytes[row] = 0xC0; bytes[row + 1] = 0x7F                       // one BF16 NaN in token 1234's row
        weights.remove("lm_head.weight")
        try weights.add(name: "lm_head.weight", dtype: head.info.dtype, shape: head.info.shape) { $0.copyBytes(from: bytes) }
        let poisoned = try QwenVLModel(config: config, weights: weights)
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: 277, pixelValues: m.pixels)
        XCTAssertThrowsError(try Validator.run(bf16: m.bf16, int4: poisoned, int4Name: "int4-dir", samples: [sample],
                                               options: ValidateOptions(greedyTokens: 0))) { e in
            guard case .nonFinite(let message)? = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(message, "int4-dir: the logits of sample reference at position 0 (input token id \(m.ids[0])) are not finite (token id 1234 is nan)")
        }
    }

    /// The progress count only rises, reports every step once and ends at its total, through both
    /// models' passes and both prefills of each (context, then caption). At full size the bar went back
    /// when the caption's prefill began (the block hook restarted at block 1: 48 % -> 34 %).
    func testProgressOnlyRisesThroughBothPrefillsOfEveryPass() throws {
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: 277, pixelValues: m.pixels)
        XCTAssertGreaterThan(m.ids.count, 277, "the sample must have a caption after its context (two prefills)")
        let L = m.bf16.config.numHiddenLayers
        func check(_ seen: [(done: Int, total: Int, detail: String)], passes: Int, _ what: String) {
            let total = passes * 2 * L
            XCTAssert(seen.allSatisfy { $0.total == total }, what)
            XCTAssertEqual(seen.map(\.done), seen.map(\.done).sorted(), "\(what): progress went back")
            XCTAssertEqual(Set(seen.map(\.done)), Set(0...total), "\(what): a step was skipped")
            XCTAssertEqual(seen.filter { $0.detail.hasSuffix("(caption)") }.count, passes * L, what)
            XCTAssertEqual(seen.last?.done, total, what)
        }
        var seen: [(done: Int, total: Int, detail: String)] = []
        _ = try Validator.run(bf16: m.bf16, int4: m.int4, samples: [sample, sample], options: ValidateOptions(greedyTokens: 2),
                              progress: { seen.append(($0, $1, $2)) })
        check(seen, passes: 4, "validate")
        let dir = Fixtures.temporaryFolder("validate-progress")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try ValidationBase(saving: dir + "/base.safetensors", identity: ["test": "progress"], overwrite: false)
        seen = []
        try Validator.recordBase(bf16: m.bf16, samples: [sample], options: ValidateOptions(greedyTokens: 2), base: base,
                                 progress: { seen.append(($0, $1, $2)) })
        check(seen, passes: 1, "--save-base")
    }

    func testIdenticalModelsHaveNoDrift() throws {
        let sample = ValidationSample(label: "reference", ids: m.ids, contextLength: 277, pixelValues: m.pixels)
        let r = try Validator.run(bf16: m.int4, int4: m.int4, samples: [sample], options: ValidateOptions(greedyTokens: 4, maxKL: 0, minTop1: 1))
        XCTAssertEqual(r.klMax, 0)
        XCTAssertEqual(r.top1Agreement, 1)
        XCTAssertEqual(r.pplRatio, 1)
        XCTAssert(r.perBlock.allSatisfy { $0.relativeError == 0 && abs($0.cosine - 1) < 1e-12 })
        XCTAssertTrue(r.gate.passed)
    }

    func testGateFailsOnEachThreshold() throws {
        var r = try Validator.run(bf16: m.bf16, int4: m.int4,
                                  samples: [ValidationSample(label: "reference", ids: m.ids, contextLength: 277, pixelValues: m.pixels)],
                                  options: ValidateOptions(greedyTokens: 0))
        XCTAssertTrue(r.gate.passed)
        r.gate = Validator.gate(r, maxKL: r.klMean / 2, minTop1: nil)
        XCTAssertFalse(r.gate.passed)
        XCTAssert(r.gate.failures[0].hasPrefix("kl_mean"))
        r.gate = Validator.gate(r, maxKL: r.klMean * 2, minTop1: min(1, r.top1Agreement + 0.01))
        XCTAssertFalse(r.gate.passed)
        XCTAssert(r.gate.failures[0].hasPrefix("top1_agreement"))
        XCTAssertTrue(Validator.gate(r, maxKL: r.klMean, minTop1: r.top1Agreement).passed)
    }

    func testPercentileIsNumpyLinear() {
        XCTAssertEqual(Validator.percentile([1, 2, 3, 4], 50), 2.5)
        XCTAssertEqual(Validator.percentile([0, 10], 99), 9.9, accuracy: 1e-12)
        XCTAssertEqual(Validator.percentile([5], 99), 5)
    }
}

/// Reading pairs.jsonl: the calibration rendering rule, and errors that name the file and line.
final class ValidationPairsTests: XCTestCase {
    func tokenizer() throws -> QwenTokenizer { try QwenTokenizer(vocabularyFile: Fixtures.path("tokenizer/qwen.tiktoken")) }

    func testPairZeroRendersAsTheCalibrationExample() throws {
        // fixtures/calibration/RENDERING.md: pair 0 is 338 tokens, 287 of them context, <img> at 19.
        let s = try ValidationSample.load(pairs: Fixtures.path("calibration/pairs.jsonl"), tokenizer: try tokenizer(), limit: 1)
        XCTAssertEqual(s.count, 1)
        XCTAssertEqual(s[0].ids.count, 338)
        XCTAssertEqual(s[0].contextLength, 287)
        XCTAssertEqual(s[0].ids[19], 151857)
        XCTAssertEqual(s[0].ids.last, 151645)
        XCTAssertEqual(s[0].pixelValues?.shape, [1, 3, 448, 448])
        XCTAssertEqual(s[0].label, "images/skimage_astronaut.png")
    }

    func testBadLinesAreReportedWithFileAndLine() throws {
        let dir = Fixtures.temporaryFolder("pairs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/pairs.jsonl"
        let cases: [(String, Int, String)] = [
            ("{\"image\": \"a.png\", \"prompt\": \"x\", \"caption\": \"y\"}\nnot json\n", 1, ""),   // line 1: image missing
            ("\n{\"image\": \"a.png\", \"prompt\": \"x\"}\n", 2, "missing \"caption\""),
            ("{\"image\": 3, \"prompt\": \"x\", \"caption\": \"y\"}", 1, "\"image\" must be a string"),
            ("[1, 2]\n", 1, "must be a JSON object"),
        ]
        for (text, line, message) in cases {
            try text.write(toFile: p, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try ValidationSample.load(pairs: p, tokenizer: try tokenizer())) { e in
                if message.isEmpty {
                    XCTAssert("\(e)".contains("a.png"), "\(e)")   // the missing image is named
                } else {
                    guard case .line(p, line, _)? = e as? PairsFileError else { return XCTFail("\(e)") }
                    XCTAssert("\(e)".hasPrefix("\(p):\(line): ") && "\(e)".contains(message), "\(e)")
                }
            }
        }
        // File-level problems name the file, not a line 0.
        try "\n\n".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ValidationSample.load(pairs: p, tokenizer: try tokenizer())) { e in
            XCTAssertEqual("\(e)", "\(p): no image-text pairs in the file")
        }
        XCTAssertThrowsError(try ValidationSample.load(pairs: dir + "/none.jsonl", tokenizer: try tokenizer())) { e in
            XCTAssertEqual("\(e)", "\(dir)/none.jsonl: cannot open the file: no such file")
        }
    }
}

/// The uncertainties against Python's `statistics` module (stdev with n - 1, as llama-perplexity's
/// KL-divergence mode uses): values in the comments were printed by
/// `statistics.stdev(x) / math.sqrt(len(x))` etc. in CPython 3.11. Double arithmetic on 5 values:
/// agreement to 1e-15.
final class DriftStatisticsTests: XCTestCase {
    func testStandardErrorsMatchPythonStatistics() {
        let x = [0.1, 0.4, 0.25, 0.05, 0.3]
        let (mean, se) = DriftStatistics.meanAndStandardError(x)
        XCTAssertEqual(mean, 0.22, accuracy: 1e-15)
        XCTAssertEqual(se, 0.06442049363362562, accuracy: 1e-15)
        XCTAssertEqual(DriftStatistics.binomialStandardError(0.8, n: 5), 0.1788854381999832, accuracy: 1e-15)
        // Perplexity ratio exp(mean d) with error exp(mean d) * se(d).
        let d = DriftStatistics.meanAndStandardError([0.5, -0.25, 0.125, 1.0])
        XCTAssertEqual(d.mean, 0.34375, accuracy: 1e-15)
        XCTAssertEqual(d.se, 0.2670001170411728, accuracy: 1e-15)
        XCTAssertEqual(exp(d.mean) * d.se, 0.37653051637967383, accuracy: 1e-14)
        XCTAssertTrue(DriftStatistics.meanAndStandardError([1]).se.isNaN, "one value has no spread")
    }
}
