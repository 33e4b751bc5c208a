// The fuzz harnesses of issue 12.2, one per reader, each feeding bytes through the reader's public
// entry point exactly as a user's file would reach it. Compiled twice: into the libFuzzer executable
// (Fuzz/, scripts/fuzz.sh) and into the test suite, which replays every committed seed and regression
// file (Tests/SquintPipelineTests/FuzzCorpusReplayTests.swift; this file is symlinked there).
// A harness either returns (the input parsed) or throws; only the reader's own typed errors count as
// a refusal, anything else (a trap, a sanitizer report, an untyped error) is a finding.
import Foundation
import SquintFormats
import SquintImage
import SquintModels
import SquintPipeline
import SquintTokenizer

enum FuzzHarness: String, CaseIterable, Sendable {
    /// SafetensorsFile: 8-byte length, JSON header, data section; then every tensor's view.
    case safetensors
    /// ShardIndex.parse: model.safetensors.index.json / pytorch_model.bin.index.json.
    case shardIndex = "shard-index"
    /// TorchCheckpoint on a zip container (data.pkl + storages), every view, CRC-32 check.
    case torchZip = "torch-zip"
    /// TorchCheckpoint on a legacy (pre-1.6) pickle stream.
    case torchLegacy = "torch-legacy"
    /// CheckpointOpener on a .sq4 file: prelude, JSON header (config + quantization), tensor table,
    /// every quantized linear's record, checksums.
    case sq4
    /// CheckpointOpener on an AutoGPTQ folder: quantize_config.json + model.safetensors (the input is
    /// the two files joined by `FuzzContext.partSeparator`), then every `.qweight` module to SQ4.
    case autogptq
    /// QwenVLConfig.load: config.json decode + validate.
    case config
    /// StrictJSON.parseObject.
    case json
    /// BPERanks (qwen.tiktoken lines) then the Qwen vocabulary check.
    case tiktoken
    /// CalibrationSet: pairs.jsonl lines (one image, a.png, exists beside it).
    case calibration
    /// RGBImage.decode on PNG bytes.
    case png
    /// RGBImage.decode on JPEG bytes.
    case jpeg
    /// GGUFFile: header, typed metadata (nested arrays), tensor infos; every tensor dequantised; the
    /// tokenizer a GGUF carries (TextModel.tokenizer(of:)) when the file has one.
    case gguf
    /// ByteLevelBPETokenizer(tokenizerJSON:): a Hugging Face tokenizer.json (vocab, merges, added tokens,
    /// normalizer, pre-tokenizer, post-processor), then one encode with special tokens.
    case tokenizerJSON = "tokenizer-json"
    /// LlamaKLDFile: llama-perplexity's --kl-divergence-base file; every chunk's tokens and every row.
    case kld

    /// The allocation bound the fuzzer enforces (Fuzz/Sources/SquintFuzz/main.swift): while an input of
    /// n bytes is read, no single allocation may exceed 1 MiB + factor x n. 16 for files whose sizes are
    /// all checked against the file; images decompress, and a valid PNG or JPEG legitimately decodes to
    /// far more pixels than it has bytes (deflate alone reaches 1032:1, times 24 for 1-bit grey to RGB),
    /// so their bound is the decoder's own pixel cap (RGBImage.maxPixels), enforced by -malloc_limit_mb.
    var allocationFactor: Int? {
        switch self {
        case .png, .jpeg: return nil
        default: return 16
        }
    }

    /// Whether `error` is the reader's typed refusal (anything else is a finding).
    func isExpected(_ error: Error) -> Bool {
        switch self {
        case .safetensors, .shardIndex, .torchZip, .torchLegacy, .json, .kld:
            return error is FormatError
        case .gguf:
            return error is FormatError || error is TokenizerError
        case .sq4, .autogptq, .config:
            return error is FormatError || error is ModelError
        case .tiktoken, .tokenizerJSON:
            return error is TokenizerError
        case .calibration:
            return error is ConvertError || error is FormatError || error is PairsFileError
        case .png, .jpeg:
            return error is ImageError
        }
    }
}

/// Per-process state: a scratch folder the inputs are written into (readers open paths), and the
/// Qwen tokenizer the calibration harness needs.
final class FuzzContext {
    /// Joins the files of a multi-file input (autogptq: quantize_config.json, then model.safetensors).
    static let partSeparator = Array("\n--squint-fuzz-part--\n".utf8)

    let harness: FuzzHarness
    let folder: String
    private var tokenizer: QwenTokenizer?
    private let smallPNG: [UInt8]

    init(harness: FuzzHarness, fixtures: String) throws {
        self.harness = harness
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
        folder = base + "squint-fuzz-\(harness.rawValue)-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        smallPNG = [UInt8](FileManager.default.contents(atPath: fixtures + "/images/synthetic/png_rgb8_1x1.png") ?? Data())
        if harness == .calibration {
            tokenizer = try QwenTokenizer(vocabularyFile: fixtures + "/tokenizer/qwen.tiktoken")
            try Data(smallPNG).write(to: URL(fileURLWithPath: folder + "/a.png"))
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    /// Writes `bytes` to the scratch file `name` in place (open, write, close: no atomic rename, which
    /// cost a third of a harness call), returning its path.
    private func put(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = folder + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        var done = 0
        if fd >= 0 {
            bytes.withUnsafeBytes { b in
                while done < b.count {
                    let n = write(fd, b.baseAddress! + done, b.count - done)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    done += n
                }
            }
            close(fd)
        }
        guard fd >= 0 && done == bytes.count else {
            fatalError("fuzz harness cannot write its scratch file \(path)")   // the machine's problem, not the reader's
        }
        return path
    }

    /// Reads every byte of a view, so an out-of-range view faults here rather than going unnoticed.
    @inline(never) private func touch(_ v: TensorView) -> UInt8 {
        var x: UInt8 = 0
        for b in v.bytes { x ^= b }
        return x
    }

    private func touchAll(_ f: TensorFile) throws {
        var x: UInt8 = 0
        for t in f.tensors { x ^= touch(try f.view(t.name)) }
        blackHole(x)
    }

    func run(_ data: [UInt8]) throws {
        switch harness {
        case .safetensors:
            try touchAll(SafetensorsFile(path: put(data, "model.safetensors")))
        case .gguf:
            let f = try GGUFFile(path: put(data, "model.gguf"))
            var x: Float = 0
            for t in f.ggufTensors where t.elementCount <= 1 << 20 { x += try GGUFDequant.dequantize(t, of: f).first ?? 0 }
            blackHole(Int(x.isFinite ? 1 : 0))
            if f.value(forKey: "tokenizer.ggml.model") != nil { blackHole(try TextModel.tokenizer(of: f).vocabularySize) }
        case .shardIndex:
            let index = try data.withUnsafeBytes { try ShardIndex.parse($0, path: "model.safetensors.index.json") }
            blackHole(index.weightMap.count)
        case .torchZip, .torchLegacy:
            let f = try TorchCheckpoint(path: put(data, "pytorch_model.bin"))
            try touchAll(f)
            try f.verifyChecksums()
        case .sq4:
            let opened = try CheckpointOpener.open(put(data, "model.sq4"))
            guard let f = opened.file as? SquintInt4File else { return }
            for l in f.linears { blackHole(try f.quantizedLinear(l.name).spec.outFeatures) }
            try touchAll(f)
            try f.verify()
        case .autogptq:
            let parts = split(data)
            for name in ["quantize_config.json", "model.safetensors"] { unlink(folder + "/" + name) }
            if parts.count > 1 { _ = try put(parts[0], "quantize_config.json") }
            _ = try put(parts.last ?? [], "model.safetensors")
            let opened = try CheckpointOpener.open(folder)
            let prefixes = opened.file.tensors.map(\.name).filter { $0.hasSuffix(".qweight") }.map { String($0.dropLast(8)) }
            for p in prefixes {
                let m = try AutoGPTQLayout.module(in: opened.file, prefix: p)
                blackHole(try AutoGPTQLayout.toSQ4(m, name: p, path: opened.file.path).spec.inFeatures)
            }
        case .config:
            blackHole(try QwenVLConfig.load(path: put(data, "config.json")).hiddenSize)
        case .json:
            let v = try data.withUnsafeBytes { try StrictJSON.parseObject($0, path: "fuzz.json", what: "input") }
            blackHole(v.compactText.utf8.count)
        case .tiktoken:
            let ranks = try BPERanks(tiktokenData: data, file: "qwen.tiktoken")
            blackHole(ranks.count)
            blackHole(try QwenTokenizer(ranks: ranks, file: "qwen.tiktoken").encodeOrdinary("fuzz").count)
        case .calibration:
            guard let tokenizer else { return }
            blackHole(try CalibrationSet(path: put(data, "pairs.jsonl"), tokenizer: tokenizer).totalTokens)
        case .tokenizerJSON:
            let tok = try ByteLevelBPETokenizer(tokenizerJSON: Data(data), source: "tokenizer.json")
            blackHole(tok.encode("Hello, world 2024!\n<|endoftext|> x", addSpecial: true, parseSpecial: true).count)
        case .kld:
            let f = try LlamaKLDFile(path: put(data, "base.kld"))
            var x: Float = 0
            for c in 0 ..< f.chunks {
                blackHole(try f.tokens(chunk: c).count)
                for r in 0 ..< f.rowsPerChunk { x += try f.logProbabilities(chunk: c, row: r).first ?? 0 }
            }
            blackHole(Int(x.isFinite ? 1 : 0))
        case .png, .jpeg:
            let image = try RGBImage.decode(data, name: "fuzz.\(harness.rawValue)")
            blackHole(image.width &* image.height)
        }
    }

    /// `data` cut at every `partSeparator`.
    private func split(_ data: [UInt8]) -> [[UInt8]] {
        let sep = Self.partSeparator
        var parts: [[UInt8]] = [], start = 0, i = 0
        while i + sep.count <= data.count {
            if data[i] == sep[0], data[i ..< i + sep.count].elementsEqual(sep) {
                parts.append(Array(data[start ..< i])); i += sep.count; start = i
            } else { i += 1 }
        }
        parts.append(Array(data[start...]))
        return parts
    }
}

@inline(never) func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }
