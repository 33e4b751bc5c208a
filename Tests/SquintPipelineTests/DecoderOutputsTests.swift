import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor
import SquintTokenizer
import TestSupport
@testable import SquintPipeline

/// `convert --format squint|autogptq` for text decoders, on the tiny random Qwen2 of
/// fixtures/decoders (transformers' weights) written as an F32 GGUF (`TinyDecoderGGUF`).
/// Ground truths: GPTQ's own fake-quantized weights (what AutoGPTQ writes into layer.weight), the
/// AutoGPTQ v1 unpacking formula written out here from the format (Formats/SQUINT_INT4.md §5), and
/// the float DecoderLM (checked against transformers in DecoderParityTests).
final class DecoderOutputsTests: XCTestCase {
    var tmp = ""
    override func setUpWithError() throws {
        tmp = Fixtures.temporaryFolder("decoder-outputs")
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func source() throws -> String {
        let p = tmp + "/tiny.gguf"
        return FileManager.default.fileExists(atPath: p) ? p : try TinyDecoderGGUF.write(to: p)
    }

    func calibrationText() throws -> String {
        let p = tmp + "/calib.txt"
        let text = (0..<12).map { "the \($0) thin thing in the theme then went on; " }.joined()
        try Data(text.utf8).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// AutoGPTQ v1 (`checkpoint_format` gptq) unpacked from the format's definition:
    /// q[i, o] = (qweight[i/8, o] >> 4(i%8)) & 15, zero = ((qzeros[g, o/8] >> 4(o%8)) & 15) + 1,
    /// W[o, i] = scales[g_idx[i], o] * (q[i, o] - zero[g_idx[i], o]) with the F16 scale widened.
    func unpackAutoGPTQ(_ f: SafetensorsFile, _ prefix: String) throws -> (rows: Int, cols: Int, w: [Float]) {
        func i32(_ n: String) throws -> (shape: [Int], v: [UInt32]) {
            let view = try f.view(prefix + n)
            return (view.info.shape, Array(view.bytes.bindMemory(to: UInt32.self)))
        }
        let qw = try i32(".qweight"), qz = try i32(".qzeros"), gi = try i32(".g_idx")
        let sv = try f.view(prefix + ".scales")
        let scales = Array(sv.bytes.bindMemory(to: UInt16.self)).map { Float(Float16(bitPattern: $0)) }
        let cols = qw.shape[0] * 8, rows = qw.shape[1]
        var w = [Float](repeating: 0, count: rows * cols)
        for o in 0..<rows {
            for i in 0..<cols {
                let g = Int(gi.v[i])
                let q = (qw.v[(i / 8) * rows + o] >> (4 * UInt32(i % 8))) & 15
                let z = ((qz.v[g * (rows / 8) + o / 8] >> (4 * UInt32(o % 8))) & 15) + 1
                w[o * cols + i] = scales[g * rows + o] * Float(Int(q) - Int(z))
            }
        }
        return (rows, cols, w)
    }

    /// One conversion written both ways; returns (SQ4 path, AutoGPTQ folder, the GPTQ modules).
    func convertBothWays(_ o: DecoderConvert.Options, label: String) throws -> (String, String, [DecoderConvert.Module], TextModel) {
        let tm = try TextModel.open(try source())
        let ids = tm.tokenizer.encode(String(decoding: try Data(contentsOf: URL(fileURLWithPath: try calibrationText())), as: UTF8.self),
                                      addSpecial: false).map(Int32.init)
        let windows = try DecoderConvert.calibrationWindows(tokens: ids, count: 4, length: 48, bos: nil)
        var o = o; o.container = .squint
        let mods = try DecoderConvert.quantize(model: tm.model, windows: windows, options: o)
        let packed = try DecoderOutputs.pack(model: tm.model, modules: mods)
        let c = try DecoderOutputs.companions(of: tm)
        let sq4 = tmp + "/\(label).sq4", dir = tmp + "/\(label)-gptq"
        try DecoderOutputs.writeSQ4(model: tm.model, packed: packed, companions: c,
                                    quantization: SQ4Quantization(groupSize: o.groupSize, sym: o.sym, descAct: o.descAct),
                                    provenance: SQ4Provenance(source: "tiny.gguf", calibration: "test", tool: "test"), to: sq4, overwrite: false)
        let q = QuantizationConfig(bits: 4, groupSize: o.groupSize, dampPercent: 0.01, descAct: o.descAct, staticGroups: o.staticGroups,
                                   sym: o.sym, trueSequential: true, modelNameOrPath: nil, modelFileBaseName: "model", quantMethod: "gptq")
        _ = try DecoderOutputs.writeAutoGPTQ(model: tm.model, packed: packed, companions: c, quantization: q, to: dir, overwrite: false)
        return (sq4, dir, mods, tm)
    }

    /// The SQ4 file and the AutoGPTQ folder of the same conversion give identical logits (same codes,
    /// same F16 tensors, same kernels), the folder's codes decode to exactly GPTQ's fake-quantized
    /// weights, and both models agree with the float model built from those decoded weights.
    func testSQ4AndAutoGPTQGiveTheLogitsOfTheDequantisedFloatModel() throws {
        var plain = DecoderConvert.Options(); plain.groupSize = 32
        var act = plain; act.descAct = true
        var asym = plain; asym.sym = false
        var staticAct = act; staticAct.staticGroups = true
        for (label, o) in [("g32", plain), ("act", act), ("asym", asym), ("act-static", staticAct)] {
            let (sq4, dir, mods, src) = try convertBothWays(o, label: label)
            let a = try TextModel.open(sq4), b = try TextModel.open(dir)
            XCTAssertEqual(a.model.quantization, .squintInt4)
            XCTAssertEqual(b.model.quantization, .autoGPTQ)
            XCTAssertEqual(a.model.dims, b.model.dims)

            // The float reference: every tensor of the folder, block linears unpacked by the formula.
            let st = try SafetensorsFile(path: dir + "/model.safetensors")
            let naming = DecoderTensorNaming.huggingFace
            let mem = InMemoryTensorFile(path: "<dequantised \(label)>")
            for spec in src.model.dims.tensorTable(naming) {
                switch spec.role {
                case .weight(let m):
                    let prefix = naming.module(spec.layer!, m)
                    let (rows, cols, w) = try unpackAutoGPTQ(st, prefix)
                    let gptq = try XCTUnwrap(mods.first { $0.layer == spec.layer && $0.linear == m })
                    XCTAssertEqual(w.map(\.bitPattern), gptq.weight.q.map(\.bitPattern), "\(label) \(prefix): codes decode to GPTQ's weight")
                    try mem.add(name: spec.name, shape: [rows, cols], f32: w)
                default:
                    try mem.add(name: spec.name, shape: spec.shape, f32: Kernels.floats(try st.view(spec.name)))
                }
            }
            let float = try DecoderLM(architecture: .qwen2, dims: src.model.dims, weights: mem)
            let ids: [Int32] = [5, 261, 116, 104, 101, 32, 263, 264, 44, 299, 7, 100]
            let la = try a.model.prefill(tokens: ids, cache: a.model.makeCache()).logits.data
            let lb = try b.model.prefill(tokens: ids, cache: b.model.makeCache()).logits.data
            let lf = try float.prefill(tokens: ids, cache: float.makeCache()).logits.data
            XCTAssertEqual(la.map(\.bitPattern), lb.map(\.bitPattern), "\(label): SQ4 and AutoGPTQ logits")
            // Same weights in float32; only summation order differs (act-order permutes the inputs
            // of each product): over 2 blocks of products of <= 96 terms of magnitude ~1, float32
            // rounding stays far below 1e-4 + 1e-4·|logit|.
            var worst: Float = 0
            for (x, y) in zip(la, lf) { worst = max(worst, abs(x - y) / (1e-4 + 1e-4 * abs(y))) }
            XCTAssertLessThanOrEqual(worst, 1, "\(label): Int4 model vs the dequantised float model")
            // One-token decode (the matrix-vector path) after the prompt, same bound.
            let ca = a.model.makeCache(), cf = float.makeCache()
            _ = try a.model.prefill(tokens: ids, cache: ca); _ = try float.prefill(tokens: ids, cache: cf)
            let da = try a.model.decode(token: 42, cache: ca), df = try float.decode(token: 42, cache: cf)
            worst = 0
            for (x, y) in zip(da, df) { worst = max(worst, abs(x - y) / (1e-4 + 1e-4 * abs(y))) }
            XCTAssertLessThanOrEqual(worst, 1, "\(label): decode step")
        }
    }

    /// The AutoGPTQ folder is what transformers' GPTQ loader reads: HF tensor names, config.json's
    /// quantization_config, quantize_config.json, tokenizer files with the chat template.
    func testAutoGPTQFolderLayoutAndConfigs() throws {
        var o = DecoderConvert.Options(); o.groupSize = 32; o.descAct = true
        let (_, dir, _, _) = try convertBothWays(o, label: "layout")
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        let names = Set(st.tensors.map(\.name))
        for n in ["model.layers.0.self_attn.q_proj.qweight", "model.layers.0.self_attn.q_proj.qzeros", "model.layers.0.self_attn.q_proj.scales",
                  "model.layers.0.self_attn.q_proj.g_idx", "model.layers.0.self_attn.q_proj.bias", "model.layers.1.mlp.down_proj.qweight",
                  "model.embed_tokens.weight", "model.norm.weight", "model.layers.1.post_attention_layernorm.weight"] {
            XCTAssertTrue(names.contains(n), n)
        }
        XCTAssertFalse(names.contains("model.layers.0.self_attn.o_proj.bias"), "Qwen2's o_proj has no bias")
        XCTAssertFalse(names.contains("lm_head.weight"), "tied")
        XCTAssertEqual(st.info("model.layers.0.mlp.down_proj.qweight")?.shape, [96 / 8, 64])
        XCTAssertEqual(st.info("model.layers.0.mlp.down_proj.scales")?.shape, [3, 64])
        XCTAssertEqual(st.info("model.embed_tokens.weight")?.dtype, .f16)
        let cfg = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        XCTAssertEqual(cfg["architectures"] as? [String], ["Qwen2ForCausalLM"])
        let qc = try XCTUnwrap(cfg["quantization_config"] as? [String: Any])
        XCTAssertEqual(qc["quant_method"] as? String, "gptq")
        XCTAssertEqual(qc["bits"] as? Int, 4)
        XCTAssertEqual(qc["group_size"] as? Int, 32)
        XCTAssertEqual(qc["desc_act"] as? Bool, true)
        XCTAssertEqual(qc["sym"] as? Bool, true)
        let qf = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/quantize_config.json"))) as? [String: Any])
        XCTAssertEqual(qf["group_size"] as? Int, 32)
        let tc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer_config.json"))) as? [String: Any])
        XCTAssertEqual(tc["chat_template"] as? String, TinyDecoderGGUF.chatTemplate)
        XCTAssertEqual(tc["eos_token"] as? String, "<|im_end|>")
    }

    /// `convert --format squint` end to end, then the SQ4 file moved alone into an empty folder: it
    /// carries the config, the tokenizer (equal to the GGUF's on sample texts), the chat template and
    /// a generation config, and answers a ChatML prompt.
    func testSQ4FromGGUFRunsAloneWithTheSourcesTokenizerAndTemplate() throws {
        let src = try source()
        var r = DecoderConvert.Request(model: src, calibrationText: try calibrationText(), output: tmp + "/out.sq4")
        r.samples = 4; r.sampleTokens = 48; r.options.groupSize = 32
        let res = try DecoderOutputs.run(r, format: .squint)
        XCTAssertEqual(res.modules.count, 14)
        XCTAssertEqual(res.samples, 4)
        let alone = tmp + "/alone"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: false)
        try FileManager.default.moveItem(atPath: tmp + "/out.sq4", toPath: alone + "/model.sq4")
        XCTAssertTrue(TextModel.canOpen(alone + "/model.sq4"))
        let m = try TextModel.open(alone + "/model.sq4")
        let s = try TextModel.open(src)
        XCTAssertEqual(try XCTUnwrap(m.sq4).version, 2)
        // config.json spells the GGUF's float32 epsilon by its shortest text (1e-06); the model uses it as float32.
        var dm = m.model.dims, ds = s.model.dims
        XCTAssertEqual(Float(dm.rmsNormEps), Float(ds.rmsNormEps))
        dm.rmsNormEps = 0; ds.rmsNormEps = 0
        XCTAssertEqual(dm, ds)
        XCTAssertEqual(m.chatTemplate, TinyDecoderGGUF.chatTemplate)
        XCTAssertEqual(m.defaultSystemPrompt, "You are a tiny test model.")
        XCTAssertEqual(m.tokenizer.tokens, s.tokenizer.tokens)
        XCTAssertEqual(m.tokenizer.eosTokenID ?? -1, -1)   // tokenizer.json keeps EOS only when added...
        XCTAssertEqual(m.stopTokens, s.stopTokens)         // ...but <|im_end|> stops generation either way
        for text in ["the thin theme", "<|im_start|>user\nhi there<|im_end|>\n", "naïve café 東京 123 4567", "  spaces\tand\ttabs\n\n"] {
            for special in [false, true] {
                XCTAssertEqual(m.tokenizer.encode(text, addSpecial: special, parseSpecial: special),
                               s.tokenizer.encode(text, addSpecial: special, parseSpecial: special), "\(text) special \(special)")
            }
        }
        let gen = try XCTUnwrap(m.generationConfig)
        XCTAssertEqual(gen["eos_token_id"], .integer(Int64(s.tokenizer.eosTokenID!)))
        XCTAssertEqual(try m.samplingDefaults, TextModel.defaultSampling)
        try m.checkChatFormat()
        let prompt = m.chatPrompt(history: [], user: "the thin", system: nil)
        let a = try m.answer(prompt: prompt, maxNewTokens: 6, sampling: .greedy)
        let ids = m.tokenizer.encode(prompt, addSpecial: true, parseSpecial: true).map(Int32.init)
        let expected = try m.model.generateGreedy(prompt: ids, steps: 6).ids
        let cut = expected.firstIndex(where: { m.stopTokens.contains($0) }).map { $0 + 1 } ?? expected.count
        XCTAssertEqual(a.generatedIds, Array(expected[..<cut]))
        // Perplexity reads the file alone too.
        let p = try m.perplexity(text: String(repeating: "the thin thing in the theme. ", count: 8), context: 32)
        XCTAssertTrue(p.perplexity.isFinite && p.perplexity > 1)
    }

    /// From a Hugging Face folder, the SQ4 header holds the folder's own config.json, generation
    /// config and chat template, and the tokenizer tensor is its tokenizer.json byte for byte.
    /// A Hugging Face folder of a fixture's config.json and weights with a tokenizer.json of the
    /// given vocabulary and a tokenizer_config.json (chat template, EOS by its text). Returns the folder
    /// and the tokenizer.json bytes.
    func hfFolder(_ name: String, fixture: String = "qwen2-tiny", vocabulary v: (tokens: [String], types: [Int32], merges: [String]),
                  preTokenizer: String = "qwen2", addBOS: Bool? = nil,
                  chatTemplate: String = "<|im_start|>{{ x }}") throws -> (path: String, tokenizerJSON: [UInt8]) {
        let folder = tmp + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        let source = Fixtures.path("decoders/" + fixture)
        for f in ["config.json", "model.safetensors"] { try FileManager.default.copyItem(atPath: source + "/" + f, toPath: folder + "/" + f) }
        let tok = try ByteLevelBPETokenizer(tokens: v.tokens, tokenTypes: v.types, merges: v.merges, preTokenizer: preTokenizer, addBOS: addBOS)
        let tj = Array(tok.tokenizerJSON(merges: v.merges).utf8)
        try Data(tj).write(to: URL(fileURLWithPath: folder + "/tokenizer.json"))
        let config = try JSONSerialization.data(withJSONObject: ["chat_template": chatTemplate, "eos_token": "<|im_end|>"])
        try config.write(to: URL(fileURLWithPath: folder + "/tokenizer_config.json"))
        return (folder, tj)
    }

    func testSQ4FromFolderCarriesTheFoldersFilesVerbatim() throws {
        let fixture = Fixtures.path("decoders/qwen2-tiny")
        let (folder, tj) = try hfFolder("hf", vocabulary: TinyDecoderGGUF.vocabulary(vocab: 300))
        try Data("{\"do_sample\": true, \"top_k\": 7, \"top_p\": 0.5, \"temperature\": 0.25}".utf8).write(to: URL(fileURLWithPath: folder + "/generation_config.json"))
        var r = DecoderConvert.Request(model: folder, calibrationText: nil, output: tmp + "/hf.sq4")
        r.options.method = .rtn; r.options.groupSize = 32
        _ = try DecoderOutputs.run(r, format: .squint)
        let f = try SquintInt4File(path: tmp + "/hf.sq4")
        let cfgBytes = try Data(contentsOf: URL(fileURLWithPath: fixture + "/config.json"))
        let cfg = try cfgBytes.withUnsafeBytes { try StrictJSON.parseObject($0, path: "config.json", what: "config") }
        XCTAssertEqual(f.header.config, cfg)
        XCTAssertEqual(f.header.tokenizer.chatTemplate, "<|im_start|>{{ x }}")
        XCTAssertEqual(f.header.quantization.method, .rtn)
        XCTAssertEqual(Array(try f.view(DecoderOutputs.tokenizerTensor).bytes), tj)
        let m = try TextModel.open(tmp + "/hf.sq4")
        XCTAssertEqual(try m.samplingDefaults, SamplingOptions(doSample: true, temperature: 0.25, topK: 7, topP: 0.5))
    }

    /// `convert --format gguf` from a Hugging Face folder writes what it writes from a GGUF of the same
    /// weights and vocabulary (TinyDecoderGGUF is made from the same fixture as llama.cpp's converter
    /// would): every tensor's name, type, shape and bytes, the architecture numbers and the tokenizer
    /// keys are equal, and both files reopen to bit-identical logits.
    func testGGUFFromAFolderEqualsGGUFFromTheSameWeights() throws {
        let (folder, _) = try hfFolder("hf", vocabulary: TinyDecoderGGUF.vocabulary(vocab: 300), chatTemplate: TinyDecoderGGUF.chatTemplate)
        let calib = try calibrationText()
        var outputs: [String] = []
        for (model, name) in [(try source(), "from-gguf"), (folder, "from-folder")] {
            var r = DecoderConvert.Request(model: model, calibrationText: calib, output: tmp + "/\(name).gguf")
            r.samples = 3; r.sampleTokens = 40; r.options.descAct = true
            let res = try DecoderConvert.run(r)
            XCTAssertEqual(res.tokens, 120)
            outputs.append(r.output)
        }
        let a = try GGUFFile(path: outputs[0]), b = try GGUFFile(path: outputs[1])
        XCTAssertEqual(Set(b.ggufTensors.map(\.name)), Set(a.ggufTensors.map(\.name)))
        for t in a.ggufTensors {
            let u = try XCTUnwrap(b.ggufTensor(named: t.name), t.name)
            XCTAssertEqual(u.type, t.type, t.name)
            XCTAssertEqual(u.shape, t.shape, t.name)
            XCTAssertEqual(Array(try b.bytes(of: u)), Array(try a.bytes(of: t)), t.name)
        }
        let keys = ["general.architecture", "general.file_type", "general.quantization_version"]
            + ["block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
               "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon"].map { "qwen2." + $0 }
            + ["model", "pre", "tokens", "token_type", "merges", "eos_token_id", "add_bos_token"].map { "tokenizer.ggml." + $0 }
            + ["tokenizer.chat_template"]
        for key in keys { XCTAssertEqual(b.value(forKey: key), a.value(forKey: key), key) }
        XCTAssertNil(b.value(forKey: "qwen2.attention.key_length"), "written only when the head size is not hidden / heads")
        let ma = try TextModel.open(outputs[0]), mb = try TextModel.open(outputs[1])
        let text = "the thin thing in the theme<|im_end|>"
        let ids = mb.tokenizer.encode(text, addSpecial: true, parseSpecial: true).map(Int32.init)
        XCTAssertEqual(ids, ma.tokenizer.encode(text, addSpecial: true, parseSpecial: true).map(Int32.init))
        XCTAssertEqual(ids.last, Int32(ma.tokenizer.tokenID(of: "<|im_end|>")!))
        let la = try ma.model.prefill(tokens: ids, cache: ma.model.makeCache()).logits.data
        let lb = try mb.model.prefill(tokens: ids, cache: mb.model.makeCache()).logits.data
        XCTAssertEqual(lb.map(\.bitPattern), la.map(\.bitPattern))
    }

    /// A tokenizer.json with fewer tokens than the embedding has rows (Qwen2.5: 151,665 for 151,936)
    /// gives a GGUF vocabulary padded to the rows with unused `[PAD<id>]` tokens, as llama.cpp's
    /// converter writes it (llama.cpp refuses a vocabulary shorter than token_embd); it reopens and
    /// tokenizes as the folder does. Also as the converter: a non-special added token that looks special
    /// (`<|...|>`) becomes control, another stays user-defined; GPT-2's pre-tokenizer is named "gpt-2"
    /// (the name llama.cpp's loader knows).
    func testGGUFFromAFolderPadsTheVocabularyToTheEmbeddingRows() throws {
        var v = TinyDecoderGGUF.vocabulary(vocab: 264)
        v.tokens += ["<|fim_x|>", "<tool_call>"]; v.types += [4, 4]
        let (folder, _) = try hfFolder("short", vocabulary: v, preTokenizer: "gpt2")
        var r = DecoderConvert.Request(model: folder, calibrationText: nil, output: tmp + "/short.gguf")
        r.options.method = .rtn
        _ = try DecoderConvert.run(r)
        let back = try TextModel.open(r.output), f = try XCTUnwrap(back.gguf)
        let tokens = try XCTUnwrap(f.value(forKey: "tokenizer.ggml.tokens")?.strings)
        let types = try XCTUnwrap(f.value(forKey: "tokenizer.ggml.token_type")?.ints)
        XCTAssertEqual(tokens.count, 300)
        XCTAssertEqual(Array(tokens[..<266]), v.tokens)
        XCTAssertEqual(Array(tokens[266...]), (266..<300).map { "[PAD\($0)]" })
        XCTAssertEqual(types.map(Int32.init), v.types.dropLast(2) + [3, 4] + [Int32](repeating: 5, count: 34))
        XCTAssertEqual(f.value(forKey: "tokenizer.ggml.pre")?.string, "gpt-2")
        let src = try TextModel.open(folder), text = "the thin thing<|im_end|>"
        XCTAssertEqual(back.tokenizer.encode(text, addSpecial: true, parseSpecial: true),
                       src.tokenizer.encode(text, addSpecial: true, parseSpecial: true))
    }

    /// From a Llama folder (head_dim 16 apart from hidden / heads = 8, untied lm_head): the GGUF's dims
    /// read back equal the folder's (key_length, rope.dimension_count and vocab_size written), and the
    /// q / k blocks, stored in llama.cpp's row order, decode through the reader to exactly the
    /// quantized weights in checkpoint order (a wrong permutation fails here).
    func testLlamaGGUFFromAFolderKeepsItsDimsAndRowOrder() throws {
        let bytes = (0..<256).map { TinyDecoderGGUF.byteToken(UInt8($0)) }
        let (folder, _) = try hfFolder("llama", fixture: "llama-tiny", vocabulary: (bytes, [Int32](repeating: 1, count: 256), []),
                                      preTokenizer: "llama-bpe", addBOS: false)
        var r = DecoderConvert.Request(model: folder, calibrationText: nil, output: tmp + "/llama.gguf")
        r.options.method = .rtn
        _ = try DecoderConvert.run(r)
        let src = try TextModel.open(folder), back = try TextModel.open(r.output)
        XCTAssertEqual(back.model.architecture.name, "llama")
        // The norm epsilon is a float32 key (1e-5 reads back as 9.99999975e-06), as in llama.cpp's files.
        var dims = back.model.dims
        XCTAssertEqual(Float(dims.rmsNormEps), Float(src.model.dims.rmsNormEps))
        dims.rmsNormEps = src.model.dims.rmsNormEps
        XCTAssertEqual(dims, src.model.dims)
        XCTAssertEqual(dims.headDim, 16)
        XCTAssertEqual(back.gguf?.value(forKey: "llama.rope.dimension_count")?.int, 16)
        XCTAssertEqual(back.gguf?.value(forKey: "tokenizer.ggml.pre")?.string, "llama-bpe")
        XCTAssertNotNil(back.gguf?.ggufTensor(named: "output.weight"))
        var o = DecoderConvert.Options(); o.method = .rtn
        let mods = try DecoderConvert.quantize(model: src.model, windows: [], options: o)
        XCTAssertEqual(mods.count, 2 * 7)
        for m in mods {
            let w = Kernels.floats((try XCTUnwrap(back.model.linear(layer: m.layer, m.linear) as? Linear)).weightView)
            XCTAssertEqual(w.map(\.bitPattern), m.weight.q.map(\.bitPattern), "\(m.layer) \(m.linear)")
        }
    }

    func testRefusals() throws {
        let src = try source()
        var r = DecoderConvert.Request(model: src, calibrationText: nil, output: tmp + "/x.sq4")
        r.options.method = .rtn; r.options.groupSize = 48
        XCTAssertThrowsError(try DecoderOutputs.run(r, format: .squint)) { XCTAssertTrue("\($0)".contains("multiple of 32"), "\($0)") }
        r.options.groupSize = 32
        _ = try DecoderOutputs.run(r, format: .squint)
        XCTAssertThrowsError(try DecoderOutputs.run(r, format: .squint)) { XCTAssertTrue("\($0)".contains("exists"), "\($0)") }
        // An Int4 model is not re-quantized.
        var again = DecoderConvert.Request(model: tmp + "/x.sq4", calibrationText: nil, output: tmp + "/y.sq4")
        again.options.method = .rtn; again.options.groupSize = 32
        XCTAssertThrowsError(try DecoderOutputs.run(again, format: .squint)) { XCTAssertTrue("\($0)".contains("already an Int4"), "\($0)") }
        // GPTQ needs text.
        var g = DecoderConvert.Request(model: src, calibrationText: nil, output: tmp + "/z.sq4"); g.options.groupSize = 32
        XCTAssertThrowsError(try DecoderOutputs.run(g, format: .autogptq)) { XCTAssertTrue("\($0)".contains("--calib-text"), "\($0)") }
    }

    /// `convert` keeps memory bounded (`releaseFinishedBlocks`): a finished block's linears go back to
    /// the source's own layers and its modules keep codes only, yet the codes, the fake-quantized
    /// weights they give back and the AutoGPTQ folder `convert` writes equal those of the run that keeps
    /// everything (the public `quantize`, whose model stays fake-quantized).
    func testConvertReleasesFinishedBlocksAndWritesTheSameBytes() throws {
        var o = DecoderConvert.Options(); o.groupSize = 32; o.descAct = true; o.sym = false
        let (_, keptDir, kept, _) = try convertBothWays(o, label: "kept")
        let tm = try TextModel.open(try source())
        let ids = tm.tokenizer.encode(String(decoding: try Data(contentsOf: URL(fileURLWithPath: try calibrationText())), as: UTF8.self),
                                      addSpecial: false).map(Int32.init)
        let windows = try DecoderConvert.calibrationWindows(tokens: ids, count: 4, length: 48, bos: nil)
        var so = o; so.container = .squint
        let L = tm.model.dims.layers, names = tm.model.dims.blockLinears
        var before: [AnyObject] = []      // held, so no identity can be reused
        for l in 0..<L { for m in names { before.append(try XCTUnwrap(tm.model.linear(layer: l, m)) as AnyObject) } }
        let released = try DecoderConvert.quantize(model: tm.model, windows: windows, options: so, work: nil, releaseFinishedBlocks: true)
        var k = 0
        for l in 0..<L {
            for m in names {
                XCTAssertTrue(try XCTUnwrap(tm.model.linear(layer: l, m)) as AnyObject === before[k], "block \(l) \(m): the source's own layer again")
                k += 1
            }
        }
        XCTAssertEqual(released.count, kept.count)
        for (a, b) in zip(released, kept) {
            XCTAssertEqual(a.weight.q.count, 0, "\(a.layer) \(a.linear): q dropped")
            XCTAssertEqual(a.weight.codes, b.weight.codes)
            XCTAssertEqual(a.weight.fakeQuantized(minOffset: false).map(\.bitPattern), b.weight.q.map(\.bitPattern))
        }
        // The whole command: its AutoGPTQ tensors equal the kept run's, byte for byte.
        var r = DecoderConvert.Request(model: try source(), calibrationText: try calibrationText(), output: tmp + "/cli-gptq")
        r.samples = 4; r.sampleTokens = 48; r.options = so; r.options.container = .autogptq
        _ = try DecoderOutputs.run(r, format: .autogptq)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: r.output + "/model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: keptDir + "/model.safetensors")))
    }

    /// A text-model conversion stopped after block 0 (an injected failure, as a kill after the block's
    /// save) keeps its state beside the output and nothing at it; the same command with --resume
    /// continues at block 1 and writes the bytes of an uninterrupted run (SQ4 with act-order, and GGUF
    /// Q4_1, whose fake-quantized weights are rebuilt from the saved codes on the min/max grid), then
    /// removes the state. Other settings, or no --resume / --force, are refused.
    func testInterruptedTextConversionResumesToTheSameBytes() throws {
        let src = try source(), calib = try calibrationText()
        for (gguf, rtn) in [(false, false), (true, false), (false, true)] {
            var r = DecoderConvert.Request(model: src, calibrationText: rtn ? nil : calib, output: tmp + "/ref-\(gguf)-\(rtn)")
            r.samples = 4; r.sampleTokens = 48
            if gguf { r.options.target = .q4_1 } else { r.options.groupSize = 32; r.options.descAct = !rtn }
            if rtn { r.options.method = .rtn }
            func run(_ r: DecoderConvert.Request, _ bar: ProgressBar? = nil) throws -> (logs: [ConvertModuleLog], resumed: Int?) {
                if gguf { let x = try DecoderConvert.run(r, progress: bar); return (x.modules, x.resumedFromBlock) }
                let x = try DecoderOutputs.run(r, format: .squint, progress: bar); return (x.modules, x.resumedFromBlock)
            }
            let (refLogs, refResumed) = try run(r)
            XCTAssertNil(refResumed)
            let reference = try Data(contentsOf: URL(fileURLWithPath: r.output))

            r.output = tmp + "/out-\(gguf)-\(rtn)"
            let work = Converter.workFolder(for: r.output)
            r.afterBlock = { if $0 == 0 { throw ConvertError.interrupted(afterBlock: $0) } }
            XCTAssertThrowsError(try run(r))
            r.afterBlock = nil
            XCTAssertFalse(FileManager.default.fileExists(atPath: r.output))
            let saved = try SafetensorsFile(path: work + "/block-0.safetensors")
            XCTAssertEqual(saved.metadata["modules"]?.split(separator: ",").count, 7)
            XCTAssertNil(saved.info("m0.q"), "the fake-quantized weight is rebuilt from the codes, not stored")
            XCTAssertThrowsError(try run(r)) { XCTAssertTrue("\($0)".contains("pass --resume"), "\($0)") }
            var other = r; other.resume = true; other.options.groupSize = gguf ? 32 : -1; other.options.dampPercent = 0.02
            XCTAssertThrowsError(try run(other)) { XCTAssertTrue("\($0)".contains("other settings"), "\($0)") }
            XCTAssertEqual(Converter.resumeHint(for: r.output)?.contains("1 finished block is saved"), true)

            r.resume = true
            let bar = ProgressBar(label: "t", unit: .items("steps"))
            var first: (Int, Int)? = nil
            bar.observer = { d, t, _, _, _ in if first == nil { first = (d, t) } }
            let (logs, resumed) = try run(r, bar)
            XCTAssertEqual(resumed, 1)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: r.output)), reference, "gguf \(gguf): resumed bytes")
            XCTAssertFalse(FileManager.default.fileExists(atPath: work))
            let blockSteps = try XCTUnwrap(first).1 / 2
            XCTAssertEqual(bar.clockDone, blockSteps, "the rate clock starts after the saved block")
            XCTAssertEqual(logs.map(\.module), refLogs.map(\.module))
            XCTAssertEqual(logs.map(\.lossSum), refLogs.map(\.lossSum))
            XCTAssertEqual(logs.map(\.damp), refLogs.map(\.damp))
            XCTAssertThrowsError(try run(r)) { XCTAssertTrue("\($0)".contains("already complete"), "\($0)") }
        }
    }
}
