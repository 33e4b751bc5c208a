import Foundation
import SquintFormats
import SquintModels
import SquintTensor
import SquintTokenizer

/// A text-only decoder model (Qwen2, Llama) with its tokenizer, opened from a GGUF file (weights
/// dequantised to float32: "the original" for validation and quantization) or from a Hugging Face
/// folder (`config.json` + safetensors + `tokenizer.json`).
public final class TextModel {
    public let path: String
    public let model: DecoderLM
    public let tokenizer: ByteLevelBPETokenizer
    /// GGUF: the file's metadata (chat template, names); nil for a folder.
    public let gguf: GGUFFile?
    /// Where the model came from, for banners and reports: "gguf qwen2 (Q5_0, Q8_0, ...)", "folder".
    public let source: String
    /// The chat template an SQ4 file's header or a folder's tokenizer_config.json carries (a GGUF's is
    /// read from its metadata by `chatTemplate`).
    public internal(set) var storedChatTemplate: String?
    /// The generation_config object of an SQ4 header or a folder's generation_config.json, if any.
    public internal(set) var generationConfig: JSONValue?
    /// The SQ4 file a model was opened from (nil otherwise).
    public internal(set) var sq4: SquintInt4File?

    init(path: String, model: DecoderLM, tokenizer: ByteLevelBPETokenizer, gguf: GGUFFile?, source: String) {
        self.path = path; self.model = model; self.tokenizer = tokenizer; self.gguf = gguf; self.source = source
    }

    /// True when `path` is a GGUF file (by its magic) or a folder whose config.json names a decoder
    /// family Squint knows (Qwen2, Llama).
    public static func canOpen(_ path: String) -> Bool {
        if isGGUF(path) { return true }
        if isSQ4(path) { return (try? decoderArchitecture(ofSQ4: SquintInt4File(path: path))) != nil }
        guard let data = FileManager.default.contents(atPath: path + "/config.json") else { return false }
        return (try? DecoderRegistry.architecture(forConfig: data, path: path + "/config.json")) != nil
    }

    static func isGGUF(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
              let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)).map { Array($0) == GGUFFile.magic } ?? false
    }

    public static func open(_ path: String, progress: ((Int, Int) -> Void)? = nil) throws -> TextModel {
        if isGGUF(path) { return try openGGUF(path, progress: progress) }
        if isSQ4(path) { return try openSQ4(path) }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError.io(path: path, message: "no such file or folder")
        }
        guard isDir.boolValue else {
            throw FormatError.io(path: path, message: "not a GGUF file (no GGUF magic) and not a model folder")
        }
        let model = try DecoderLM.load(folder: path)
        let tj = path + "/tokenizer.json"
        guard FileManager.default.fileExists(atPath: tj) else {
            throw FormatError.io(path: tj, message: "the model folder has no tokenizer.json")
        }
        let tok = try ByteLevelBPETokenizer(tokenizerJSONFile: tj)
        let tm = TextModel(path: path, model: model, tokenizer: tok, gguf: nil,
                           source: "folder \(model.architecture.name)" + (model.quantization == .autoGPTQ ? " (AutoGPTQ int4)" : ""))
        try tm.readFolderCompanions()
        return tm
    }

    static func openGGUF(_ path: String, progress: ((Int, Int) -> Void)?) throws -> TextModel {
        let file = try GGUFFile(path: path)
        guard let archName = file.architecture else {
            throw FormatError.invalid(path: path, what: "no general.architecture key: not a model GGUF")
        }
        guard let arch = DecoderRegistry.architecture(named: archName) else {
            throw FormatError.invalid(path: path, what: "architecture '\(printable(archName))' is not one Squint runs "
                                      + "(supported: \(DecoderRegistry.architectures.map(\.name).joined(separator: ", ")))")
        }
        if let scaling = file.value(forKey: "\(archName).rope.scaling.type")?.string, scaling != "none" {
            throw FormatError.invalid(path: path, what: "\(archName).rope.scaling.type is '\(printable(scaling))': RoPE scaling is not supported")
        }
        // torch order [out, in]: GGUF's ne reversed.
        let shapes = file.ggufTensors.map { (name: $0.name, shape: $0.shape) }
        let dims = try DecoderDims.gguf(architecture: arch, integer: { file.value(forKey: $0)?.int },
                                        float: { file.value(forKey: $0)?.double },
                                        shapes: Dictionary(shapes.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a }),
                                        path: path)
        var done = 0
        // Float tensors are used in place (mapped, not copied); quantized ones are dequantised.
        let model = try DecoderLM.fromGGUF(architecture: arch, dims: dims, shapes: shapes, path: path, view: { name in
            guard let t = file.ggufTensor(named: name), t.type.plainDType != nil else { return nil }
            done += 1; progress?(done, shapes.count)
            return try file.view(name)
        }) { name in
            guard let t = file.ggufTensor(named: name) else { throw FormatError.invalid(path: path, what: "no tensor \(name)") }
            defer { done += 1; progress?(done, shapes.count) }
            return try GGUFDequant.dequantize(t, of: file)
        }
        let tok = try tokenizer(of: file)
        guard tok.vocabularySize <= dims.vocab else {
            throw FormatError.invalid(path: path, what: "the tokenizer has \(tok.vocabularySize) tokens but token_embd.weight only \(dims.vocab) rows")
        }
        let types = Set(file.ggufTensors.map(\.type.name)).sorted().joined(separator: ", ")
        return TextModel(path: path, model: model, tokenizer: tok, gguf: file, source: "gguf \(archName) (\(types))")
    }

    /// The byte-level BPE tokenizer a GGUF file carries (`tokenizer.ggml.*`, model `gpt2`).
    public static func tokenizer(of file: GGUFFile) throws -> ByteLevelBPETokenizer {
        let model = file.value(forKey: "tokenizer.ggml.model")?.string
        guard model == "gpt2" else {
            throw FormatError.invalid(path: file.path, what: "tokenizer.ggml.model is '\(printable(model ?? "absent"))'; "
                                      + "Squint reads byte-level BPE (gpt2) vocabularies only")
        }
        guard let tokens = file.value(forKey: "tokenizer.ggml.tokens")?.strings,
              let merges = file.value(forKey: "tokenizer.ggml.merges")?.strings else {
            throw FormatError.invalid(path: file.path, what: "tokenizer.ggml.tokens / tokenizer.ggml.merges missing or not string arrays")
        }
        let types = file.value(forKey: "tokenizer.ggml.token_type")?.ints.map { $0.map { Int32(truncatingIfNeeded: $0) } }
        return try ByteLevelBPETokenizer(
            tokens: tokens, tokenTypes: types, merges: merges,
            preTokenizer: file.value(forKey: "tokenizer.ggml.pre")?.string ?? "default",
            bosTokenID: file.value(forKey: "tokenizer.ggml.bos_token_id")?.int,
            eosTokenID: file.value(forKey: "tokenizer.ggml.eos_token_id")?.int,
            addBOS: file.value(forKey: "tokenizer.ggml.add_bos_token")?.bool,
            addEOS: file.value(forKey: "tokenizer.ggml.add_eos_token")?.bool, source: file.path)
    }

    /// Perplexity of `text` as llama-perplexity computes it (see `Perplexity`): the text tokenized
    /// whole with the model's BOS rule, non-overlapping windows of `context` tokens, second halves scored.
    public func perplexity(text: String, context: Int, maxWindows: Int? = nil,
                           progress: ((Int, Int, Double) -> Void)? = nil) throws -> Perplexity.Result {
        let ids = tokenizer.encode(text, addSpecial: true, parseSpecial: false).map(Int32.init)
        let bos: Int32? = tokenizer.addBOS ? tokenizer.bosTokenID.map(Int32.init) : nil
        if let maxPos = model.dims.maxPositions, context > maxPos {
            throw PerplexityError.contextTooLong(context, maxPos)
        }
        let vocab = model.dims.vocab
        let cache = model.makeCache(capacity: context)
        return try Perplexity.run(tokens: ids, options: .init(context: context, bos: bos, maxWindows: maxWindows), vocab: vocab,
                                  evaluate: { w in
            cache.reset()
            let first = w.count / 2
            let r = try model.prefill(tokens: w, cache: cache, logitRows: first..<(w.count - 1))
            return (r.logits.data, first)   // rows first..<ctx-1: the last position predicts nothing scored
        }, progress: progress)
    }
}
