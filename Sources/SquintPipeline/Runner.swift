import Foundation
import SquintFormats
import SquintImage
import SquintModels
import SquintTensor
import SquintTokenizer

/// A model folder as users have it: config.json, weights (any format `CheckpointOpener` reads),
/// generation_config.json and qwen.tiktoken.
public final class LoadedModel {
    public let folder: String
    public let checkpoint: OpenedCheckpoint
    public let model: QwenVLModel
    public let tokenizer: QwenTokenizer
    /// top_p etc. from generation_config.json (official defaults when absent).
    public let generation: SamplingOptions
    /// The qwen.tiktoken the tokenizer was read from (an Int4 file or folder without one can reuse it);
    /// "FILE (tensor NAME)" for a vocabulary embedded in an SQ4 file.
    public let vocabularyPath: String

    /// - Parameter vocab: qwen.tiktoken; default: the folder's, then $SQUINT_VOCAB.
    /// - Parameter verifyChecksums: check every checksum the weights carry before use (`Checksums.verify`:
    ///   SQ4 tensor CRC-32s, torch zip entry CRC-32s; one read of the file; safetensors carry none).
    public init(folder: String, vocab: String? = nil, verifyChecksums: Bool = true) throws {
        self.folder = folder
        checkpoint = try CheckpointOpener.open(folder)
        if let q = checkpoint.quantization, q.bits != 4 {
            throw ModelError.config(path: checkpoint.file.path, message: "a \(q.bits)-bit AutoGPTQ checkpoint: Squint's runtime runs 4-bit "
                + "ones (like the official Qwen-VL-Chat-Int4); `squint inspect` reads it, and transformers/AutoGPTQ can run it")
        }
        if verifyChecksums { try Checksums.verify(checkpoint.file, threads: Threads.count) }
        guard let config = checkpoint.config else {
            throw ModelError.config(path: "\(checkpoint.folder)/config.json", message: "no config.json next to the weights")
        }
        model = try QwenVLModel(config: config, weights: checkpoint.file)
        // --vocab, the folder's qwen.tiktoken, the vocabulary inside an SQ4 file, then $SQUINT_VOCAB.
        let local = [vocab, "\(checkpoint.folder)/qwen.tiktoken"].compactMap { $0 }
        let env = ProcessInfo.processInfo.environment["SQUINT_VOCAB"].map { [$0] } ?? []
        if let v = local.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            tokenizer = try QwenTokenizer(vocabularyFile: v)
            vocabularyPath = v
        } else if let sq4 = checkpoint.file as? SquintInt4File, let name = sq4.header.tokenizer.vocabTensor {
            let bytes = Array(try sq4.view(name).bytes)
            let label = "\(sq4.path) (tensor \(name))"
            tokenizer = try QwenTokenizer(ranks: BPERanks(tiktokenData: bytes, file: label), file: label)
            vocabularyPath = label     // not a file: a model given it as `vocab` falls back to its own

        } else if let v = env.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            tokenizer = try QwenTokenizer(vocabularyFile: v)
            vocabularyPath = v
        } else {
            throw ModelError.config(path: "\(checkpoint.folder)/qwen.tiktoken",
                                    message: "no tokenizer vocabulary: put qwen.tiktoken in the model folder, pass --vocab FILE or set SQUINT_VOCAB")
        }
        var g = SamplingOptions(doSample: true, temperature: 1, topK: 0, topP: 0.3, seed: 0)
        // generation_config.json beside the weights, else the one an SQ4 file carries (version 2).
        var genPath = "\(checkpoint.folder)/generation_config.json"
        var genData = FileManager.default.contents(atPath: genPath)
        if genData == nil, let sq4 = checkpoint.file as? SquintInt4File, let g = sq4.header.generationConfig {
            genData = Data(g.compactText.utf8); genPath = "\(sq4.path) (header generation_config)"
        }
        if let d = genData,
           let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
            if let s = o["do_sample"] as? Bool { g.doSample = s }
            // Checked before use: a temperature of 0 or NaN would turn every logit into NaN.
            func number(_ key: String, _ ok: (Double) -> Bool, _ allowed: String) throws -> Double? {
                guard let v = (o[key] as? NSNumber)?.doubleValue else { return nil }
                guard v.isFinite, ok(v) else { throw ModelError.config(path: genPath, message: "\(key) is \(v), allowed \(allowed)") }
                return v
            }
            if let p = try number("top_p", { $0 > 0 && $0 <= 1 }, "a number in (0, 1]") { g.topP = Float(p) }
            if let k = try number("top_k", { $0 >= 0 && $0 <= 1e9 && $0 == $0.rounded() }, "an integer in 0...1000000000") { g.topK = Int(k) }
            if let t = try number("temperature", { $0 >= 1e-6 && $0 <= 1e6 }, "a number in 1e-6...1e6") { g.temperature = Float(t) }
        }
        generation = g
    }

    /// True for an Int4 model (an SQ4 file or an AutoGPTQ checkpoint), false for BF16/F16/F32 weights.
    public var isQuantized: Bool { checkpoint.isSquintInt4 || checkpoint.quantization != nil }
}

/// One answer of `squint run` / a `chat` turn.
public struct RunResult: Codable, Sendable {
    public var prompt: String
    public var response: String
    public var promptTokens: Int
    public var generatedIds: [Int]
    public var boxes: [Box]
    public var visionSeconds: Double
    public var prefillSeconds: Double
    public var decodeSeconds: Double

    public struct Box: Codable, Sendable { public var ref: String?; public var x1, y1, x2, y2: Int }

    enum CodingKeys: String, CodingKey {
        case prompt, response, boxes
        case promptTokens = "prompt_tokens"
        case generatedIds = "generated_ids"
        case visionSeconds = "vision_seconds"
        case prefillSeconds = "prefill_seconds"
        case decodeSeconds = "decode_seconds"
    }
}

public enum Runner {
    /// Largest `maxNewTokens` an answer accepts (the KV cache is allocated for prompt + this many).
    public static let maxNewTokensLimit = 1 << 20

    /// The `<img>` paths of a token sequence, in order, recovered from the ids as the official
    /// `QWenModel.forward` does (bytes between `<img>` and the first `<imgpad>`/`</img>`).
    public static func imagePaths(in ids: [Int]) throws -> [String] {
        var paths: [String] = []
        var i = 0
        while i < ids.count {
            if ids[i] == SpecialTokens.imageStart {
                var bytes: [UInt8] = []
                var j = i + 1
                while j < ids.count, ids[j] != SpecialTokens.imagePad, ids[j] != SpecialTokens.imageEnd {
                    guard (0..<256).contains(ids[j]) else { throw ModelError.input(message: "malformed image span at position \(i)") }
                    bytes.append(UInt8(ids[j])); j += 1
                }
                paths.append(String(decoding: bytes, as: UTF8.self))
                i = j
            }
            i += 1
        }
        return paths
    }

    /// [n, 3, 448, 448] pixel values of the images, in order. Each error names the image.
    public static func pixelValues(_ paths: [String], relativeTo base: String? = nil) throws -> FloatTensor? {
        guard !paths.isEmpty else { return nil }
        var data: [Float] = []
        data.reserveCapacity(paths.count * 3 * 448 * 448)
        for p in paths {
            let resolved = (p.hasPrefix("/") || base == nil) ? p : "\(base!)/\(p)"
            data += try preprocessForQwenVL(path: resolved)
        }
        return FloatTensor(shape: [paths.count, 3, 448, 448], data: data)
    }

    /// Prefill on the whole context (the official chat re-runs it each turn), then decode until a
    /// stop word (`<|im_end|>`, `<|im_start|>`) or `<|endoftext|>` or `maxNewTokens`.
    /// `dump` receives the prompt ids, the prefill logits [S, vocab] and the image features.
    public static func answer(_ m: LoadedModel, query: String, history: [ChatTurn] = [], maxNewTokens: Int,
                              sampling: SamplingOptions, imageBase: String? = nil,
                              onToken: ((String) -> Void)? = nil,
                              shouldStop: (() -> Bool)? = nil,
                              dump: ((_ ids: [Int], _ logits: FloatTensor, _ features: FloatTensor?) throws -> Void)? = nil) throws -> RunResult {
        // The KV cache is sized from it: bounded before any arithmetic (Int.max used to overflow).
        guard (1...Runner.maxNewTokensLimit).contains(maxNewTokens) else {
            throw ModelError.input(message: "max new tokens is \(maxNewTokens), allowed 1...\(Runner.maxNewTokensLimit)")
        }
        let ctx = try m.tokenizer.makeContext(query: query, history: history)
        let ids = ctx.tokens
        let t0 = Date()
        let pixels = try pixelValues(try imagePaths(in: ids), relativeTo: imageBase)
        let features = try pixels.map { try m.model.vision.encode(pixelValues: $0) }
        let t1 = Date()
        let cache = KVCache(config: m.model.config, capacity: ids.count + maxNewTokens + 1)
        let pre = try m.model.language.prefill(ids: ids.map(Int32.init), imageFeatures: features, cache: cache,
                                               allLogits: dump != nil)
        try dump?(ids, pre.logits, features)
        let v = m.model.config.vocabSize
        var logits = Array(pre.logits.data[(pre.logits.data.count - v)...])
        let t2 = Date()
        var sampler = Sampler(sampling)
        var generated: [Int] = []
        let stops: Set<Int> = [SpecialTokens.imEnd, SpecialTokens.imStart, SpecialTokens.endOfText]
        var printed = ""
        let shown = displayedIds
        while generated.count < maxNewTokens {
            if let k = firstNonFinite(logits) {
                let after = generated.last ?? ids.last ?? 0
                throw ModelError.nonFinite(message: "the logits at position \(ids.count + generated.count - 1) (after token id \(after)) "
                    + "are not finite (token id \(k) is \(logits[k]))")
            }
            if shouldStop?() == true { break }
            let next = sampler.next(logits)
            generated.append(next)
            if stops.contains(next) { break }
            if let onToken {
                // Stream only whole characters: decode all and print the new suffix.
                let text = (try? m.tokenizer.decode(shown(generated), skipSpecialTokens: false)) ?? ""
                if text.hasPrefix(printed), !text.hasSuffix("\u{FFFD}") {
                    onToken(String(text.dropFirst(printed.count))); printed = text
                }
            }
            if generated.count == maxNewTokens { break }
            logits = try m.model.language.decodeStep(Int32(next), cache: cache)
        }
        if let onToken {
            // Flush what was held back (a trailing partial character at the end of generation).
            let text = (try? m.tokenizer.decode(shown(generated), skipSpecialTokens: false)) ?? printed
            if text.hasPrefix(printed), text.count > printed.count { onToken(String(text.dropFirst(printed.count))) }
        }
        let t3 = Date()
        let response = try m.tokenizer.extractResponse(generated: generated)
        let boxes = (try? QwenTokenizer.extractBoxes(from: response)) ?? []
        return RunResult(prompt: ctx.rawText, response: response, promptTokens: ids.count, generatedIds: generated,
                         boxes: boxes.map { .init(ref: $0.ref, x1: $0.box.x1, y1: $0.box.y1, x2: $0.box.x2, y2: $0.box.y2) },
                         visionSeconds: t1.timeIntervalSince(t0), prefillSeconds: t2.timeIntervalSince(t1),
                         decodeSeconds: t3.timeIntervalSince(t2))
    }

    /// The generated ids a reader sees: text and the grounding tags (<ref>, <box>, <quad>), never
    /// control tokens such as `<|extra_154|>` or `<|im_end|>`, nor ids past the vocabulary (the padded
    /// embedding lets a model pick 151860...151935).
    public static func displayedIds(_ ids: [Int]) -> [Int] {
        ids.filter { $0 < SpecialTokens.firstID || SpecialTokens.groundingTagIDs.contains($0) }
    }

    /// Checks at once that `path` is an image Squint can read (JPEG or PNG), so `chat`'s `:image` can
    /// refuse it before the question is asked. The error names the file and the problem.
    public static func checkImage(_ path: String) throws {
        _ = try RGBImage.load(path: path)
    }

    /// Writes `--dump`: input_ids I32 [S], logits F32 [S, vocab], image_features F32 [n, 256, hidden].
    public static func writeDump(_ path: String, ids: [Int], logits: FloatTensor, features: FloatTensor?, overwrite: Bool) throws {
        var tensors: [SafetensorsWriter.Tensor] = [
            .init(name: "input_ids", dtype: .i32, shape: [ids.count]),
            .init(name: "logits", dtype: .f32, shape: logits.shape),
        ]
        if let features { tensors.append(.init(name: "image_features", dtype: .f32, shape: features.shape)) }
        let w = try SafetensorsWriter(tensors: tensors, metadata: ["producer": "squint run --dump"], path: path)
        try w.write(to: path, overwrite: overwrite) { t, sink in
            switch t.name {
            case "input_ids": try ids.map(Int32.init).withUnsafeBytes { try sink.write($0) }
            case "logits": try logits.data.withUnsafeBytes { try sink.write($0) }
            default: try features!.data.withUnsafeBytes { try sink.write($0) }
            }
        }
    }

    /// `--draw`: the answer's boxes on the image they refer to, as the official
    /// `draw_bbox_on_latest_picture` places them (corners x/1000*w, y/1000*h, truncated).
    /// Ref labels are not rendered (no font is bundled); each box gets its own colour.
    public static func drawBoxes(_ boxes: [RunResult.Box], imagePath: String, output: String, overwrite: Bool) throws {
        var img = try RGBImage.load(path: imagePath)
        let palette: [(UInt8, UInt8, UInt8)] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                                                (148, 103, 189), (140, 86, 75), (227, 119, 194), (188, 189, 34)]
        let w = Double(img.width), h = Double(img.height)
        let line = max(Int((min(w, h) / 150).rounded()), 1)
        for (k, b) in boxes.enumerated() {
            // Coordinates come from the model's text: clamped before the Int conversion (far outside the
            // 0...1000 grid, so drawing still clips off-image boxes as before, but nothing can overflow).
            func px(_ v: Int, _ size: Double) -> Int { Int(Double(min(max(v, -1_000_000), 1_000_000)) / 1000 * size) }
            img.drawRectangle(x1: px(b.x1, w), y1: px(b.y1, h), x2: px(b.x2, w), y2: px(b.y2, h),
                              color: palette[k % palette.count], lineWidth: line)
        }
        try img.writePNG(path: output, overwrite: overwrite)
    }
}

extension LoadedModel {
    /// Int4 decode through llama.cpp-style Q4 x Q8 products: the activation vector is rounded to 8
    /// bits per block of 32 and the codes are multiplied as integers (`vpmaddubsw`), about 2x faster
    /// than the exact float32 path (docs/PERFORMANCE.md) at a relative error of about 4e-3 per
    /// product; the decode steps' lm_head then runs as int8 x int8 too (`QwenLM.useInt8LMHead`, as
    /// llama.cpp keeps `output.weight` in Q8_0). Off by default, so `run` computes what `validate`
    /// measured. No effect on BF16 models.
    public func useInt8Activations(_ on: Bool) {
        let lm = model.language
        var quantized = false
        for layer in 0..<model.config.numHiddenLayers {
            for m in QwenLM.BlockLinear.allCases {
                guard let q = lm.linear(layer: layer, m) as? QuantizedLinear else { continue }
                q.decodePath = on ? .int8 : .float32
                quantized = true
            }
        }
        lm.useInt8LMHead(on && quantized)
    }
}
