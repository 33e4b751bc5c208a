import CSquintKernels
import Foundation
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor
import SquintTokenizer

/// `squint convert MODEL --calib-text FILE --format squint|autogptq` for the text decoders (Qwen2,
/// Llama): GPTQ/RTN codes from `DecoderConvert.quantize`, written as one self-contained SQ4 file
/// (version 2: tokenizer.json, chat template, config and generation config inside) or as a Hugging
/// Face AutoGPTQ folder (what transformers' GPTQ loader reads). docs/QUANTIZING.md "Text models".
///
/// Both outputs come from the same packed codes (`AutoGPTQPacking.pack`, AutoGPTQ's own packing
/// rule), SQ4 through the lossless `AutoGPTQLayout.toSQ4`, so the two files hold the same model bit
/// for bit. Tensors that stay in float (embedding, norms, lm_head when untied) are F16 in both:
/// transformers runs a GPTQ checkpoint in float16 (its scales and biases are F16 already), and F16
/// halves the embedding (the 0.5B's 151,936 x 896) against F32 at an error (2^-11 relative) far
/// below the 4-bit codes'. Block-linear biases are F16 (AutoGPTQ stores them so).
public enum DecoderOutputs {
    public enum Format: String, Sendable { case squint, autogptq }

    /// What a converted model carries besides weights.
    public struct Companions {
        /// config.json (transformers' spelling), from the folder or made from the GGUF metadata.
        public var config: JSONValue
        /// tokenizer.json bytes: the folder's own, or written from the GGUF vocabulary.
        public var tokenizerJSON: [UInt8]
        public var chatTemplate: String?
        /// tokenizer_config.json: the folder's own, or made from the GGUF metadata.
        public var tokenizerConfig: JSONValue
        public var generationConfig: JSONValue?
    }

    // MARK: Companions

    /// A float JSON number with the shortest text that reads back as `x` (as float32 when `x` came
    /// from a float32 GGUF value, so 1e-6 is written "1e-06", not "9.99999997e-07").
    static func number(_ x: Double) -> JSONValue {
        let f = Float(x)
        var t = Double(f) == x ? "\(f)" : "\(x)"
        if t == "inf" || t == "nan" || t == "-inf" { t = "0" }
        return .double(Double(t) ?? x, text: t)
    }

    static func int(_ i: Int) -> JSONValue { .integer(Int64(i)) }

    /// transformers' config.json for `dims` of family `arch` (what a GGUF file implies).
    public static func configJSON(architecture arch: DecoderArchitecture, dims d: DecoderDims) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string(arch.architectures.first ?? arch.name)])),
            ("model_type", .string(arch.modelTypes.first ?? arch.name)),
            ("hidden_size", int(d.hidden)), ("intermediate_size", int(d.intermediate)),
            ("num_hidden_layers", int(d.layers)), ("num_attention_heads", int(d.heads)),
            ("num_key_value_heads", int(d.kvHeads)),
        ]
        if arch.name != "qwen2" {
            m.append(("head_dim", int(d.headDim)))
            m.append(("attention_bias", .bool(d.biases.contains(.q))))
            m.append(("mlp_bias", .bool(d.biases.contains(.gate))))
        } else {
            m.append(("use_sliding_window", .bool(false)))
        }
        m += [("vocab_size", int(d.vocab)), ("rms_norm_eps", number(d.rmsNormEps)), ("rope_theta", number(d.ropeTheta)),
              ("hidden_act", .string("silu")), ("tie_word_embeddings", .bool(d.tiedEmbeddings))]
        if let p = d.maxPositions { m.append(("max_position_embeddings", int(p))) }
        if let b = d.bosTokenId { m.append(("bos_token_id", int(b))) }
        if d.eosTokenIds.count == 1 { m.append(("eos_token_id", int(d.eosTokenIds[0]))) }
        else if !d.eosTokenIds.isEmpty { m.append(("eos_token_id", .array(d.eosTokenIds.map(int)))) }
        m.append(("torch_dtype", .string("float16")))
        return .object(m)
    }

    static func parseJSONFile(_ path: String) throws -> JSONValue? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        return try d.withUnsafeBytes { try StrictJSON.parseObject($0, path: path, what: (path as NSString).lastPathComponent) }
    }

    /// The companions of an opened source: a folder's own files, or for a GGUF file ones made from its
    /// metadata (tokenizer.json by `ByteLevelBPETokenizer.tokenizerJSON`; a generation_config with
    /// Squint's text sampling defaults, which is what `run` uses on the GGUF itself).
    public static func companions(of tm: TextModel) throws -> Companions {
        if tm.gguf != nil {
            let tok = tm.tokenizer
            let template = tm.chatTemplate
            func text(_ id: Int?) -> JSONValue { id.map { .string(tok.tokens[$0]) } ?? .null }
            var tc: [(key: String, value: JSONValue)] = [
                ("add_bos_token", .bool(tok.addBOS)), ("add_eos_token", .bool(tok.addEOS)),
                ("bos_token", text(tok.bosTokenID)), ("eos_token", text(tok.eosTokenID)),
                ("clean_up_tokenization_spaces", .bool(false)), ("errors", .string("replace")),
                ("model_max_length", int(tm.model.dims.maxPositions ?? 32768)),
                ("tokenizer_class", .string("PreTrainedTokenizerFast")),
            ]
            if let t = template { tc.append(("chat_template", .string(t))) }
            let s = TextModel.defaultSampling
            var gen: [(key: String, value: JSONValue)] = []
            if let b = tok.bosTokenID { gen.append(("bos_token_id", int(b))) }
            if let e = tok.eosTokenID { gen.append(("eos_token_id", int(e))) }
            gen += [("do_sample", .bool(s.doSample)), ("temperature", number(Double(s.temperature))),
                    ("top_k", int(s.topK)), ("top_p", number(Double(s.topP)))]
            return Companions(config: configJSON(architecture: tm.model.architecture, dims: tm.model.dims),
                              tokenizerJSON: Array(tok.tokenizerJSON(merges: tok.merges).utf8), chatTemplate: template,
                              tokenizerConfig: .object(tc), generationConfig: .object(gen))
        }
        let folder = tm.path
        guard let config = try parseJSONFile(folder + "/config.json") else {
            throw FormatError.io(path: folder + "/config.json", message: "cannot read the model's config.json")
        }
        guard let tj = FileManager.default.contents(atPath: folder + "/tokenizer.json") else {
            throw FormatError.io(path: folder + "/tokenizer.json", message: "cannot read the model's tokenizer.json")
        }
        var tc = try parseJSONFile(folder + "/tokenizer_config.json") ?? .object([])
        if case .object(var m) = tc, let t = tm.chatTemplate, m.firstIndex(where: { $0.key == "chat_template" }) == nil {
            m.append(("chat_template", .string(t))); tc = .object(m)
        }
        return Companions(config: config, tokenizerJSON: Array(tj), chatTemplate: tm.chatTemplate, tokenizerConfig: tc,
                          generationConfig: try parseJSONFile(folder + "/generation_config.json"))
    }

    // MARK: Packing

    /// One quantized module in both layouts: AutoGPTQ's packed tensors and the SQ4 record made from them.
    public struct PackedModule {
        public var prefix: String
        public var packed: AutoGPTQPacking.Packed
        public var hasBias: Bool
        public var record: QuantizedLinearRecord
    }

    /// Packs every module (AutoGPTQ's rule, `AutoGPTQPacking.pack`) under Hugging Face names, with the
    /// bias the model's layer carries where the family has one, and converts it to its SQ4 record.
    public static func pack(model: DecoderLM, modules: [DecoderConvert.Module]) throws -> [PackedModule] {
        let naming = model.architecture.naming
        return try modules.map { m in
            let prefix = naming.module(m.layer, m.linear)
            let hasBias = model.dims.biases.contains(m.linear)
            let bias = hasBias ? (model.linear(layer: m.layer, m.linear) as? Linear)?.bias : nil
            if hasBias && bias == nil { throw ConvertError.invalidOption("\(prefix): the layer's bias is missing") }
            let w = m.weight
            let p: AutoGPTQPacking.Packed
            do {
                p = try AutoGPTQPacking.pack(q: w.fakeQuantized(minOffset: false), scale: w.scale, zero: w.zero, gIdx: w.gIdx, bias: bias,
                                             inFeatures: w.columns, outFeatures: w.rows, groups: w.groups, bits: 4)
            } catch let e as QuantError { throw ConvertError.invalidOption("\(prefix): \(e)") }
            let module = AutoGPTQModule(
                qweight: OwnedBytes.view(name: prefix + ".qweight", dtype: .i32, shape: [w.columns / 8, w.rows], p.qweight),
                qzeros: OwnedBytes.view(name: prefix + ".qzeros", dtype: .i32, shape: [p.groups, w.rows / 8], p.qzeros),
                scales: OwnedBytes.view(name: prefix + ".scales", dtype: .f16, shape: [p.groups, w.rows], p.scales),
                gIdx: OwnedBytes.view(name: prefix + ".g_idx", dtype: .i32, shape: [w.columns], p.gIdx),
                bias: hasBias ? OwnedBytes.view(name: prefix + ".bias", dtype: .f16, shape: [w.rows], p.bias) : nil)
            let record = try AutoGPTQLayout.toSQ4(module, name: prefix, path: "<\(prefix)>")
            return PackedModule(prefix: prefix, packed: p, hasBias: hasBias, record: record)
        }
    }

    /// float32 values as F16 bytes (round to nearest even, as torch `.half()`).
    static func f16Bytes(_ v: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: v.count * 2)
        out.withUnsafeMutableBytes { o in
            v.withUnsafeBufferPointer { sq_f32_to_f16($0.baseAddress!, o.baseAddress!.assumingMemoryBound(to: UInt16.self), v.count) }
        }
        return out
    }

    // MARK: SQ4

    /// The rank-1 U8 tensor holding tokenizer.json (`tokenizer.tokenizer_json_tensor`).
    public static let tokenizerTensor = "tokenizer.json"

    /// One SQ4 version 2 file: the Hugging Face tensor table in order, each block linear as its
    /// record (its bias inside), the rest F16, then the tokenizer.json bytes.
    public static func writeSQ4(model: DecoderLM, packed: [PackedModule], companions c: Companions,
                                quantization: SQ4Quantization, provenance: SQ4Provenance, to path: String, overwrite: Bool) throws {
        let naming = model.architecture.naming
        let records = Dictionary(uniqueKeysWithValues: packed.map { ($0.prefix, $0.record) })
        let dense = Dictionary(uniqueKeysWithValues: model.denseTensors(naming: naming).map { ($0.name, $0) })
        var tensors: [SafetensorsWriter.Tensor] = [], views: [String: TensorView] = [:], linears: [QuantizedLinearSpec] = []
        for spec in model.dims.tensorTable(naming) {
            switch spec.role {
            case .weight(let m):
                let prefix = naming.module(spec.layer!, m)
                guard let r = records[prefix] else { throw ConvertError.invalidOption("no quantized module for \(prefix)") }
                linears.append(r.spec)
                for v in r.views { tensors.append(.init(name: v.info.name, dtype: v.info.dtype, shape: v.info.shape)); views[v.info.name] = v }
            case .bias: continue
            default: tensors.append(.init(name: spec.name, dtype: .f16, shape: spec.shape))
            }
        }
        tensors.append(.init(name: tokenizerTensor, dtype: .u8, shape: [c.tokenizerJSON.count]))
        let header = SQ4Header(config: c.config, quantization: quantization,
                               tokenizer: SQ4Tokenizer(tokenizerJSONTensor: tokenizerTensor, chatTemplate: c.chatTemplate),
                               provenance: provenance, generationConfig: c.generationConfig)
        let writer = try SquintInt4Writer(header: header, linears: linears, tensors: tensors, path: path)
        try writer.write(to: path, overwrite: overwrite) { t, sink in
            if t.name == tokenizerTensor {
                try c.tokenizerJSON.withUnsafeBytes { try sink.write($0) }
            } else if let v = views[t.name] {
                try sink.write(v.bytes)
            } else if let d = dense[t.name] {
                try f16Bytes(d.values).withUnsafeBytes { try sink.write($0) }
            } else {
                throw FormatError.missingTensor(path: path, name: t.name)
            }
        }
    }

    // MARK: AutoGPTQ

    /// A Hugging Face GPTQ folder: model.safetensors (HF names; per block linear `qweight` I32
    /// [in/8, out], `qzeros` I32 [groups, out/8], `scales` F16 [groups, out], `g_idx` I32 [in], `bias`
    /// F16 [out] where the layer has one; everything else F16), config.json with
    /// `quantization_config`, quantize_config.json, tokenizer.json, tokenizer_config.json and
    /// generation_config.json. Written in a hidden staging folder beside `folder`, renamed into place
    /// when complete. Returns the file names.
    public static func writeAutoGPTQ(model: DecoderLM, packed: [PackedModule], companions c: Companions,
                                     quantization q: QuantizationConfig, to folder: String, overwrite: Bool) throws -> [String] {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder) && !overwrite { throw FormatError.exists(path: folder) }
        let naming = model.architecture.naming
        let byPrefix = Dictionary(uniqueKeysWithValues: packed.map { ($0.prefix, $0) })
        let dense = Dictionary(uniqueKeysWithValues: model.denseTensors(naming: naming).map { ($0.name, $0) })
        var tensors: [SafetensorsWriter.Tensor] = []
        var bytes: [String: () -> [UInt8]] = [:]
        func raw<T>(_ a: [T]) -> () -> [UInt8] { { a.withUnsafeBytes { Array($0) } } }
        for spec in model.dims.tensorTable(naming) {
            switch spec.role {
            case .weight(let m):
                let prefix = naming.module(spec.layer!, m)
                guard let p = byPrefix[prefix] else { throw ConvertError.invalidOption("no quantized module for \(prefix)") }
                let k = p.packed, out = k.outFeatures, inF = k.inFeatures
                let parts: [(String, DType, [Int], () -> [UInt8])] = [
                    (".qweight", .i32, [inF / 8, out], raw(k.qweight)), (".qzeros", .i32, [k.groups, out / 8], raw(k.qzeros)),
                    (".scales", .f16, [k.groups, out], raw(k.scales)), (".g_idx", .i32, [inF], raw(k.gIdx)),
                ] + (p.hasBias ? [(".bias", .f16, [out], raw(k.bias))] : [])
                for (suffix, dt, shape, b) in parts {
                    tensors.append(.init(name: prefix + suffix, dtype: dt, shape: shape)); bytes[prefix + suffix] = b
                }
            case .bias: continue
            default:
                guard let d = dense[spec.name] else { throw FormatError.missingTensor(path: folder, name: spec.name) }
                tensors.append(.init(name: spec.name, dtype: .f16, shape: spec.shape))
                bytes[spec.name] = { f16Bytes(d.values) }
            }
        }
        let parent = Paths.parent(of: folder)
        let stage = "\(parent)/.\((folder as NSString).lastPathComponent).tmp-\(getpid())-folder"   // AtomicFileWriter's naming: Ctrl-C's cleanup finds it
        try? fm.removeItem(atPath: stage)
        try fm.createDirectory(atPath: stage, withIntermediateDirectories: true)
        do {
            let st = try SafetensorsWriter(tensors: tensors, metadata: ["format": "pt"], path: stage + "/model.safetensors")
            try st.write(to: stage + "/model.safetensors", overwrite: false) { t in
                guard let b = bytes[t.name] else { throw FormatError.missingTensor(path: folder, name: t.name) }
                return b()
            }
            var config = c.config
            if case .object(var m) = config {
                m.removeAll { $0.key == "quantization_config" || $0.key == "torch_dtype" }
                m.append(("torch_dtype", .string("float16")))
                m.append(("quantization_config", ConvertOutput.quantizeConfigJSON(q, withMethod: true)))
                config = .object(m)
            }
            var files: [(String, String)] = [("config.json", ConvertOutput.pythonJSON(config)),
                                             ("quantize_config.json", ConvertOutput.quantizeConfigText(q)),
                                             ("tokenizer_config.json", ConvertOutput.pythonJSON(c.tokenizerConfig))]
            if let g = c.generationConfig { files.append(("generation_config.json", ConvertOutput.pythonJSON(g))) }
            for (name, text) in files { try AtomicFileWriter.write(Array((text + "\n").utf8), to: "\(stage)/\(name)", overwrite: false) }
            try AtomicFileWriter.write(c.tokenizerJSON, to: stage + "/tokenizer.json", overwrite: false)
            try CommitGate.commit(to: folder) {
                if fm.fileExists(atPath: folder) { try fm.removeItem(atPath: folder) }
                try fm.moveItem(atPath: stage, toPath: folder)
            }
            return (["model.safetensors", "tokenizer.json"] + files.map(\.0)).sorted()
        } catch {
            try? fm.removeItem(atPath: stage)
            throw error
        }
    }

    // MARK: The command

    public struct Result: Codable, Sendable {
        public var output: String
        public var format: String
        public var method: String
        public var samples: Int
        public var tokens: Int
        public var blocks: Int
        public var files: [String]
        public var modules: [ConvertModuleLog]
        public var seconds: Double
        public var peakRSSBytes: Int
        /// The block a `--resume` run started at (nil: it ran from the start).
        public var resumedFromBlock: Int? = nil
        enum CodingKeys: String, CodingKey {
            case output, format, method, samples, tokens, blocks, files, modules, seconds
            case peakRSSBytes = "peak_rss_bytes", resumedFromBlock = "resumed_from_block"
        }
    }

    /// SQ4 holds equal groups only (Formats/SQUINT_INT4.md), and the AutoGPTQ output is packed through
    /// the same records: refuses, before any work, a group size that does not divide every block
    /// linear's inputs (SmolLM2-135M's 576 at 128), naming the sizes that do. (AutoGPTQ itself would
    /// give the last group fewer inputs; Squint does not write such files.)
    static func checkGroupsDivide(_ d: DecoderDims, groupSize: Int, model: String) throws {
        guard groupSize > 0 else { return }
        let inputs = d.blockLinears.map { ($0, d.shape(of: $0)[1]) }
        guard let (m, n) = inputs.first(where: { $0.1 % groupSize != 0 }) else { return }
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let g = inputs.map(\.1).reduce(0, gcd)
        let fits = stride(from: 32, through: g, by: 32).filter { g % $0 == 0 }.map(String.init) + ["-1"]
        throw ConvertError.invalidOption("--group-size \(groupSize) does not divide the \(n) inputs of \(m.rawValue) in \(model); "
            + "Squint's SQ4 and AutoGPTQ outputs need equal groups: use --group-size \(fits.joined(separator: " or "))")
    }

    /// `squint convert MODEL(.gguf | HF folder) --calib-text FILE --format squint -o OUT.sq4` (or
    /// `--format autogptq -o DIR`): opens the model in float32, calibrates as `--format gguf` does
    /// (`DecoderConvert.calibrationWindows`), quantizes, writes OUT and OUT's log.
    public static func run(_ r: DecoderConvert.Request, format: Format, progress: ProgressBar? = nil) throws -> Result {
        let t0 = Date()
        try DecoderConvert.checkOutput(r)
        var o = r.options
        o.container = format == .squint ? .squint : .autogptq
        try o.check()
        let tm = try TextModel.open(r.model)
        guard tm.model.quantization == .dense else {
            throw ConvertError.invalidOption("\(r.model) is already an Int4 model (\(tm.model.quantization.rawValue)); convert its float original")
        }
        try checkGroupsDivide(tm.model.dims, groupSize: o.groupSize, model: r.model)
        let companions = try companions(of: tm)
        var windows: [[Int32]] = []
        var calibName = "none (round to nearest)"
        if o.method == .gptq {
            guard let path = r.calibrationText else { throw ConvertError.invalidOption("--calib-text FILE.txt is required for --method gptq") }
            guard let data = FileManager.default.contents(atPath: path) else { throw FormatError.io(path: path, message: "cannot read the calibration text") }
            guard let text = String(data: data, encoding: .utf8) else { throw FormatError.invalid(path: path, what: "not UTF-8 text") }
            let ids = tm.tokenizer.encode(text, addSpecial: false, parseSpecial: false).map(Int32.init)
            let bos: Int32? = tm.tokenizer.addBOS ? tm.tokenizer.bosTokenID.map(Int32.init) : nil
            windows = try DecoderConvert.calibrationWindows(tokens: ids, count: r.samples, length: r.sampleTokens, bos: bos)
            calibName = "\((path as NSString).lastPathComponent): \(windows.count) windows x \(r.sampleTokens) tokens"
        }
        let ((modules, files), resumedFrom) = try DecoderConvert.quantizeResumable(r, model: tm.model, windows: windows, options: o,
                                                                    progress: progress) { modules -> ([DecoderConvert.Module], [String]) in
            progress?.finish()
            let packed = try pack(model: tm.model, modules: modules)
            let static_ = o.staticGroups
            switch format {
            case .squint:
                let q = SQ4Quantization(bits: 4, groupSize: o.groupSize == -1 ? 0 : o.groupSize, sym: o.sym, descAct: o.descAct,
                                        staticGroups: static_, dampPercent: Double("\(o.dampPercent)") ?? Double(o.dampPercent), trueSequential: true,
                                        method: o.method == .gptq ? .gptq : .rtn)
                let prov = SQ4Provenance(source: (r.model as NSString).lastPathComponent, calibration: calibName + o.methodNote, tool: Converter.toolVersion)
                try writeSQ4(model: tm.model, packed: packed, companions: companions, quantization: q, provenance: prov,
                             to: r.output, overwrite: r.force)
                return (modules, [r.output])
            case .autogptq:
                let q = QuantizationConfig(bits: 4, groupSize: o.groupSize, dampPercent: Double("\(o.dampPercent)") ?? Double(o.dampPercent), descAct: o.descAct,
                                           staticGroups: static_, sym: o.sym, trueSequential: true, modelNameOrPath: nil,
                                           modelFileBaseName: "model", quantMethod: "gptq")
                return (modules, try writeAutoGPTQ(model: tm.model, packed: packed, companions: companions, quantization: q,
                                                   to: r.output, overwrite: r.force).map { "\(r.output)/\($0)" })
            }
        }
        let result = Result(output: r.output, format: format.rawValue, method: o.method.rawValue, samples: windows.count,
                            tokens: windows.reduce(0) { $0 + $1.count }, blocks: tm.model.dims.layers, files: files,
                            modules: modules.map(\.log), seconds: Date().timeIntervalSince(t0), peakRSSBytes: peakRSSBytes(),
                            resumedFromBlock: resumedFrom)
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let log = format == .squint ? r.output + ".log.json" : r.output + "/convert_log.json"
        try AtomicFileWriter.write(Array(try enc.encode(result)), to: log, overwrite: true)
        return result
    }
}
