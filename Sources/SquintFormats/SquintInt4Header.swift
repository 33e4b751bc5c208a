import CSquintKernels

/// Constants of the SQ4 file (Formats/SQUINT_INT4.md §1), defined once for the reader, the writer and
/// the tests.
public enum SQ4 {
    /// "SQUINT4\0".
    public static let magic: [UInt8] = [0x53, 0x51, 0x55, 0x49, 0x4E, 0x54, 0x34, 0x00]
    /// The newest version this Squint reads and writes. Version 2 adds the header members that make
    /// a text model's file self-contained (`generation_config`, `tokenizer.tokenizer_json_tensor`,
    /// `tokenizer.chat_template`); a writer emits 1 when none of them is set, so older readers keep
    /// reading such files.
    public static let version: UInt32 = 2
    /// Versions the reader accepts.
    public static let readableVersions: ClosedRange<UInt32> = 1...2
    /// Bytes before the JSON header: magic, version, flags, N, header CRC, reserved.
    public static let preludeSize = 32
    /// Cap on the header length N, so a corrupt length cannot make a reader parse gigabytes.
    public static let maxHeaderLength = 64 << 20
    /// The data section starts at a multiple of this (and big tensors are aligned to it).
    public static let pageAlignment = 4096
    /// Alignment of every tensor (a cache line; enough for any aligned SIMD load).
    public static let minimumAlignment = 64
    /// Tensors of at least this many bytes are page-aligned.
    public static let pageAlignedFrom = 65_536

    /// Alignment rule §1.2.
    public static func alignment(forLength length: Int) -> Int {
        length >= pageAlignedFrom ? pageAlignment : minimumAlignment
    }

    /// `v` rounded up to a multiple of `a` (a power of two); nil on overflow.
    static func roundUp(_ v: Int, _ a: Int) -> Int? {
        let (s, o) = v.addingReportingOverflow(a - 1)
        return o ? nil : s & ~(a - 1)
    }

    static func crc32(_ b: UnsafeRawBufferPointer) -> UInt32 {
        b.count == 0 ? 0 : sq_crc32(0, b.baseAddress!, b.count)
    }

    static func hex8(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: 8 - h.count) + h
    }
}

/// The quantization settings recorded in the header (AutoGPTQ's `quantize_config.json` meanings,
/// SPEC §1.2 and §5), so a reader knows how the codes were produced without the original tool.
public struct SQ4Quantization: Equatable, Sendable {
    public enum Method: String, Sendable { case gptq, rtn }
    public var bits: Int
    /// The default group size; each linear record states its own.
    public var groupSize: Int
    public var sym: Bool
    public var descAct: Bool
    public var staticGroups: Bool
    public var dampPercent: Double
    public var trueSequential: Bool
    public var method: Method

    /// Defaults are those of the official Qwen-VL-Chat-Int4 release.
    public init(bits: Int = 4, groupSize: Int = 128, sym: Bool = true, descAct: Bool = false,
                staticGroups: Bool = false, dampPercent: Double = 0.01, trueSequential: Bool = true,
                method: Method = .gptq) {
        self.bits = bits; self.groupSize = groupSize; self.sym = sym; self.descAct = descAct
        self.staticGroups = staticGroups; self.dampPercent = dampPercent
        self.trueSequential = trueSequential; self.method = method
    }
}

extension SQ4Quantization {
    /// The numbers of the header's `quantization` object, each in its stated range (one line naming
    /// the key and the range): bits 4 (SQ4 version 1), group_size 0...2^20, damp_percent a finite
    /// number in 0...1. The model's own sizes are in the header's `config`, checked by
    /// `QwenVLConfig.validate` before anything is built from them.
    public func validate(path: String) throws {
        func req(_ ok: Bool, _ w: String) throws { if !ok { throw FormatError.invalid(path: path, what: w) } }
        try req(bits == 4, "quantization.bits is \(bits), allowed 4")
        try req(groupSize >= 0 && groupSize <= 1 << 20, "quantization.group_size is \(groupSize), allowed 0...\(1 << 20)")
        try req(dampPercent.isFinite && dampPercent >= 0 && dampPercent <= 1,
                "quantization.damp_percent is \(dampPercent), allowed a finite number in 0...1")
    }
}

/// Which tokenizer the model needs: the checksum of `qwen.tiktoken`, and optionally a tensor holding
/// the file itself so one SQ4 file is a complete model.
public struct SQ4Tokenizer: Equatable, Sendable {
    /// 64 lowercase hex digits, or nil when unknown.
    public var qwenTiktokenSHA256: String?
    /// Name of a rank-1 U8 tensor holding the `qwen.tiktoken` bytes, or nil.
    public var vocabTensor: String?
    /// Version 2: name of a rank-1 U8 tensor holding a Hugging Face `tokenizer.json` (byte-level BPE
    /// text models), or nil.
    public var tokenizerJSONTensor: String?
    /// Version 2: the Jinja chat template (tokenizer_config.json's `chat_template`, GGUF's
    /// `tokenizer.chat_template`), or nil.
    public var chatTemplate: String?
    public init(qwenTiktokenSHA256: String? = nil, vocabTensor: String? = nil, tokenizerJSONTensor: String? = nil,
                chatTemplate: String? = nil) {
        self.qwenTiktokenSHA256 = qwenTiktokenSHA256; self.vocabTensor = vocabTensor
        self.tokenizerJSONTensor = tokenizerJSONTensor; self.chatTemplate = chatTemplate
    }
}

/// Where the weights came from. No timestamps: the same input must give the same bytes.
public struct SQ4Provenance: Equatable, Sendable {
    public var source: String
    /// 64 lowercase hex digits or nil.
    public var sourceSHA256: String?
    public var calibration: String
    public var tool: String
    public init(source: String, sourceSHA256: String? = nil, calibration: String, tool: String) {
        self.source = source; self.sourceSHA256 = sourceSHA256; self.calibration = calibration; self.tool = tool
    }
}

/// Everything in the JSON header except the tensor table and the linear records.
public struct SQ4Header: Equatable, Sendable {
    /// The model's whole `config.json` object, unchanged (numbers keep their text).
    public var config: JSONValue
    public var quantization: SQ4Quantization
    public var tokenizer: SQ4Tokenizer
    public var provenance: SQ4Provenance
    /// Version 2: the model's `generation_config.json` object (sampling defaults), or nil.
    public var generationConfig: JSONValue?
    public init(config: JSONValue, quantization: SQ4Quantization, tokenizer: SQ4Tokenizer, provenance: SQ4Provenance,
                generationConfig: JSONValue? = nil) {
        self.config = config; self.quantization = quantization; self.tokenizer = tokenizer; self.provenance = provenance
        self.generationConfig = generationConfig
    }

    /// The version a writer records: 2 when any version-2 member is set, else 1.
    public var version: UInt32 {
        generationConfig != nil || tokenizer.tokenizerJSONTensor != nil || tokenizer.chatTemplate != nil ? 2 : 1
    }
}

/// The declaration of one quantized Linear `W [out, in]` (Formats/SQUINT_INT4.md §4). Its tensors
/// are `name + .q4_codes / .q4_scales / .q4_zeros / .q4_perm / .bias`.
public struct QuantizedLinearSpec: Equatable, Sendable {
    public static let codesSuffix = ".q4_codes"
    public static let scalesSuffix = ".q4_scales"
    public static let zerosSuffix = ".q4_zeros"
    public static let permSuffix = ".q4_perm"
    public static let biasSuffix = ".bias"
    public static let quantSuffixes = [codesSuffix, scalesSuffix, zerosSuffix, permSuffix]

    /// Module name, e.g. `transformer.h.0.attn.c_attn`.
    public var name: String
    public var outFeatures: Int
    public var inFeatures: Int
    public var groupSize: Int
    /// true: every zero point is 8 and `.q4_zeros` is absent.
    public var symmetric: Bool
    /// true: inputs are stored permuted and `.q4_perm` is present (desc_act).
    public var actOrder: Bool
    public var hasBias: Bool

    public init(name: String, outFeatures: Int, inFeatures: Int, groupSize: Int, symmetric: Bool,
                actOrder: Bool, hasBias: Bool) {
        self.name = name; self.outFeatures = outFeatures; self.inFeatures = inFeatures
        self.groupSize = groupSize; self.symmetric = symmetric; self.actOrder = actOrder; self.hasBias = hasBias
    }

    public var groups: Int { inFeatures / groupSize }
    public var codesName: String { name + Self.codesSuffix }
    public var scalesName: String { name + Self.scalesSuffix }
    public var zerosName: String { name + Self.zerosSuffix }
    public var permName: String { name + Self.permSuffix }
    public var biasName: String { name + Self.biasSuffix }

    /// The size rules of §4; nil when they hold, else what is wrong.
    public func shapeProblem() -> String? {
        if name.isEmpty || name.utf8.contains(0) { return "a linear needs a non-empty name without U+0000" }
        if outFeatures < 1 { return "linear '\(name)': out \(outFeatures) must be at least 1" }
        if inFeatures < 32 || inFeatures % 32 != 0 { return "linear '\(name)': in \(inFeatures) must be a positive multiple of 32" }
        if groupSize < 32 || groupSize % 32 != 0 || inFeatures % groupSize != 0 {
            return "linear '\(name)': group_size \(groupSize) must be a multiple of 32 dividing in \(inFeatures)"
        }
        // out * in/2 must fit: in <= 2^62 here and out >= 1, checked with overflow detection.
        if outFeatures.multipliedReportingOverflow(by: inFeatures / 2).overflow { return "linear '\(name)': size overflows" }
        return nil
    }

    /// The tensors this record owns, with the dtype and shape they must have. The bias dtype is free
    /// (F16, BF16 or F32), so it is listed with nil.
    public func expectedTensors() -> [(name: String, dtype: DType?, shape: [Int])] {
        var t: [(String, DType?, [Int])] = [(codesName, .u8, [outFeatures, inFeatures / 2]),
                                            (scalesName, .f16, [outFeatures, groups])]
        if !symmetric { t.append((zerosName, .u8, [outFeatures, groups])) }
        if actOrder { t.append((permName, .i32, [inFeatures])) }
        if hasBias { t.append((biasName, nil, [outFeatures])) }
        return t.map { (name: $0.0, dtype: $0.1, shape: $0.2) }
    }
}

/// Memory owned by a `TensorView` that is not backed by a file mapping (conversions build these).
public final class OwnedBytes {
    public let buffer: UnsafeMutableRawBufferPointer
    public init(count: Int) {
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }
    deinit { buffer.deallocate() }

    /// A view of `bytes` copied into fresh owned memory.
    public static func view<T>(name: String, dtype: DType, shape: [Int], _ values: [T]) -> TensorView {
        let count = values.count * MemoryLayout<T>.stride
        precondition(count == elementCount(shape) * dtype.byteSize, "view: \(name) bytes do not match its shape")
        let o = OwnedBytes(count: count)
        values.withUnsafeBytes { o.buffer.copyMemory(from: $0) }
        let info = TensorInfo(name: name, dtype: dtype, shape: shape, file: "<memory>", offset: 0, byteCount: count)
        return TensorView(info: info, bytes: UnsafeRawBufferPointer(start: o.buffer.baseAddress, count: count), owner: o)
    }
}

/// One quantized Linear's tensors, checked: dtypes and shapes as the spec declares, zero points
/// 0...16, `perm` a permutation. The kernels trust these views, so everything is checked here once.
public struct QuantizedLinearRecord {
    public let spec: QuantizedLinearSpec
    /// U8 [out, in/2], blocks of 32 codes (Formats/SQUINT_INT4.md §4.1).
    public let codes: TensorView
    /// F16 [out, groups].
    public let scales: TensorView
    /// U8 [out, groups], the zero points themselves; nil when symmetric (all 8).
    public let zeros: TensorView?
    /// I32 [in]: stored position k holds original input perm[k]; nil without act order.
    public let perm: TensorView?
    /// [out] F16, BF16 or F32; nil when the layer has none.
    public let bias: TensorView?

    /// - Parameter path: names the file in errors.
    public init(spec: QuantizedLinearSpec, codes: TensorView, scales: TensorView, zeros: TensorView?,
                perm: TensorView?, bias: TensorView?, path: String) throws {
        func bad(_ w: String) -> FormatError { .invalid(path: path, what: "linear '\(spec.name)': \(w)") }
        if let p = spec.shapeProblem() { throw FormatError.invalid(path: path, what: p) }
        guard (zeros == nil) == spec.symmetric else { throw bad("zero points must be given iff the record is not symmetric") }
        guard (perm == nil) == !spec.actOrder else { throw bad("a permutation must be given iff act_order is set") }
        guard (bias == nil) == !spec.hasBias else { throw bad("a bias must be given iff bias is set") }
        let views: [TensorView?] = [codes, scales, zeros, perm, bias]
        for (t, v) in zip(spec.expectedTensors(), views.compactMap { $0 }) {
            guard v.info.shape == t.shape else { throw bad("tensor '\(t.name)' has shape \(v.info.shape), expected \(t.shape)") }
            if let d = t.dtype {
                guard v.info.dtype == d else { throw bad("tensor '\(t.name)' has dtype \(v.info.dtype.rawValue), expected \(d.rawValue)") }
            } else {
                guard [.f16, .bf16, .f32].contains(v.info.dtype) else {
                    throw bad("bias '\(t.name)' has dtype \(v.info.dtype.rawValue), expected F16, BF16 or F32")
                }
            }
            guard v.bytes.count == checkedByteCount(shape: t.shape, dtype: v.info.dtype) else {
                throw bad("tensor '\(t.name)' holds \(v.bytes.count) bytes, which does not match its shape")
            }
        }
        // A NaN or Inf scale would turn every output of its row into NaN (issue 17): refused by name.
        for k in 0..<(spec.outFeatures * spec.groups) {
            let bits = UInt16(littleEndian: scales.bytes.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
            if bits & 0x7C00 == 0x7C00 {
                throw bad("scale [\(k / spec.groups), \(k % spec.groups)] of '\(spec.scalesName)' is \(bits & 0x3FF == 0 ? "Inf" : "NaN")")
            }
        }
        if let z = zeros {
            if let i = z.bytes.firstIndex(where: { $0 > 16 }) {
                throw bad("zero point \(z.bytes[i]) at [\(i / spec.groups), \(i % spec.groups)] exceeds 16")
            }
        }
        if let p = perm {
            var seen = [Bool](repeating: false, count: spec.inFeatures)
            for k in 0..<spec.inFeatures {
                let v = Int(Int32(littleEndian: p.bytes.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self)))
                guard v >= 0, v < spec.inFeatures, !seen[v] else {
                    throw bad("q4_perm is not a permutation of 0..<\(spec.inFeatures) (entry \(k) is \(v))")
                }
                seen[v] = true
            }
        }
        self.spec = spec; self.codes = codes; self.scales = scales; self.zeros = zeros; self.perm = perm; self.bias = bias
    }

    /// The views in the order of `spec.expectedTensors()`.
    public var views: [TensorView] { [codes, scales, zeros, perm, bias].compactMap { $0 } }

    /// AutoGPTQ's `g_idx` [in] (the group of each original input): `k / g` at `perm[k]`, or `i / g`
    /// without act order (Formats/SQUINT_INT4.md §4.3).
    public var gIdx: [Int32] {
        let g = spec.groupSize
        guard let p = perm else { return (0..<spec.inFeatures).map { Int32($0 / g) } }
        var out = [Int32](repeating: 0, count: spec.inFeatures)
        for k in 0..<spec.inFeatures {
            out[Int(Int32(littleEndian: p.bytes.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self)))] = Int32(k / g)
        }
        return out
    }

    /// The 4-bit code of row `o` at stored input position `k` (Formats/SQUINT_INT4.md §4.1).
    public func code(_ o: Int, _ k: Int) -> UInt8 {
        let b = codes.bytes[o * (spec.inFeatures / 2) + (k / 32) * 16 + (k % 16)]
        return (k % 32) < 16 ? b & 0xF : b >> 4
    }
}

// MARK: - Header JSON (deterministic text)

extension JSONValue {
    /// Compact JSON text: members in stored order, numbers with their original text, strings escaped
    /// like the safetensors writer. Deterministic, so SQ4 headers are byte-identical across runs.
    public var compactText: String {
        switch self {
        case .object(let m): return "{" + m.map { JSONText.quoted($0.key) + ":" + $0.value.compactText }.joined(separator: ",") + "}"
        case .array(let a): return "[" + a.map(\.compactText).joined(separator: ",") + "]"
        case .string(let s): return JSONText.quoted(s)
        case .integer(let i): return String(i)
        case .integerOutOfRange(let t): return t
        case .double(_, let t): return t
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}
