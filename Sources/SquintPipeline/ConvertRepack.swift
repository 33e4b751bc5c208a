import Foundation
import SquintFormats
import SquintModels

/// `convert` on an AutoGPTQ checkpoint (quantize_config.json, `.qweight` tensors): its codes,
/// scales and zero points are moved into one SQ4 file as they are, without re-quantising.
enum ConvertRepack {
    static func run(_ o: ConvertOptions, opened: OpenedCheckpoint, config: QwenVLConfig, configJSON: JSONValue,
                    started t0: Date) throws -> ConvertResult {
        guard o.format == .squint else {
            throw ConvertError.invalidOption("\(o.model) is already an AutoGPTQ checkpoint; it can only be repacked into --format squint")
        }
        let file = opened.file
        let q = opened.quantization ?? config.quantizationConfig ?? QuantizationConfig()
        var tensors: [SafetensorsWriter.Tensor] = []
        var linears: [QuantizedLinearSpec] = []
        var recordOf: [String: String] = [:]
        var used = Set<String>()
        func record(_ prefix: String) throws -> QuantizedLinearRecord {
            try AutoGPTQLayout.toSQ4(try AutoGPTQLayout.module(in: file, prefix: prefix), name: prefix, path: file.path)
        }
        for spec in config.bf16TensorSpecs() {
            if let (prefix, module) = ConvertOutput.blockLinear(spec.name) {
                guard module.hasSuffix(".weight") else { continue }
                let r = try record(prefix)
                linears.append(r.spec)
                for t in SquintInt4Writer.tensors(for: r) { tensors.append(t); recordOf[t.name] = prefix }
                for s in ConvertOutput.moduleSuffixes where file.info(prefix + s) != nil { used.insert(prefix + s) }
            } else {
                guard let info = file.info(spec.name) else { throw FormatError.missingTensor(path: file.path, name: spec.name) }
                tensors.append(.init(name: info.name, dtype: info.dtype, shape: info.shape))
                used.insert(spec.name)
            }
        }
        let extra = file.tensors.map(\.name).filter { !used.contains($0) }
        guard extra.isEmpty else {
            throw ConvertError.source(path: file.path, problem: "tensors this model does not have: \(extra.prefix(5).joined(separator: ", "))")
        }
        var tiktokenSHA: String? = nil
        if let v = try? Converter.findVocab(o.vocab, folder: opened.folder) { tiktokenSHA = try sha256Hex(file: v) }
        let header = SQ4Header(config: configJSON,
                               quantization: SQ4Quantization(bits: q.bits, groupSize: q.groupSize, sym: q.sym, descAct: q.descAct,
                                                             staticGroups: q.staticGroups, dampPercent: q.dampPercent,
                                                             trueSequential: q.trueSequential, method: .gptq),
                               tokenizer: SQ4Tokenizer(qwenTiktokenSHA256: tiktokenSHA),
                               provenance: SQ4Provenance(source: (opened.folder as NSString).lastPathComponent,
                                                         sourceSHA256: try Converter.sourceChecksum(opened),
                                                         calibration: "unknown: repacked from an AutoGPTQ checkpoint without re-quantising",
                                                         tool: Converter.toolVersion))
        let dest = (o.output as NSString).standardizingPath
        let writer = try SquintInt4Writer(header: header, linears: linears, tensors: tensors, path: dest)
        var cached: (prefix: String, views: [String: TensorView])? = nil
        try writer.write(to: dest, overwrite: o.force) { t, sink in
            if let prefix = recordOf[t.name] {
                if cached?.prefix != prefix {
                    cached = (prefix, Dictionary(uniqueKeysWithValues: try record(prefix).views.map { ($0.info.name, $0) }))
                }
                try sink.write(cached!.views[t.name]!.bytes)
            } else {
                try sink.write(try file.view(t.name).bytes)
            }
        }
        return ConvertResult(output: dest, format: "squint", method: "gptq", mode: "repacked", files: [dest], log: nil,
                             samples: 0, tokens: 0, blocks: config.numHiddenLayers, resumedFromBlock: nil, modules: [],
                             peakRSSBytes: peakRSSBytes(), spilledBytes: 0, seconds: Date().timeIntervalSince(t0), stageSeconds: [:])
    }
}
