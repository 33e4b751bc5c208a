import Foundation
import SquintFormats
import SquintModels
import SquintTensor
import SquintTokenizer

/// Text models stored by `squint convert --format squint` (one self-contained SQ4 version 2 file)
/// and `--format autogptq` (a Hugging Face folder): what `TextModel.open` needs besides the weights.
extension TextModel {
    /// True when `path` is a file starting with the SQ4 magic.
    static func isSQ4(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
              let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 8)).map { Array($0) == SQ4.magic } ?? false
    }

    /// The decoder family and dims an SQ4 header's `config` describes; throws when it is not a
    /// decoder Squint runs (a Qwen-VL SQ4 file, for instance).
    static func decoderArchitecture(ofSQ4 f: SquintInt4File) throws -> (DecoderArchitecture, DecoderDims) {
        let data = Data(f.header.config.compactText.utf8)
        let what = "\(f.path) (header config)"
        let arch = try DecoderRegistry.architecture(forConfig: data, path: what)
        return (arch, try arch.dims(data, what))
    }

    /// An SQ4 text model: config, tokenizer (`tokenizer.tokenizer_json_tensor`), chat template and
    /// generation config from the file itself; every tensor checksum verified first (one read).
    static func openSQ4(_ path: String, verifyChecksums: Bool = true) throws -> TextModel {
        let f = try SquintInt4File(path: path)
        let (arch, dims) = try decoderArchitecture(ofSQ4: f)
        if verifyChecksums { try f.verify(threads: Threads.count) }
        let model = try DecoderLM(architecture: arch, dims: dims, weights: f)
        guard let tj = f.header.tokenizer.tokenizerJSONTensor else {
            throw FormatError.invalid(path: path, what: "the file carries no tokenizer (tokenizer.tokenizer_json_tensor is null)")
        }
        let label = "\(path) (tensor \(tj))"
        let tok = try ByteLevelBPETokenizer(tokenizerJSON: Data(try f.view(tj).bytes), source: label)
        guard tok.vocabularySize <= dims.vocab else {
            throw FormatError.invalid(path: path, what: "the tokenizer has \(tok.vocabularySize) tokens but the model only \(dims.vocab) embeddings")
        }
        let q = f.header.quantization
        let tm = TextModel(path: path, model: model, tokenizer: tok, gguf: nil,
                           source: "sq4 \(arch.name) (int4 \(q.method.rawValue), group \(q.groupSize)\(q.sym ? "" : ", asym")\(q.descAct ? ", act-order" : ""))")
        tm.sq4 = f
        tm.storedChatTemplate = f.header.tokenizer.chatTemplate
        tm.generationConfig = f.header.generationConfig
        return tm
    }

    /// A folder's chat template (tokenizer_config.json's `chat_template`, else chat_template.jinja)
    /// and generation_config.json.
    func readFolderCompanions() throws {
        let fm = FileManager.default
        if let d = fm.contents(atPath: path + "/tokenizer_config.json") {
            let v = try d.withUnsafeBytes { try StrictJSON.parseObject($0, path: path + "/tokenizer_config.json", what: "tokenizer_config.json") }
            if case .string(let t)? = v["chat_template"] { storedChatTemplate = t }
        }
        if storedChatTemplate == nil, let d = fm.contents(atPath: path + "/chat_template.jinja") {
            storedChatTemplate = String(decoding: d, as: UTF8.self)
        }
        if let d = fm.contents(atPath: path + "/generation_config.json") {
            generationConfig = try d.withUnsafeBytes {
                try StrictJSON.parseObject($0, path: path + "/generation_config.json", what: "generation_config.json")
            }
        }
    }

    /// The sampling `run` and `chat` use unless options override it: the model's generation config
    /// (SQ4 header or the folder's file) over Squint's text defaults (`defaultSampling`).
    public var samplingDefaults: SamplingOptions {
        get throws {
            guard let g = generationConfig else { return Self.defaultSampling }
            return try Self.sampling(fromGenerationConfig: g, base: Self.defaultSampling, path: path + " (generation_config)")
        }
    }

    /// transformers' generation_config members `do_sample`, `temperature`, `top_k`, `top_p` over
    /// `base`, each checked (a temperature of 0 or NaN would turn every logit into NaN).
    public static func sampling(fromGenerationConfig g: JSONValue, base: SamplingOptions, path: String) throws -> SamplingOptions {
        var s = base
        if case .bool(let b)? = g["do_sample"] { s.doSample = b }
        func number(_ key: String, _ ok: (Double) -> Bool, _ allowed: String) throws -> Double? {
            let v: Double
            switch g[key] {
            case .integer(let i)?: v = Double(i)
            case .double(let d, _)?: v = d
            case nil, .null?: return nil
            default: throw ModelError.config(path: path, message: "\(key) is not a number")
            }
            guard v.isFinite, ok(v) else { throw ModelError.config(path: path, message: "\(key) is \(v), allowed \(allowed)") }
            return v
        }
        if let p = try number("top_p", { $0 > 0 && $0 <= 1 }, "a number in (0, 1]") { s.topP = Float(p) }
        if let k = try number("top_k", { $0 >= 0 && $0 <= 1e9 && $0 == $0.rounded() }, "an integer in 0...1000000000") { s.topK = Int(k) }
        if let t = try number("temperature", { $0 >= 1e-6 && $0 <= 1e6 }, "a number in 1e-6...1e6") { s.temperature = Float(t) }
        return s
    }
}
