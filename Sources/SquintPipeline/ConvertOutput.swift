import CSquintKernels
import Foundation
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor

/// Writing a conversion's result: one SQ4 file, or an AutoGPTQ v1 folder that AutoGPTQ / optimum /
/// transformers load as they load the official Qwen-VL-Chat-Int4.
public enum ConvertOutput {
    /// Suffixes of the AutoGPTQ tensors of one quantized module, in the order they are written.
    static let moduleSuffixes = [".qweight", ".qzeros", ".scales", ".g_idx", ".bias"]

    /// Names, dtypes and shapes of an AutoGPTQ v1 checkpoint of `config` (no weights needed): the
    /// BF16 state_dict order, each block linear's `.weight` (and c_attn's `.bias`) replaced by its
    /// qweight I32 [in·bits/32, out], qzeros I32 [groups, out·bits/32], scales F16 [groups, out], g_idx
    /// I32 [in], bias F16 [out]; every other tensor F16 (the official Int4 is an fp16 model).
    public static func autogptqTensors(config: QwenVLConfig, bits: Int, groupSize: Int) -> [SafetensorsWriter.Tensor] {
        var out: [SafetensorsWriter.Tensor] = []
        let linears = Set(QwenLM.BlockLinear.allCases.map(\.rawValue))
        for spec in config.bf16TensorSpecs() {
            if let (prefix, module) = blockLinear(spec.name) {
                guard module.hasSuffix(".weight") else { continue }   // c_attn.bias: part of the module below
                _ = linears
                let o = spec.shape[0], i = spec.shape[1]
                let groups = groupSize == -1 ? 1 : i / groupSize
                out.append(.init(name: prefix + ".qweight", dtype: .i32, shape: [AutoGPTQPacking.packedCount(i, bits: bits), o]))
                out.append(.init(name: prefix + ".qzeros", dtype: .i32, shape: [groups, AutoGPTQPacking.packedCount(o, bits: bits)]))
                out.append(.init(name: prefix + ".scales", dtype: .f16, shape: [groups, o]))
                out.append(.init(name: prefix + ".g_idx", dtype: .i32, shape: [i]))
                out.append(.init(name: prefix + ".bias", dtype: .f16, shape: [o]))
            } else {
                out.append(.init(name: spec.name, dtype: .f16, shape: spec.shape))
            }
        }
        return out
    }

    /// The shard files of `autogptqTensors` for a shard limit (the official release used 2 GB).
    public static func autogptqShards(config: QwenVLConfig, bits: Int, groupSize: Int, maxShardSize: Int) throws
        -> [(fileName: String, tensors: [SafetensorsWriter.Tensor])] {
        try ShardedSafetensorsWriter(tensors: autogptqTensors(config: config, bits: bits, groupSize: groupSize),
                                     maxShardSize: maxShardSize).shards
    }

    /// ("transformer.h.3.mlp.w1", "weight-or-bias suffix") when `name` belongs to a quantized block linear.
    static func blockLinear(_ name: String) -> (String, String)? {
        guard name.hasPrefix("transformer.h.") else { return nil }
        for m in QwenLM.BlockLinear.allCases {
            for suffix in [".weight", ".bias"] {
                let tail = "." + m.rawValue + suffix
                if name.hasSuffix(tail) { return (String(name.dropLast(suffix.count)), m.rawValue + suffix) }
            }
        }
        return nil
    }

    /// The block file and module prefix of "transformer.h.L.<module>".
    static func blockIndex(_ prefix: String) -> Int {
        Int(prefix.dropFirst("transformer.h.".count).prefix { $0 != "." })!
    }

    /// One SQ4 file: the source's tensors in BF16 state_dict order (kept in their own dtype), each
    /// block linear as an SQ4 record converted from its packed AutoGPTQ form.
    /// The rank-1 U8 tensor holding the qwen.tiktoken bytes (`tokenizer.vocab_tensor`, Formats/SQUINT_INT4.md §2).
    static let vocabularyTensor = "tokenizer.qwen_tiktoken"

    /// `written(bytesDone, bytesTotal)` after each tensor (the full-size file takes minutes to write).
    static func writeSQ4(to dest: String, overwrite: Bool, header: SQ4Header, config: QwenVLConfig, source: TensorFile,
                         blockFiles: [SafetensorsFile], vocabulary: [UInt8]? = nil, written: ((Int, Int) -> Void)? = nil) throws {
        var tensors: [SafetensorsWriter.Tensor] = []
        var linears: [QuantizedLinearSpec] = []
        var recordOf: [String: String] = [:]     // tensor name -> module prefix
        func record(_ prefix: String) throws -> QuantizedLinearRecord {
            let f = blockFiles[blockIndex(prefix)]
            let m = try AutoGPTQLayout.module(in: f, prefix: prefix)
            let hasBias = source.info(prefix + ".bias") != nil
            return try AutoGPTQLayout.toSQ4(AutoGPTQModule(qweight: m.qweight, qzeros: m.qzeros, scales: m.scales, gIdx: m.gIdx,
                                                           bias: hasBias ? m.bias : nil), name: prefix, path: f.path)
        }
        for spec in config.bf16TensorSpecs() {
            if let (prefix, module) = blockLinear(spec.name) {
                guard module.hasSuffix(".weight") else { continue }
                let r = try record(prefix)
                linears.append(r.spec)
                for t in SquintInt4Writer.tensors(for: r) { tensors.append(t); recordOf[t.name] = prefix }
            } else {
                guard let info = source.info(spec.name) else { throw FormatError.missingTensor(path: source.path, name: spec.name) }
                tensors.append(.init(name: info.name, dtype: info.dtype, shape: info.shape))
            }
        }
        if let vocabulary, let name = header.tokenizer.vocabTensor {
            tensors.append(.init(name: name, dtype: .u8, shape: [vocabulary.count]))
        }
        let writer = try SquintInt4Writer(header: header, linears: linears, tensors: tensors, path: dest)
        var cached: (prefix: String, views: [String: TensorView])? = nil
        let count = ByteCount(tensors, written)
        try writer.write(to: dest, overwrite: overwrite) { t, sink in
            defer { count.add(t) }
            if let vocabulary, t.name == header.tokenizer.vocabTensor {
                try sink.write(vocabulary)
            } else if let prefix = recordOf[t.name] {
                if cached?.prefix != prefix {
                    let r = try record(prefix)
                    cached = (prefix, Dictionary(uniqueKeysWithValues: r.views.map { ($0.info.name, $0) }))
                }
                try sink.write(cached!.views[t.name]!.bytes)
            } else {
                let v = try source.view(t.name)
                guard v.info.isContiguous else { throw FormatError.unsupported(path: source.path, what: "tensor '\(t.name)' is not contiguous") }
                try sink.write(v.bytes)
                Converter.releasePages(v)
            }
        }
    }

    /// Every tensor of the AutoGPTQ layout into `folder` (shards + index), plus config.json and
    /// quantize_config.json. Returns the file names written.
    static func writeAutoGPTQ(folder: String, options o: ConvertOptions, config: QwenVLConfig, configJSON: JSONValue,
                              source: TensorFile, blockFiles: [SafetensorsFile], progress: ((Int, Int) -> Void)? = nil) throws -> [String] {
        let tensors = autogptqTensors(config: config, bits: o.bits, groupSize: o.groupSize)
        let metadata = ["format": "pt", "gptq_bits": "\(o.bits)", "gptq_group_size": "\(o.groupSize)",
                        "gptq_damp_percent": "\(o.dampPercent)", "gptq_desc_act": o.descAct ? "True" : "False"]
        let writer = try ShardedSafetensorsWriter(tensors: tensors, maxShardSize: o.maxShardSize, metadata: metadata)
        let count = ByteCount(tensors, progress)
        let written = try writer.write(toFolder: folder, overwrite: false) { t, sink in
            defer { count.add(t) }
            if let (prefix, _) = packedTensor(t.name) {
                let v = try blockFiles[blockIndex(prefix)].view(t.name)
                try sink.write(v.bytes)
            } else {
                let v = try source.view(t.name)
                try writeF16(v, to: sink)
                Converter.releasePages(v)
            }
        }
        try AtomicFileWriter.write(Array(int4ConfigText(configJSON, quantization: o.quantizeConfig).utf8), to: "\(folder)/config.json", overwrite: false)
        try AtomicFileWriter.write(Array(quantizeConfigText(o.quantizeConfig).utf8), to: "\(folder)/quantize_config.json", overwrite: false)
        return written.map { ($0 as NSString).lastPathComponent } + ["config.json", "quantize_config.json"]
    }

    /// Bytes of tensor data written so far, reported after each tensor.
    final class ByteCount {
        let total: Int
        var done = 0
        let report: ((Int, Int) -> Void)?
        init(_ tensors: [SafetensorsWriter.Tensor], _ report: ((Int, Int) -> Void)?) {
            total = tensors.reduce(0) { $0 + ($1.byteCount ?? 0) }; self.report = report
        }
        func add(_ t: SafetensorsWriter.Tensor) { done += t.byteCount ?? 0; report?(done, total) }
    }

    static func packedTensor(_ name: String) -> (String, String)? {
        guard name.hasPrefix("transformer.h.") else { return nil }
        for s in moduleSuffixes where name.hasSuffix(s) {
            let prefix = String(name.dropLast(s.count))
            if QwenLM.BlockLinear.allCases.contains(where: { prefix.hasSuffix("." + $0.rawValue) }) { return (prefix, s) }
        }
        return nil
    }

    /// A float tensor as fp16 (round to nearest even, as torch `.half()`), streamed in pieces.
    static func writeF16(_ v: TensorView, to sink: TensorSink) throws {
        guard v.info.isContiguous, [.bf16, .f16, .f32].contains(v.info.dtype) else {
            throw FormatError.unsupported(path: v.info.file, what: "tensor '\(v.info.name)': cannot write \(v.info.dtype.rawValue) as F16")
        }
        if v.info.dtype == .f16 { try sink.write(v.bytes); return }
        let n = v.info.elementCount, chunk = 1 << 22
        let f32 = UnsafeMutablePointer<Float>.allocate(capacity: chunk), f16 = UnsafeMutablePointer<UInt16>.allocate(capacity: chunk)
        defer { f32.deallocate(); f16.deallocate() }
        var s = 0
        while s < n {
            let m = min(chunk, n - s)
            let src = v.bytes.baseAddress!
            if v.info.dtype == .bf16 {
                sq_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self) + s, f32, m)
            } else {
                f32.update(from: src.assumingMemoryBound(to: Float.self) + s, count: m)
            }
            sq_f32_to_f16(f32, f16, m)
            try sink.write(UnsafeRawBufferPointer(start: f16, count: m * 2))
            s += m
        }
    }

    /// quantize_config.json exactly as AutoGPTQ writes it (json.dumps indent 2, no final newline).
    public static func quantizeConfigText(_ q: QuantizationConfig) -> String {
        pythonJSON(quantizeConfigJSON(q, withMethod: false))
    }

    static func quantizeConfigJSON(_ q: QuantizationConfig, withMethod: Bool) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = [
            ("bits", .integer(Int64(q.bits))), ("group_size", .integer(Int64(q.groupSize))),
            ("damp_percent", .double(q.dampPercent, text: pythonFloat(q.dampPercent))), ("desc_act", .bool(q.descAct)),
            ("static_groups", .bool(q.staticGroups)), ("sym", .bool(q.sym)), ("true_sequential", .bool(q.trueSequential)),
            ("model_name_or_path", q.modelNameOrPath.map { .string($0) } ?? .null),
            ("model_file_base_name", q.modelFileBaseName.map { .string($0) } ?? .null),
        ]
        if withMethod { m.append(("quant_method", .string("gptq"))) }
        return .object(m)
    }

    /// The official Int4 config.json from the BF16 one (the differences of the two official files,
    /// SPEC §1.2): `_name_or_path` dropped, fp16 true, torch_dtype float16, quantization_config
    /// added (keys sorted, as transformers writes them), transformers 4.32.0, use_flash_attn "auto".
    public static func int4ConfigText(_ bf16: JSONValue, quantization q: QuantizationConfig) -> String {
        guard case .object(var m) = bf16 else { return pythonJSON(bf16) }
        m.removeAll { $0.key == "_name_or_path" || $0.key == "quantization_config" }
        func set(_ k: String, _ v: JSONValue) {
            if let i = m.firstIndex(where: { $0.key == k }) { m[i].value = v } else { m.append((k, v)) }
        }
        set("bf16", .bool(false)); set("fp16", .bool(true)); set("fp32", .bool(false))
        set("torch_dtype", .string("float16")); set("transformers_version", .string("4.32.0"))
        set("use_flash_attn", .string("auto"))
        m.append(("quantization_config", quantizeConfigJSON(q, withMethod: true)))
        m.sort { $0.key < $1.key }
        return pythonJSON(.object(m))
    }

    /// Python's repr of a float (shortest round trip; "0.01", "1e-06").
    static func pythonFloat(_ d: Double) -> String {
        var s = "\(d)"
        if s.contains("e-") {   // Swift: 1e-06 -> "1e-06"; Python agrees for exponents < -4
            return s
        }
        if !s.contains(".") && !s.contains("e") { s += ".0" }
        return s
    }

    /// `json.dumps(v, indent=2)` (ensure_ascii, ", " / ": " separators), no final newline.
    public static func pythonJSON(_ v: JSONValue, indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent + 2), end = String(repeating: " ", count: indent)
        switch v {
        case .object(let m):
            if m.isEmpty { return "{}" }
            return "{\n" + m.map { pad + quote($0.key) + ": " + pythonJSON($0.value, indent: indent + 2) }.joined(separator: ",\n") + "\n" + end + "}"
        case .array(let a):
            if a.isEmpty { return "[]" }
            return "[\n" + a.map { pad + pythonJSON($0, indent: indent + 2) }.joined(separator: ",\n") + "\n" + end + "]"
        case .string(let s): return quote(s)
        case .integer(let i): return String(i)
        case .integerOutOfRange(let t): return t
        case .double(_, let t): return t
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }

    /// Python's `json.dumps` string form (ensure_ascii), as AutoGPTQ and transformers write configs.
    static func quote(_ s: String) -> String { JSONText.quotedASCII(s) }

}
