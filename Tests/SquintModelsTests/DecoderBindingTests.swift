import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// The decoders' strict binder and config validation: a checkpoint binds only if it holds exactly
/// the family's tensor table; a config is refused, naming the file and key, before anything is sized.
final class DecoderBindingTests: XCTestCase {
    /// The fixture's weights copied into memory (so tests can remove, reshape and add tensors) and its dims.
    func tinyCheckpoint(_ name: String) throws -> (InMemoryTensorFile, DecoderArchitecture, DecoderDims) {
        let folder = fixturePath("decoders/\(name)-tiny")
        let st = try SafetensorsFile(path: folder + "/model.safetensors")
        let mem = InMemoryTensorFile(path: folder + "/model.safetensors")
        for t in st.tensors { try mem.add(name: t.name, shape: t.shape, f32: Kernels.floats(try st.view(t.name))) }
        let data = try XCTUnwrap(FileManager.default.contents(atPath: folder + "/config.json"))
        let arch = try DecoderRegistry.architecture(forConfig: data, path: folder + "/config.json")
        return (mem, arch, try arch.dims(data, folder + "/config.json"))
    }

    func testTensorTableIsExactlyTheTransformersCheckpoint() throws {
        for name in ["qwen2", "llama"] {
            let (file, arch, dims) = try tinyCheckpoint(name)
            let table = dims.tensorTable(arch.naming)
            XCTAssertEqual(Set(table.map(\.name)), Set(file.tensors.map(\.name)), name)
            for t in table { XCTAssertEqual(file.info(t.name)?.shape, t.shape, t.name) }
        }
        let (_, _, q) = try tinyCheckpoint("qwen2")
        let names = q.tensorTable(.huggingFace).filter { $0.layer == 0 }.map(\.name)
        XCTAssertEqual(names, ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
                               "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
                               "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                               "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"].map { "model.layers.0." + $0 })
    }

    func testBindingListsMissingWrongShapeUnexpectedAndWrongDTypeTogether() throws {
        let (file, arch, dims) = try tinyCheckpoint("qwen2")
        file.remove("model.layers.1.self_attn.k_proj.bias")
        file.remove("model.layers.0.mlp.up_proj.weight")
        try file.add(name: "model.layers.0.mlp.up_proj.weight", shape: [64, 96], f32: [Float](repeating: 0, count: 64 * 96))
        try file.add(name: "model.layers.2.input_layernorm.weight", shape: [64], f32: [Float](repeating: 1, count: 64))
        file.remove("model.norm.weight")
        try file.add(name: "model.norm.weight", dtype: .i32, shape: [64]) { _ in }
        XCTAssertThrowsError(try DecoderLM(architecture: arch, dims: dims, weights: file)) { error in
            guard case let .binding(path, problems)? = error as? ModelError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, file.path)
            XCTAssertEqual(problems.count, 4, "\(problems)")
            let text = problems.joined(separator: "\n")
            for needle in ["missing tensor model.layers.1.self_attn.k_proj.bias (expected shape [32])",
                           "model.layers.0.mlp.up_proj.weight: shape [64, 96], expected [96, 64]",
                           "unexpected tensor model.layers.2.input_layernorm.weight",
                           "model.norm.weight: dtype I32"] {
                XCTAssertTrue(text.contains(needle), "no '\(needle)' in \(text)")
            }
        }
    }

    func testLlamaRefusesQwen2BiasesAndAMissingLMHead() throws {
        // A Llama config (no biases, untied) over a checkpoint with biases and no lm_head.
        let (file, _, dims) = try tinyCheckpoint("llama")
        try file.add(name: "model.layers.0.self_attn.q_proj.bias", shape: [128], f32: [Float](repeating: 0, count: 128))
        file.remove("lm_head.weight")
        XCTAssertThrowsError(try DecoderLM(architecture: .llama, dims: dims, weights: file)) { error in
            guard case let .binding(_, problems)? = error as? ModelError else { return XCTFail("\(error)") }
            XCTAssertEqual(problems.sorted(), ["missing tensor lm_head.weight (expected shape [256, 64])",
                                               "unexpected tensor model.layers.0.self_attn.q_proj.bias [128] F32"])
        }
    }

    func testTiedCheckpointThatAlsoSavedLMHeadBindsAndIgnoresIt() throws {
        // transformers ties lm_head to the embedding at load even if a checkpoint carries both.
        let (file, arch, dims) = try tinyCheckpoint("qwen2")
        try file.add(name: "lm_head.weight", shape: [300, 64], f32: [Float](repeating: 0, count: 300 * 64))
        try file.add(name: "model.layers.0.self_attn.rotary_emb.inv_freq", shape: [8], f32: [Float](repeating: 0, count: 8))
        let m = try DecoderLM(architecture: arch, dims: dims, weights: file)
        XCTAssertEqual(m.ignoredTensors.sorted(), ["lm_head.weight", "model.layers.0.self_attn.rotary_emb.inv_freq"])
        let ref = try FixtureSafetensors(path: fixturePath("decoders/qwen2-tiny/reference.safetensors"))
        let logits = try m.prefill(tokens: try ref.ints("input_ids").values, cache: m.makeCache()).logits
        assertClose(logits.data, try ref.floats("logits").values, Tol.logits, "tied logits with a stray lm_head")
    }

    func testBF16CheckpointBindsAndStaysCloseToF32() throws {
        // The same weights rounded to BF16 bind (widened tile by tile) and give nearly the same logits.
        let (f32, arch, dims) = try tinyCheckpoint("llama")
        let bf = InMemoryTensorFile()
        for t in f32.tensors {
            let v = Kernels.floats(try f32.view(t.name))
            try bf.add(name: t.name, dtype: .bf16, shape: t.shape) { dst in
                let p = dst.bindMemory(to: UInt16.self)
                for (i, x) in v.enumerated() { p[i] = UInt16(truncatingIfNeeded: (x.bitPattern + 0x7FFF + ((x.bitPattern >> 16) & 1)) >> 16) }
            }
        }
        let ids: [Int32] = [5, 17, 200, 3]
        let a = try DecoderLM(architecture: arch, dims: dims, weights: f32).prefill(tokens: ids, cache: DecoderCache(dims: dims)).logits.data
        let b = try DecoderLM(architecture: arch, dims: dims, weights: bf).prefill(tokens: ids, cache: DecoderCache(dims: dims)).logits.data
        // BF16 keeps 8 significant bits (relative rounding 2^-9 per weight): logits of magnitude ~3
        // move by a few 1e-2 at most, while a mis-bound tensor would change them by ~1.
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(worst, 0)
        XCTAssertLessThan(worst, 0.1)
    }

    func testFusedQKVAndGateUpLayoutsGiveTheSeparateLayersLogits() throws {
        // Phi-3's layout: qkv_proj rows q | k | v and gate_up_proj rows gate | up. The fixtures'
        // separate layers concatenated that way must give transformers' logits (Qwen2 also fuses
        // the q/k/v biases).
        for name in ["qwen2", "llama"] {
            let (sep, arch, dims) = try tinyCheckpoint(name)
            var fd = dims
            fd.fusedQKV = true; fd.fusedGateUp = true
            if !dims.biases.isEmpty { fd.biases = [.qkv] }
            let fused = InMemoryTensorFile(path: "<fused \(name)>")
            let n = DecoderTensorNaming.huggingFace
            func cat(_ parts: [String], as out: String) throws {
                let vs = try parts.map { Kernels.floats(try sep.view($0)) }
                let shapes = parts.map { sep.info($0)!.shape }
                try fused.add(name: out, shape: [shapes.map { $0[0] }.reduce(0, +)] + shapes[0].dropFirst(), f32: vs.flatMap { $0 })
            }
            for t in sep.tensors {
                let isQKV = ["q_proj", "k_proj", "v_proj"].contains { t.name.contains("self_attn.\($0).") }
                let isGU = t.name.contains("mlp.gate_proj.") || t.name.contains("mlp.up_proj.")
                if !isQKV && !isGU { try fused.add(name: t.name, shape: t.shape, f32: Kernels.floats(try sep.view(t.name))) }
            }
            for i in 0..<dims.layers {
                try cat([.q, .k, .v].map { n.module(i, $0) + ".weight" }, as: n.module(i, .qkv) + ".weight")
                if !dims.biases.isEmpty { try cat([.q, .k, .v].map { n.module(i, $0) + ".bias" }, as: n.module(i, .qkv) + ".bias") }
                try cat([.gate, .up].map { n.module(i, $0) + ".weight" }, as: n.module(i, .gateUp) + ".weight")
            }
            let m = try DecoderLM(architecture: arch, dims: fd, weights: fused)
            XCTAssertEqual(m.linear(layer: 0, .qkv)?.outFeatures, dims.qDim + 2 * dims.kvDim)
            XCTAssertNil(m.linear(layer: 0, .q))
            let ref = try FixtureSafetensors(path: fixturePath("decoders/\(name)-tiny/reference.safetensors"))
            let ids = try ref.ints("input_ids").values
            assertClose(try m.prefill(tokens: ids, cache: m.makeCache()).logits.data, try ref.floats("logits").values,
                        Tol.logits, "\(name) fused logits")
            // Cached decode through the fused layers (k and v copied out of the qkv rows into the cache).
            let g = try m.generateGreedy(prompt: ids, steps: 8)
            XCTAssertEqual(g.ids, try ref.ints("greedy_ids").values, "\(name) fused greedy")
        }
    }

    func testAutoGPTQInt4BlockLinearsBindAsQuantizedLayers() throws {
        // Two llama linears stored as AutoGPTQ v1 tensors (qweight/qzeros/scales/g_idx, as a GPTQ
        // Qwen2/Llama checkpoint has them; one with act order) bind as QuantizedLinear, and the model
        // equals the dense model whose weights are their dequantised values. (The Int4 kernels
        // themselves are checked against AutoGPTQ in Int4ParityTests / QuantKernelTests.)
        let (file, arch, dims) = try tinyCheckpoint("llama")
        let dense = try tinyCheckpoint("llama").0
        for (i, (module, actOrder)) in [("model.layers.0.mlp.down_proj", false), ("model.layers.1.self_attn.q_proj", true)].enumerated() {
            let info = try XCTUnwrap(file.info(module + ".weight"))
            let (rec, _) = try Int4Pack.record(out: info.shape[0], inF: info.shape[1], groupSize: 32, symmetric: true,
                                               actOrder: actOrder, seed: UInt64(i + 3))
            let w = QuantizedLinear(record: rec).dequantized()
            dense.remove(module + ".weight")
            try dense.add(name: module + ".weight", shape: info.shape, f32: w)
            file.remove(module + ".weight")
            let g = try AutoGPTQLayout.toAutoGPTQ(rec, path: "<test>")
            for (suffix, v) in zip([".qweight", ".qzeros", ".scales", ".g_idx"], [g.qweight, g.qzeros, g.scales, g.gIdx]) {
                try file.add(name: module + suffix, dtype: v.info.dtype, shape: v.info.shape) { $0.copyMemory(from: v.bytes) }
            }
        }
        let q = try DecoderLM(architecture: arch, dims: dims, weights: file)
        XCTAssertEqual(q.quantization, .autoGPTQ)
        XCTAssertTrue(q.linear(layer: 0, .down) is QuantizedLinear)
        XCTAssertTrue(q.linear(layer: 1, .q) is QuantizedLinear)
        XCTAssertTrue(q.linear(layer: 0, .q) is Linear)
        let d = try DecoderLM(architecture: arch, dims: dims, weights: dense)
        XCTAssertEqual(d.quantization, .dense)
        let ids: [Int32] = [7, 100, 3, 250, 42, 9]
        // Same weights, different summation (Int4 kernel vs sgemm): float32 rounding only.
        assertClose(try q.prefill(tokens: ids, cache: q.makeCache()).logits.data,
                    try d.prefill(tokens: ids, cache: d.makeCache()).logits.data, Tol.logits, "Int4 vs dequantised dense")
        let cache = q.makeCache(), dc = d.makeCache()
        _ = try q.prefill(tokens: ids, cache: cache); _ = try d.prefill(tokens: ids, cache: dc)
        assertClose(try q.decode(token: 11, cache: cache), try d.decode(token: 11, cache: dc), Tol.logits, "Int4 decode step")
        // A quantized module that is not a block linear is refused by name with everything else.
        try file.add(name: "lm_head.qweight", dtype: .i32, shape: [8, 256]) { _ in }
        XCTAssertThrowsError(try DecoderLM(architecture: arch, dims: dims, weights: file)) { error in
            XCTAssertTrue("\(error)".contains("lm_head: missing tensor lm_head.qzeros"), "\(error)")
        }
    }

    func testShardedFolderLoadsAsTheSingleFile() throws {
        // The llama fixture re-written as shards + model.safetensors.index.json (save_pretrained's
        // layout for big models) loads through the index and gives the same logits bit for bit.
        let src = fixturePath("decoders/llama-tiny")
        let st = try SafetensorsFile(path: src + "/model.safetensors")
        let dir = Fixtures.temporaryFolder("squint-decoder-shards")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: src + "/config.json", toPath: dir + "/config.json")
        let writer = try ShardedSafetensorsWriter(tensors: st.tensors.map { .init(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                                  maxShardSize: 100_000, metadata: ["format": "pt"])
        XCTAssertGreaterThan(writer.shards.count, 2)
        try writer.write(toFolder: dir, overwrite: false) { t, sink in try sink.write(try st.view(t.name).bytes) }
        let ids: [Int32] = [3, 14, 15, 92, 65]
        let a = try DecoderLM.load(folder: src), b = try DecoderLM.load(folder: dir)
        XCTAssertEqual(try b.prefill(tokens: ids, cache: b.makeCache()).logits, try a.prefill(tokens: ids, cache: a.makeCache()).logits)
        try FileManager.default.removeItem(atPath: dir + "/" + ShardedSafetensorsWriter.indexFileName)
        XCTAssertThrowsError(try DecoderLM.load(folder: dir)) { XCTAssertTrue("\($0)".contains("no model.safetensors"), "\($0)") }
    }

    // MARK: config

    static let qwen25Config = """
    {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
     "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
     "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
     "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
     "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
     "use_cache": true, "use_sliding_window": false, "vocab_size": 151936}
    """

    static let smolLM2Config = """
    {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
     "hidden_act": "silu", "hidden_size": 576, "intermediate_size": 1536, "max_position_embeddings": 8192,
     "mlp_bias": false, "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
     "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
     "rope_theta": 100000, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152}
    """

    func dims(_ json: String) throws -> DecoderDims {
        let data = Data(json.utf8)
        return try DecoderRegistry.architecture(forConfig: data, path: "m/config.json").dims(data, "m/config.json")
    }

    func testPublishedConfigSpellingsGiveTheirDims() throws {
        // transformers 4.x spelling (top-level rope_theta, rope_scaling null, eos as an integer).
        let q = try dims(Self.qwen25Config)
        XCTAssertEqual(q, DecoderDims(hidden: 896, layers: 24, heads: 14, kvHeads: 2, headDim: 64, intermediate: 4864,
                                      vocab: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, tiedEmbeddings: true, biases: [.q, .k, .v],
                                      bosTokenId: 151643, eosTokenIds: [151645], maxPositions: 32768))
        let s = try dims(Self.smolLM2Config)
        XCTAssertEqual(s, DecoderDims(hidden: 576, layers: 30, heads: 9, kvHeads: 3, headDim: 64, intermediate: 1536,
                                      vocab: 49152, ropeTheta: 1e5, rmsNormEps: 1e-5, tiedEmbeddings: true, biases: [],
                                      bosTokenId: 1, eosTokenIds: [2], maxPositions: 8192))
        // A list of eos ids (Llama 3 style) and model_type alone pick the family too.
        let l = try dims(#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1, "#
                         + #""num_attention_heads": 4, "vocab_size": 10, "rms_norm_eps": 1e-5, "eos_token_id": [7, 9]}"#)
        XCTAssertEqual(l.eosTokenIds, [7, 9])
        XCTAssertEqual(l.kvHeads, 4)
        XCTAssertEqual(l.ropeTheta, 10000)   // transformers' default when no rope_theta is given
    }

    /// `qwen25Config` with one key replaced (or removed when `value` is nil).
    func qwen25(_ key: String, _ value: String?) -> String {
        var obj = try! JSONSerialization.jsonObject(with: Data(Self.qwen25Config.utf8)) as! [String: Any]
        if let value { obj[key] = try! JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed) } else { obj[key] = nil }
        return String(decoding: try! JSONSerialization.data(withJSONObject: obj), as: UTF8.self)
    }

    func testConfigErrorsNameTheFileAndTheKey() throws {
        let cases: [(String, String?, String)] = [
            ("num_key_value_heads", "4", "num_attention_heads 14 must be a multiple of num_key_value_heads 4"),
            ("num_key_value_heads", "0", "num_key_value_heads is 0; it must be in 1 ... 14"),
            ("num_attention_heads", "0", "must be a positive multiple of num_attention_heads 0"),
            ("num_attention_heads", "5", "hidden_size 896 must be a positive multiple of num_attention_heads 5"),
            ("hidden_size", "-896", "hidden_size is -896; it must be in 1 ... 1048576"),
            ("num_hidden_layers", "0", "num_hidden_layers is 0"),
            ("intermediate_size", "0", "intermediate_size is 0"),
            ("vocab_size", "99999999999", "vocab_size is 99999999999"),
            ("rms_norm_eps", "0", "rms_norm_eps is 0.0; it must be finite and in (0, 1)"),
            ("rope_theta", "-1", "rope_theta is -1.0; it must be a finite number > 1"),
            ("max_position_embeddings", "0", "max_position_embeddings is 0"),
            ("hidden_size", nil, "missing key 'hidden_size'"),
            ("hidden_size", "\"896\"", "wrong type at 'hidden_size'"),
            ("hidden_act", "\"gelu\"", "hidden_act 'gelu' is not supported"),
            ("use_sliding_window", "true", "sliding-window attention"),
            ("rope_scaling", #"{"type": "yarn", "factor": 4.0}"#, "rope_scaling type 'yarn' is not supported"),
        ]
        for (key, value, needle) in cases {
            XCTAssertThrowsError(try dims(qwen25(key, value)), "\(key) = \(value ?? "absent")") { error in
                guard case let .config(path, message)? = error as? ModelError else { return XCTFail("\(error)") }
                XCTAssertEqual(path, "m/config.json")
                XCTAssertTrue(message.contains(needle), "\(key): '\(message)' lacks '\(needle)'")
            }
        }
        // A family Squint does not run is named, with the supported ones.
        let gpt2 = qwen25("architectures", #"["GPT2LMHeadModel"]"#).replacingOccurrences(of: #""model_type":"qwen2""#, with: #""model_type":"gpt2""#)
        XCTAssertThrowsError(try dims(gpt2)) {
            XCTAssertTrue("\($0)".contains(#"architectures ["GPT2LMHeadModel"], model_type gpt2 is not a decoder Squint runs (supported: Qwen2ForCausalLM, LlamaForCausalLM)"#), "\($0)")
        }
        // transformers 5 spelling: rope_parameters (its own key named in errors).
        let v5 = qwen25("rope_theta", nil).replacingOccurrences(of: "\"vocab_size\"", with: #""rope_parameters": {"rope_theta": 0.5, "rope_type": "default"}, "vocab_size""#)
        XCTAssertThrowsError(try dims(v5)) { XCTAssertTrue("\($0)".contains("rope_parameters.rope_theta is 0.5"), "\($0)") }
        // Llama: head_dim must be even; layer_types must be full attention in Qwen2.
        let llama = Self.smolLM2Config.replacingOccurrences(of: "\"vocab_size\"", with: "\"head_dim\": 63, \"vocab_size\"")
        XCTAssertThrowsError(try dims(llama)) { XCTAssertTrue("\($0)".contains("head_dim 63 must be even"), "\($0)") }
        XCTAssertThrowsError(try dims(qwen25("layer_types", #"["sliding_attention"]"#))) { XCTAssertTrue("\($0)".contains("sliding-window"), "\($0)") }
        // A folder without config.json.
        XCTAssertThrowsError(try DecoderLM.load(folder: fixturePath("decoders"))) { XCTAssertTrue("\($0)".contains("no config.json"), "\($0)") }
    }
}
