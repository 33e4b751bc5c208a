import Foundation
import SquintFormats
import SquintModels

/// A checkpoint as a user has it (a file or a model folder), opened with the right reader.
public struct OpenedCheckpoint {
    public var file: TensorFile
    /// safetensors, pytorch, squint-int4, or sharded-<container> (see `InspectReport.format`).
    public var format: String
    /// The folder's config.json, when there is one.
    public var config: QwenVLConfig?
    /// The folder's quantize_config.json (AutoGPTQ), when there is one.
    public var quantization: QuantizationConfig?
    public var isSquintInt4: Bool
    /// The model folder (the file's folder when a file was given).
    public var folder: String
    /// The config says `"squint_synthetic": true`: weights written by `squint synth` (or converted
    /// from such a model), whose answers and perplexities are noise by design.
    public var isSynthetic = false
}

public enum CheckpointOpener {
    /// What a file is, from its first bytes (never from its name alone).
    enum Kind { case safetensors, torchZip, torchLegacy, index, squintInt4, gguf }

    static func sniff(_ path: String) throws -> Kind {
        if path.hasSuffix(".json") { return .index }
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw FormatError.io(path: path, message: FileManager.default.fileExists(atPath: path) ? "cannot open the file" : "no such file or folder")
        }
        defer { try? h.close() }
        let head = [UInt8](h.readData(ofLength: 16))
        if head.count >= 8, Array(head.prefix(8)) == SQ4.magic { return .squintInt4 }
        if head.count >= 4, Array(head.prefix(4)) == GGUFFile.magic { return .gguf }
        if head.count >= 4, head[0] == 0x50, head[1] == 0x4B, head[2] == 0x03, head[3] == 0x04 { return .torchZip }
        if head.count >= 2, head[0] == 0x80, head[1] <= 5 { return .torchLegacy }
        if head.count >= 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        if head.count < 9 {
            throw FormatError.truncated(path: path, what: "only \(head.count) bytes: too short for any checkpoint format")
        }
        throw FormatError.unsupported(path: path, what: "not a safetensors, GGUF, torch zip or legacy torch file (first bytes \(head.prefix(8).map { String(format: "%02x", $0) }.joined()))")
    }

    static func openFile(_ path: String) throws -> (TensorFile, String) {
        switch try sniff(path) {
        case .safetensors: return (try SafetensorsFile(path: path), "safetensors")
        case .torchZip, .torchLegacy: return (try TorchCheckpoint(path: path), "pytorch")
        case .squintInt4: return (try SquintInt4File(path: path), "squint-int4")
        case .gguf: return (try GGUFFile(path: path), "gguf")
        case .index:
            let sharded = try ShardedCheckpoint(indexPath: path) { shard in try openFile(shard).0 }
            let inner = path.contains(".bin.") ? "pytorch" : "safetensors"
            return (sharded, "sharded-\(inner)")
        }
    }

    /// The weights file a user's path stands for: the file itself, or in a folder the index (which
    /// wins over single files) or the one weight file; a folder with several unrelated weight files
    /// and no index is refused rather than guessed at.
    public static func weightsPath(_ path: String) throws -> String {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError.io(path: path, message: "no such file or folder")
        }
        guard isDir.boolValue else { return path }
        let names = (try? fm.contentsOfDirectory(atPath: path)) ?? []
        let preferred = ["model.safetensors.index.json", "pytorch_model.bin.index.json",
                         "model.safetensors", "pytorch_model.bin", "model.sq4"]
        if let p = preferred.first(where: names.contains) { return "\(path)/\(p)" }
        let candidates = names.filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".sq4") || $0.hasSuffix(".gguf") || $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth") }.sorted()
        guard candidates.count == 1 else {
            throw FormatError.invalid(path: path, what: candidates.isEmpty
                ? "no checkpoint in this folder (looked for *.safetensors, *.sq4, *.gguf, *.bin, *.pt, *.pth and index files)"
                : "several weight files and no index (\(candidates.prefix(4).joined(separator: ", "))): name one")
        }
        return "\(path)/\(candidates[0])"
    }

    /// The tensors of a file or model folder with the right reader and its format name (see
    /// `OpenedCheckpoint.format`), without reading any config.json (`export` needs none, and a
    /// folder of another architecture has a config Qwen-VL's decoder would refuse).
    public static func openTensors(_ path: String) throws -> (file: TensorFile, format: String) {
        try openFile(try weightsPath(path))
    }

    /// A Qwen2/Llama decoder's config (read by TextModel: an SQ4 of one, a Hugging Face folder or the
    /// AutoGPTQ folder `convert` writes for one) has no Qwen-VL config to give.
    static func isTextDecoder(_ config: Data, path: String) -> Bool {
        (try? DecoderRegistry.architecture(forConfig: config, path: path)) != nil
    }

    /// Opens a file or a model folder (see `weightsPath`) with its config.json and quantize_config.json.
    public static func open(_ path: String) throws -> OpenedCheckpoint {
        let fm = FileManager.default
        let weights = try weightsPath(path)
        let folder = weights == path ? Paths.parent(of: path) : path
        let (file, format) = try openFile(weights)
        var config: QwenVLConfig?
        let cfgPath = "\(folder)/config.json"
        if let sq4 = file as? SquintInt4File {
            // The file's own; a config.json beside it may be another model's.
            config = isTextDecoder(Data(sq4.header.config.compactText.utf8), path: sq4.path) ? nil : try configFromHeader(sq4)
        } else if !(file is GGUFFile), let d = fm.contents(atPath: cfgPath) {
            // (a GGUF file carries its own configuration in its metadata)
            config = isTextDecoder(d, path: cfgPath) ? nil : try QwenVLConfig.decode(d, path: cfgPath)
        }
        var quant: QuantizationConfig?
        let qPath = "\(folder)/quantize_config.json"
        if let sq4 = file as? SquintInt4File {
            let q = sq4.header.quantization
            quant = QuantizationConfig(bits: q.bits, groupSize: q.groupSize, dampPercent: q.dampPercent, descAct: q.descAct,
                                       staticGroups: q.staticGroups, sym: q.sym, trueSequential: q.trueSequential,
                                       modelNameOrPath: nil, modelFileBaseName: nil, quantMethod: q.method.rawValue)
        } else if !(file is GGUFFile), let d = fm.contents(atPath: qPath) {
            do { quant = try JSONDecoder().decode(QuantizationConfig.self, from: d) } catch {
                throw ModelError.config(path: qPath, message: "not a valid quantize_config.json (\(error))")
            }
            try quant?.validate(path: qPath)
        }
        var synthetic = false
        if let sq4 = file as? SquintInt4File {
            if case .object(let members) = sq4.header.config { synthetic = members.contains { $0.key == SyntheticWeights.configMarker && $0.value == .bool(true) } }
        } else if let d = fm.contents(atPath: cfgPath), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
            synthetic = (o[SyntheticWeights.configMarker] as? Bool) == true
        }
        return OpenedCheckpoint(file: file, format: format, config: config, quantization: quant,
                                isSquintInt4: file is SquintInt4File, folder: folder, isSynthetic: synthetic)
    }

    /// An SQ4 file carries its model's whole config.json in the header (Formats/SQUINT_INT4.md §2),
    /// so a lone `.sq4` file runs without a folder around it.
    static func configFromHeader(_ f: SquintInt4File) throws -> QwenVLConfig {
        let what = "\(f.path) (header config)"
        let cfg: QwenVLConfig
        do { cfg = try JSONDecoder().decode(QwenVLConfig.self, from: Data(f.header.config.compactText.utf8)) } catch {
            throw ModelError.config(path: what, message: "not a valid Qwen-VL config (\(error))")
        }
        try cfg.validate(path: what)
        return cfg
    }
}
