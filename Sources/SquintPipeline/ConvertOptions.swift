import Foundation
import SquintFormats
import SquintModels
import SquintQuant

/// Everything `squint convert` can be asked, with the AutoGPTQ names in the comments. Defaults are
/// the settings of the official Qwen-VL-Chat-Int4 release (SPEC §5.1), so `convert` with no options
/// reproduces that run.
public struct ConvertOptions {
    public enum OutputFormat: String, CaseIterable, Sendable { case squint, autogptq }
    public enum Method: String, CaseIterable, Sendable { case gptq, rtn }

    /// The source model folder (BF16 checkpoint, or an AutoGPTQ checkpoint to repack).
    public var model: String
    /// pairs.jsonl (`{"image", "prompt", "caption"}` per line); images relative to its folder.
    /// Required for GPTQ; ignored by RTN and by a repack.
    public var calibration: String?
    /// An SQ4 file (`--format squint`) or a folder (`--format autogptq`).
    public var output: String
    public var format: OutputFormat = .squint
    public var bits = 4                      // bits
    public var groupSize = 128               // group_size (-1: one group per row)
    public var sym = true                    // sym
    public var descAct = false               // desc_act
    public var staticGroups = false          // static_groups
    public var dampPercent = 0.01            // damp_percent
    public var method: Method = .gptq
    /// Continue the run whose state is in the work folder beside the output.
    public var resume = false
    /// Overwrite an existing output, and discard a previous run's state.
    public var force = false
    /// Use only the first N pairs.
    public var maxSamples: Int?
    /// Check the source's checksums (torch zip CRC-32s, SQ4 CRC-32s) before using it (`--no-verify` turns it off).
    public var verifyChecksums = true
    /// Bytes of calibration activations kept in RAM; the rest waits on disk, zstd-compressed.
    public var memoryBudget = 4 << 30
    /// qwen.tiktoken (default: the model folder's, then $SQUINT_VOCAB).
    public var vocab: String?
    /// AutoGPTQ output shard limit (the official release: 2 GB shards).
    public var maxShardSize = 2_000_000_000
    /// Precision of the inverse-Hessian factor (see `HinvPrecision`).
    public var hinvPrecision: HinvPrecision = .mixed
    /// Sets `hinvPrecision` by name (mixed, double, float); false for another name.
    public mutating func setHinvPrecision(_ name: String) -> Bool {
        guard let p = HinvPrecision(rawValue: name) else { return false }
        hinvPrecision = p
        return true
    }
    /// Called after block i's state is saved. Tests throw from it to simulate a kill after block i.
    public var afterBlock: ((Int) throws -> Void)?
    /// Test hook: called with the finished AutoGPTQ staging folder just before it is renamed into
    /// place (a throw there stands for a kill at that moment).
    public var beforePublish: ((String) throws -> Void)?

    public init(model: String, calibration: String?, output: String) {
        self.model = model; self.calibration = calibration; self.output = output
    }

    /// AutoGPTQ's quantize_config.json for these settings (key order as the official file).
    public var quantizeConfig: QuantizationConfig {
        QuantizationConfig(bits: bits, groupSize: groupSize, dampPercent: dampPercent, descAct: descAct,
                           staticGroups: staticGroups, sym: sym, trueSequential: true, modelNameOrPath: nil,
                           modelFileBaseName: "model", quantMethod: nil)
    }

    /// Refuses settings that no output format can hold, before any work starts.
    /// `inFeatures`: the input widths of the quantized linears (hidden, MLP width).
    public func validate(inFeatures: [Int]) throws {
        func bad(_ s: String) -> ConvertError { .invalidOption(s) }
        switch format {
        case .squint: guard bits == 4 else { throw bad("--format squint stores 4-bit codes only (got --bits \(bits)); use --format autogptq for 2, 3 or 8 bits") }
        case .autogptq:
            guard AutoGPTQPacking.supportedBits.contains(bits) else {
                throw bad("--bits \(bits) is not supported: AutoGPTQ v1 packing takes 2, 3, 4 or 8 bits")
            }
        }
        if bits == 3, let n = inFeatures.first(where: { $0 % 32 != 0 }) {
            throw bad("--bits 3 packs 32 codes into 3 words: every quantized layer's input width must be a multiple of 32, not \(n)")
        }
        guard groupSize == -1 || groupSize > 0 else { throw bad("--group-size must be -1 or positive, got \(groupSize)") }
        if groupSize > 0 {
            for n in inFeatures where n % groupSize != 0 {
                throw bad("--group-size \(groupSize) does not divide the input width \(n) of a quantized layer")
            }
        }
        if staticGroups && groupSize == -1 { throw bad("--static-groups needs a group size") }
        guard dampPercent.isFinite, dampPercent > 0, dampPercent < 1 else {
            throw bad("--damp must be in (0, 1), got \(dampPercent)")
        }
        if let m = maxSamples, m < 1 { throw bad("--max-samples must be at least 1, got \(m)") }
        guard memoryBudget > 0 else { throw bad("--memory-budget must be positive") }
        if method == .gptq && calibration == nil { throw bad("--calib PAIRS.jsonl is required for --method gptq") }
    }
}

/// Why a conversion stopped. Cases name the file (and line) at fault and what to do.
public enum ConvertError: Error, CustomStringConvertible, Equatable {
    case invalidOption(String)
    /// A calibration line that is not `{"image": str, "prompt": str, "caption": str}`.
    case calibrationLine(path: String, line: Int, problem: String)
    /// A pair's image does not exist or cannot be decoded.
    case calibrationImage(path: String, line: Int, image: String, problem: String)
    /// A work folder from an earlier run is in the way (without --resume / --force), or cannot be
    /// resumed with these settings.
    case workState(path: String, problem: String)
    /// The source checkpoint cannot be converted.
    case source(path: String, problem: String)
    /// The run was stopped (Ctrl-C, injected failure); the state saved so far is kept.
    case interrupted(afterBlock: Int)

    /// One line: names from files (calibration lines, images, tensors) are escaped (`printable`).
    public var description: String { printable(rawDescription) }

    private var rawDescription: String {
        switch self {
        case let .invalidOption(s): return "convert: \(s)"
        case let .calibrationLine(p, l, w): return l > 0 ? "\(p):\(l): \(w)" : "\(p): \(w)"   // line 0: the whole file
        case let .calibrationImage(p, l, i, w): return "\(p):\(l): image \(i): \(w)"
        case let .workState(p, w): return "\(p): \(w)"
        case let .source(p, w): return "\(p): \(w)"
        case let .interrupted(b): return "convert: interrupted after block \(b); run again with --resume to continue"
        }
    }
}

/// One line of the per-module log (`OUT.log.json`, `--json`): what AutoGPTQ logs, plus timings.
public struct ConvertModuleLog: Codable, Sendable, Equatable {
    public var module: String
    public var shapeOutIn: [Int]
    public var nsamples: Int
    public var tokens: Int
    /// sum(Losses) / nsamples, as `fasterquant` logs it (0 for RTN).
    public var avgLoss: Double
    public var lossSum: Double
    /// percdamp and the absolute damp added to diag(H) (percdamp · mean diag H).
    public var dampPercent: Double
    public var damp: Double
    public var hessianSeconds: Double
    public var quantSeconds: Double
    /// "rtn" for a module rounded to nearest inside a GPTQ run (`--rtn`); absent otherwise.
    public var method: String? = nil
    /// Text models, GPTQ: the shrinkage of H toward its diagonal (`--hessian-shrink`); absent for
    /// Qwen-VL and RTN modules.
    public var hessianShrink: Double? = nil

    enum CodingKeys: String, CodingKey {
        case module, nsamples, tokens, damp, method
        case hessianShrink = "hessian_shrink"
        case shapeOutIn = "shape_out_in", avgLoss = "avg_loss", lossSum = "loss_sum", dampPercent = "damp_percent"
        case hessianSeconds = "hessian_seconds", quantSeconds = "quant_seconds"
    }
}

/// What a finished conversion reports (`--json`).
public struct ConvertResult: Codable, Sendable {
    public var output: String
    public var format: String
    public var method: String
    /// "quantized", or "repacked" for an AutoGPTQ input.
    public var mode: String
    public var files: [String]
    public var log: String?
    public var samples: Int
    public var tokens: Int
    public var blocks: Int
    public var resumedFromBlock: Int?
    public var modules: [ConvertModuleLog]
    public var peakRSSBytes: Int
    public var spilledBytes: Int
    public var seconds: Double
    public var stageSeconds: [String: Double]
    /// Sizes and bits per weight of the result (`ConvertSizes.measure`), set by the CLI.
    public var sizes: ConvertSizes? = nil

    enum CodingKeys: String, CodingKey {
        case output, format, method, mode, files, log, samples, tokens, blocks, modules, seconds, sizes
        case resumedFromBlock = "resumed_from_block", peakRSSBytes = "peak_rss_bytes", spilledBytes = "spilled_bytes"
        case stageSeconds = "stage_seconds"
    }
}

/// Peak resident set size of this process (VmHWM), 0 where /proc is absent.
public func peakRSSBytes() -> Int { MemoryUsage.current().peakRSS }
