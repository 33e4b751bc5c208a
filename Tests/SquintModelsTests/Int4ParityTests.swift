import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import SquintPipeline
import TestSupport

/// The official AutoGPTQ Int4 tiny checkpoint, rebuilt byte for byte (sha256 = the manifest's), run
/// through the runtime from its own AutoGPTQ layout and from an SQ4 file converted from it: logits,
/// hidden states and greedy ids equal the Int4 reference (official graph, dequantised weights in
/// float32). Tolerances are the BF16 parity ones (`Tol`): both sides compute the same float32 graph
/// on the same float32 weights (Int4 dequantisation is exact in float32: a 4-bit integer times an
/// F16 scale), so only summation order differs.
final class Int4ParityTests: XCTestCase {
    final class Fixture {
        static let shared: Result<Fixture, Error> = Result { try Fixture() }
        let folder: String
        let sq4Path: String
        let sha: String
        let size: Int
        let config: QwenVLConfig
        let reference: FixtureSafetensors
        let pixels: FloatTensor
        let ids: [Int32]

        init() throws {
            folder = Fixtures.temporaryFolder("int4-parity")
            config = try QwenVLConfig.load(path: fixturePath("qwen-vl-tiny/int4/config.json"))
            let synthetic = syntheticCheckpoint(config: config, seed: 20240611)
            try TinyInt4.writeAutoGPTQFolder(synthetic: synthetic, to: folder)
            sha = try TinyInt4.sha256(ofFile: folder + "/model.safetensors")
            size = (try FileManager.default.attributesOfItem(atPath: folder + "/model.safetensors")[.size] as! NSNumber).intValue
            sq4Path = folder + "/tiny-int4.sq4"
            try TinyInt4.writeSQ4(fromAutoGPTQ: try SafetensorsFile(path: folder + "/model.safetensors"),
                                  configPath: folder + "/config.json", to: sq4Path)
            reference = try FixtureSafetensors(path: fixturePath("qwen-vl-tiny/int4/reference_trimmed.safetensors"))
            let bf16 = try FixtureSafetensors(path: fixturePath("qwen-vl-tiny/reference.safetensors"))
            let px = try bf16.floats("pixel_values")   // the same image and preprocessing as the Int4 reference
            pixels = FloatTensor(shape: px.shape, data: px.values)
            ids = try reference.ints("input_ids").values
        }
    }

    var fx: Fixture!
    override func setUpWithError() throws { fx = try Fixture.shared.get() }
    override class func tearDown() {
        if let f = try? Fixture.shared.get() { try? FileManager.default.removeItem(atPath: f.folder) }   // 78 MB + the SQ4 file
    }

    func testRebuiltAutoGPTQCheckpointIsTheOfficialFileByteForByte() throws {
        XCTAssertEqual(fx.size, TinyInt4.manifestBytes)
        XCTAssertEqual(fx.sha, TinyInt4.manifestSHA256)
        let manifest = try Fixtures.json("qwen-vl-tiny/manifest.json") as! [String: Any]
        let files = manifest["files"] as! [String: [String: Any]]
        XCTAssertEqual(files["int4/model.safetensors"]?["sha256"] as? String, TinyInt4.manifestSHA256)
    }

    func testAutoGPTQFolderBindsItsBlockLinearsAsInt4() throws {
        let opened = try CheckpointOpener.open(fx.folder)
        let model = try QwenVLModel(config: opened.config!, weights: opened.file)
        XCTAssertEqual(model.quantization, .autoGPTQ)
        for l in 0..<fx.config.numHiddenLayers {
            for m in QwenLM.BlockLinear.allCases {
                XCTAssert(model.language.linear(layer: l, m) is QuantizedLinear, "layer \(l) \(m.rawValue)")
            }
        }
    }

    func testSQ4FileOpensWithItsHeaderConfigAndBindsInt4() throws {
        let opened = try CheckpointOpener.open(fx.sq4Path)   // config.json sits beside it, but the header has one too
        XCTAssertTrue(opened.isSquintInt4)
        XCTAssertEqual(opened.format, "squint-int4")
        let sq4 = try SquintInt4File(path: fx.sq4Path)
        try sq4.verify()
        let model = try QwenVLModel(config: fx.config, weights: sq4)
        XCTAssertEqual(model.quantization, .squintInt4)
        XCTAssert(model.language.linear(layer: 1, .mlpProj) is QuantizedLinear)
    }

    func testStrictBinderRefusesAStrayQuantizedTensor() throws {
        let src = try SafetensorsFile(path: fx.folder + "/model.safetensors")
        let mem = InMemoryTensorFile(path: "<stray>")
        for t in src.tensors {
            let v = try src.view(t.name)
            try mem.add(name: t.name, dtype: t.dtype, shape: t.shape) { $0.copyMemory(from: v.bytes) }
        }
        mem.remove("transformer.h.0.mlp.w1.g_idx")
        try mem.add(name: "transformer.h.0.mlp.w1.weight", dtype: .f16, shape: [384, 128]) { _ in }
        XCTAssertThrowsError(try QwenVLModel(config: fx.config, weights: mem)) { e in
            guard case ModelError.binding(_, let problems)? = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssert(problems.contains { $0.contains("unexpected tensor transformer.h.0.mlp.w1.weight") }, "\(problems)")
            XCTAssert(problems.contains { $0.contains("quantized module transformer.h.0.mlp.w1: missing tensor transformer.h.0.mlp.w1.g_idx") },
                      "\(problems)")
        }
    }

    /// A copy of the AutoGPTQ tiny checkpoint in memory, each tensor renamed by `rename` (nil drops it).
    func editedCopy(_ rename: (String) -> String?) throws -> InMemoryTensorFile {
        let src = try SafetensorsFile(path: fx.folder + "/model.safetensors")
        let mem = InMemoryTensorFile(path: "<edited>")
        for t in src.tensors {
            guard let name = rename(t.name) else { continue }
            let v = try src.view(t.name)
            try mem.add(name: name, dtype: t.dtype, shape: t.shape) { $0.copyMemory(from: v.bytes) }
        }
        return mem
    }

    func bindingProblems(_ file: TensorFile) -> [String] {
        do { _ = try QwenVLModel(config: fx.config, weights: file); return [] } catch ModelError.binding(_, let p) { return p } catch {
            return ["\(error)"]
        }
    }

    func testQuantizedModuleOutsideTheBlocksIsABindingProblem() throws {
        let file = try editedCopy { $0.hasPrefix("transformer.h.1.mlp.w2.") ? $0.replacingOccurrences(of: "transformer.h.1.mlp.w2", with: "transformer.visual.proj2") : $0 }
        let problems = bindingProblems(file)
        XCTAssert(problems.contains { $0.hasPrefix("quantized module transformer.visual.proj2 is not a block linear") }, "\(problems)")
        XCTAssert(problems.contains { $0.hasPrefix("missing tensor transformer.h.1.mlp.w2.weight") }, "\(problems)")
    }

    func testQuantizedModuleOfTheWrongShapeIsABindingProblem() throws {
        // w1's tensors replaced by c_proj's (128 x 128 instead of 384 x 128).
        let file = try editedCopy { n in
            if n.hasPrefix("transformer.h.0.mlp.w1.") { return nil }
            return n
        }
        let src = try SafetensorsFile(path: fx.folder + "/model.safetensors")
        for s in ["qweight", "qzeros", "scales", "g_idx", "bias"] {
            let v = try src.view("transformer.h.0.attn.c_proj." + s)
            try file.add(name: "transformer.h.0.mlp.w1." + s, dtype: v.info.dtype, shape: v.info.shape) { $0.copyMemory(from: v.bytes) }
        }
        let problems = bindingProblems(file)
        XCTAssertEqual(problems.filter { $0.contains("quantized module transformer.h.0.mlp.w1: 128x128 (out x in), expected 384x128") }.count, 1,
                       "\(problems)")
    }

    /// Logits, hidden states, image features and greedy ids of one model against the Int4 reference.
    func checkAgainstReference(_ model: QwenVLModel, _ label: String) throws {
        let features = try model.vision.encode(pixelValues: fx.pixels)
        assertClose(features.data, try fx.reference.floats("image_features").values, Tol.resampler, "\(label) image_features")
        let cache = KVCache(config: fx.config, capacity: fx.ids.count)
        let pre = try model.language.prefill(ids: fx.ids, imageFeatures: features, cache: cache, allLogits: true, keepHiddenStates: true)
        let (hshape, hs) = try fx.reference.floats("hidden_states")
        let per = hshape[1] * hshape[2]
        for i in 0..<hshape[0] {
            assertClose(pre.hiddenStates[i].data, Array(hs[(i * per)..<((i + 1) * per)]), Tol.hidden, "\(label) hidden_states[\(i)]")
        }
        let S = fx.ids.count, v = fx.config.vocabSize
        let refIds = try fx.reference.ints("topk_ids").values, refTop = try fx.reference.floats("topk_logits").values
        let refLSE = try fx.reference.floats("logsumexp").values
        var ourAtRef: [Float] = [], lse: [Float] = []
        for p in 0..<S {
            let row = pre.logits.row(p)
            assertSameTopK(topK(row, 20), refIds[(p * 20)..<((p + 1) * 20)], refTop[(p * 20)..<((p + 1) * 20)], row: row, Tol.logits,
                           "\(label) top-20 ids at \(p)")
            ourAtRef += refIds[(p * 20)..<((p + 1) * 20)].map { row[row.startIndex + Int($0)] }
            let m = row.max()!
            lse.append(m + Float(log(row.reduce(0.0) { $0 + exp(Double($1 - m)) })))
        }
        assertClose(ourAtRef, refTop, Tol.logits, "\(label) topk_logits")
        assertClose(lse, refLSE, Tol.logsumexp, "\(label) logsumexp")
        assertClose(Array(pre.logits.data[((S - 1) * v)...]), try fx.reference.floats("logits_last").values, Tol.logits, "\(label) last logits")
        let greedy = try model.generateGreedy(ids: fx.ids, pixelValues: fx.pixels, steps: 8)
        XCTAssertEqual(greedy.ids, try fx.reference.ints("greedy_ids").values, "\(label) greedy ids")
        XCTAssertEqual(greedy.ids, [58331, 2257, 84384, 105714, 37390, 14981, 15362, 10090])
    }

    func testAutoGPTQLayoutReproducesTheInt4Reference() throws {
        let opened = try CheckpointOpener.open(fx.folder)
        try checkAgainstReference(try QwenVLModel(config: opened.config!, weights: opened.file), "autogptq")
    }

    func testSQ4FileReproducesTheInt4Reference() throws {
        try checkAgainstReference(try QwenVLModel(config: fx.config, weights: try SquintInt4File(path: fx.sq4Path)), "sq4")
    }

    func testInt8DecodePathKeepsTheGreedyIds() throws {
        // The Q8 decode path rounds x to 8 bits: not bit-faithful, but on this model the greedy ids
        // (smallest top-1 margin 0.16) must not move.
        let model = try QwenVLModel(config: fx.config, weights: try SquintInt4File(path: fx.sq4Path))
        for l in 0..<fx.config.numHiddenLayers {
            for m in QwenLM.BlockLinear.allCases { (model.language.linear(layer: l, m) as! QuantizedLinear).decodePath = .int8 }
        }
        let greedy = try model.generateGreedy(ids: fx.ids, pixelValues: fx.pixels, steps: 8)
        XCTAssertEqual(greedy.ids, try fx.reference.ints("greedy_ids").values)
        // With the int8 lm_head as well (what `run --int8-activations` does): the ids still hold, and
        // the head is really the 8-bit one (its logits leave the BF16 head's).
        let plain = try model.generateGreedy(ids: fx.ids, pixelValues: fx.pixels, steps: 8)
        model.language.useInt8LMHead(true)
        let both = try model.generateGreedy(ids: fx.ids, pixelValues: fx.pixels, steps: 8)
        model.language.useInt8LMHead(false)
        XCTAssertEqual(both.ids, try fx.reference.ints("greedy_ids").values)
        XCTAssertNotEqual(both.logits.last!.map(\.bitPattern), plain.logits.last!.map(\.bitPattern))
        XCTAssertEqual(both.logits.first!.map(\.bitPattern), plain.logits.first!.map(\.bitPattern), "prefill keeps the stored head")
    }
}
