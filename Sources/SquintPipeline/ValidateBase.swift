import Foundation
import SquintFormats
import SquintModels
import SquintTensor

/// The BF16 side of a validation computed once and reused against several Int4 models
/// (`validate --save-base FILE`, then `--base FILE`); for text models the original's side, a sample
/// being a window whose context is its unscored first half. A safetensors file; per sample i:
///
/// | tensor | dtype | shape | what |
/// |---|---|---|---|
/// | `s<i>.ids` | I32 | [S] | the rendered sample (checked against the eval file on reuse) |
/// | `s<i>.logits` | F32 | [S - ctx, vocab] | the logits of the scored positions ctx-1 ... S-2, as computed (KL is recomputed exactly) |
/// | `s<i>.hidden` | F16 | [layers + 1, S, hidden] | hidden states for the per-block drift (F16: relative rounding 2^-11 per value) |
/// | `s<i>.features` | F32 | [n_img, 256, hidden] | image features, when the sample has images |
/// | `s<i>.greedy` | I32 | [greedy_tokens] | the greedy continuation, when greedy_tokens > 0 |
///
/// `__metadata__` ties the file to its inputs: `format` (`squint-validate-base/1`), `model_sha256`
/// (the BF16 model's tensor table and the first 64 bytes of every tensor), `eval_sha256` (the eval
/// file's bytes), `samples_sha256` (every rendered sample's ids, so --limit and the tokenizer count),
/// `samples`, `greedy_tokens`, `vocab_size`, `layers`, `hidden_size`. A file that does not match is refused.
public final class ValidationBase {
    public static let formatTag = "squint-validate-base/1"
    public let path: String
    public let isReading: Bool
    let file: SafetensorsFile?
    let metadata: [String: String]
    let overwrite: Bool
    let spill: String?
    var spilled: [String] = []
    var committed = false

    /// The sizes a base file's tensors are checked against.
    public struct Shape: Sendable {
        public var vocab: Int, hidden: Int, layers: Int
        /// Image feature rows per image (the resampler's queries); 0 for text models.
        public var imageQueries: Int
        public init(vocab: Int, hidden: Int, layers: Int, imageQueries: Int = 0) {
            self.vocab = vocab; self.hidden = hidden; self.layers = layers; self.imageQueries = imageQueries
        }
        public init(_ c: QwenVLConfig) {
            self.init(vocab: c.vocabSize, hidden: c.hiddenSize, layers: c.numHiddenLayers,
                      imageQueries: c.visual.resamplerGrid * c.visual.resamplerGrid)
        }
    }

    /// A digest of a model's weights that is cheap on a 20 GB checkpoint: its tensor table and the
    /// first 64 bytes of every tensor.
    public static func modelDigest(_ model: TensorFile) throws -> String {
        var m = SHA256()
        for t in model.tensors.sorted(by: { $0.name < $1.name }) {
            m.update(Array("\(t.name)\t\(t.dtype.rawValue)\t\(t.shape)\t\(t.byteCount)\n".utf8))
            let v = try model.view(t.name)
            m.update(UnsafeRawBufferPointer(rebasing: v.bytes[0..<min(64, v.bytes.count)]))
        }
        return m.finalizeHex()
    }

    /// What ties a base file to the BF16 model and the eval samples.
    public static func identity(model: TensorFile, evalPath: String, samples: [ValidationSample], greedyTokens: Int,
                                config: QwenVLConfig) throws -> [String: String] {
        try identity(modelDigest: try modelDigest(model), evalPath: evalPath, samples: samples, greedyTokens: greedyTokens, shape: .init(config))
    }

    /// The same for any model: `modelDigest` names the reference model's weights, `evalPath` the
    /// file the samples came from (pairs file or text), `samples` the rendered token ids.
    public static func identity(modelDigest: String, evalPath: String, samples: [ValidationSample], greedyTokens: Int,
                                shape: Shape) throws -> [String: String] {
        var ids = SHA256()
        for s in samples {
            ids.update(Array("\(s.ids.count) \(s.contextLength)\n".utf8))
            s.ids.withUnsafeBytes { ids.update($0) }
        }
        return ["format": formatTag, "model_sha256": modelDigest, "eval_sha256": try sha256Hex(file: evalPath),
                "samples_sha256": ids.finalizeHex(), "samples": String(samples.count), "greedy_tokens": String(greedyTokens),
                "vocab_size": String(shape.vocab), "layers": String(shape.layers), "hidden_size": String(shape.hidden)]
    }

    /// A base file to write after the run: the destination is checked now (refused when it exists,
    /// unless `overwrite`), and samples wait in a hidden folder beside it until `commit`.
    public init(saving path: String, identity: [String: String], overwrite: Bool) throws {
        self.path = path; isReading = false; file = nil; metadata = identity; self.overwrite = overwrite
        if !overwrite, FileManager.default.fileExists(atPath: path) { throw FormatError.exists(path: path) }
        let parent = Paths.parent(of: path)
        let folder = "\(parent)/.\((path as NSString).lastPathComponent).partial-\(getpid())"
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false) } catch {
            throw FormatError.io(path: folder, doing: "cannot create the folder for the base file's samples", error)
        }
        spill = folder
    }

    /// A base file to reuse; refused unless it was made from this model and these samples with at
    /// least `greedyTokens` greedy tokens.
    public init(reading path: String, identity: [String: String], greedyTokens: Int) throws {
        self.path = path; isReading = true; overwrite = false; spill = nil
        let f = try SafetensorsFile(path: path)
        file = f; metadata = f.metadata
        guard f.metadata["format"] == Self.formatTag else {
            throw FormatError.invalid(path: path, what: "not a base file of `squint validate --save-base` (format '\(f.metadata["format"] ?? "none")')")
        }
        for (key, what) in [("model_sha256", "another BF16 model"), ("eval_sha256", "another eval file"),
                            ("samples_sha256", "other samples (a different --limit or tokenizer)")] where f.metadata[key] != identity[key] {
            throw FormatError.invalid(path: path, what: "was computed from \(what); compute it again with --save-base")
        }
        guard let g = f.metadata["greedy_tokens"].flatMap(Int.init), g >= greedyTokens else {
            throw FormatError.invalid(path: path, what: "holds \(f.metadata["greedy_tokens"] ?? "no") greedy tokens per sample, "
                + "fewer than --greedy-tokens \(greedyTokens)")
        }
    }

    deinit { if let spill, !committed { try? FileManager.default.removeItem(atPath: spill) } }

    // MARK: reading

    func tensor(_ name: String, _ dtype: DType, _ shape: [Int]) throws -> TensorView {
        guard let f = file, let t = f.info(name) else { throw FormatError.missingTensor(path: path, name: name) }
        guard t.dtype == dtype, t.shape == shape else {
            throw FormatError.invalid(path: path, what: "tensor '\(name)' is \(t.dtype.rawValue) \(t.shape), expected \(dtype.rawValue) \(shape)")
        }
        return try f.view(name)
    }

    func pass(_ i: Int, sample s: ValidationSample, shape c: Shape, greedyTokens: Int) throws -> Validator.Pass {
        let S = s.ids.count, ctx = s.contextLength, V = c.vocab, H = c.hidden, L = c.layers
        let ids = try tensor("s\(i).ids", .i32, [S])
        guard Array(ids.bytes.bindMemory(to: Int32.self)) == s.ids else {
            throw FormatError.invalid(path: path, what: "sample \(i + 1) renders to other tokens than when the file was made")
        }
        let lv = try tensor("s\(i).logits", .f32, [S - ctx, V])
        let logits = Array(lv.bytes.bindMemory(to: Float.self))   // [S - ctx, vocab]: rows ctx-1 ..< S-1
        let hv = try tensor("s\(i).hidden", .f16, [L + 1, S, H])
        let halves = hv.bytes.bindMemory(to: UInt16.self)
        let hidden = (0...L).map { l in (0..<(S * H)).map { Float(Float16(bitPattern: halves[l * S * H + $0])) } }
        var features: FloatTensor?
        if let px = s.pixelValues {
            let n = px.shape[0], q = c.imageQueries
            let fv = try tensor("s\(i).features", .f32, [n, q, H])
            features = FloatTensor(shape: [n, q, H], data: Array(fv.bytes.bindMemory(to: Float.self)))
        }
        var greedy: [Int] = []
        if greedyTokens > 0, let f = file, let t = f.info("s\(i).greedy") {
            greedy = Array(try tensor("s\(i).greedy", .i32, t.shape).bytes.bindMemory(to: Int32.self).prefix(greedyTokens)).map(Int.init)
        }
        return Validator.Pass(features: features, hidden: hidden, logits: logits, greedy: greedy, forwardSeconds: 0, logitsFrom: ctx - 1)
    }

    // MARK: writing

    func record(_ i: Int, sample s: ValidationSample, pass p: Validator.Pass, shape c: Shape) throws {
        guard let spill else { return }
        let S = s.ids.count, ctx = s.contextLength, V = c.vocab, H = c.hidden, L = c.layers
        let r0 = (ctx - 1 - p.logitsFrom) * V, r1 = (S - 1 - p.logitsFrom) * V
        var tensors: [(SafetensorsWriter.Tensor, [UInt8])] = []
        func bytes<T>(_ a: [T]) -> [UInt8] { a.withUnsafeBytes { Array($0) } }
        tensors.append((.init(name: "s\(i).ids", dtype: .i32, shape: [S]), bytes(s.ids)))
        tensors.append((.init(name: "s\(i).logits", dtype: .f32, shape: [S - ctx, V]), bytes(Array(p.logits[r0..<r1]))))
        var halves = [UInt16](); halves.reserveCapacity((L + 1) * S * H)
        for h in p.hidden { for x in h { halves.append(Float16(x).bitPattern) } }
        tensors.append((.init(name: "s\(i).hidden", dtype: .f16, shape: [L + 1, S, H]), bytes(halves)))
        if let f = p.features { tensors.append((.init(name: "s\(i).features", dtype: .f32, shape: f.shape), bytes(f.data))) }
        if !p.greedy.isEmpty { tensors.append((.init(name: "s\(i).greedy", dtype: .i32, shape: [p.greedy.count]), bytes(p.greedy.map(Int32.init)))) }
        let w = try SafetensorsWriter(tensors: tensors.map(\.0), path: path)
        let file = "\(spill)/s\(i).safetensors"
        let data = Dictionary(uniqueKeysWithValues: tensors.map { ($0.0.name, $0.1) })
        try w.write(to: file, overwrite: true) { t in data[t.name] ?? [] }
        spilled.append(file)
    }

    /// Assembles the samples into the base file (atomically) and removes the hidden folder.
    public func commit() throws {
        guard let spill, !committed else { return }
        let parts = try spilled.map { try SafetensorsFile(path: $0) }
        var owner: [String: SafetensorsFile] = [:]
        var tensors: [SafetensorsWriter.Tensor] = []
        for f in parts { for t in f.tensors { owner[t.name] = f; tensors.append(.init(name: t.name, dtype: t.dtype, shape: t.shape)) } }
        let w = try SafetensorsWriter(tensors: tensors, metadata: metadata, path: path)
        try w.write(to: path, overwrite: overwrite) { t, sink in
            guard let f = owner[t.name] else { throw FormatError.missingTensor(path: path, name: t.name) }
            try sink.write(try f.view(t.name).bytes)
        }
        committed = true
        try? FileManager.default.removeItem(atPath: spill)
    }
}
