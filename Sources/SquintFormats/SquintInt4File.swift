import Foundation
import CSquintKernels

/// One tensor-table row of an SQ4 file (Formats/SQUINT_INT4.md §3). `offset` is relative to the data
/// section.
public struct SQ4TableEntry: Equatable, Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var offset: Int
    public var length: Int
    public var crc32: UInt32
}

/// A Squint Int4 (SQ4) file, memory-mapped and validated before anything is returned: magic, version,
/// flags, header length cap, header CRC, strict JSON, the tensor table (lengths, canonical aligned
/// offsets, bounds, no trailing bytes) and the linear records (every named tensor present with its
/// dtype and shape, no orphan quantized tensors). Tensor checksums are checked by `verify()`, which
/// reads the whole file; `view` and `quantizedLinear` are zero-copy.
///
/// Why so strict: the kernels index codes and scales by the shapes the header declares; a lying
/// header must be refused here, not discovered as a wild read in a matrix product.
public final class SquintInt4File: TensorFile {
    public let path: String
    /// Tensors in file order (offsets absolute in the file).
    public let tensors: [TensorInfo]
    /// The table as stored (offsets relative to the data section, checksums).
    public let table: [SQ4TableEntry]
    /// Empty: SQ4 keeps its metadata typed in `header`.
    public let metadata: [String: String] = [:]
    public let header: SQ4Header
    /// The file's version (1 or 2; Formats/SQUINT_INT4.md §7).
    public let version: UInt32
    /// The quantized linears, in header order.
    public let linears: [QuantizedLinearSpec]
    /// N, the JSON header's length (padding included).
    public let headerLength: Int
    /// D, the absolute offset of the data section.
    public let dataSectionOffset: Int
    public let mapping: MappedFile
    private let indexByName: [String: Int]
    private let linearByName: [String: Int]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.path = path
        mapping = file
        func bad(_ w: String) -> FormatError { .invalid(path: path, what: w) }

        let magic = try file.slice(0, 8, what: "the 8-byte magic")
        guard Array(magic) == SQ4.magic else {
            throw bad("not an SQ4 file: the magic is \(Array(magic).map { String($0, radix: 16) }), expected \"SQUINT4\\0\"")
        }
        let version = try file.readLE(UInt32.self, at: 8, what: "the version")
        guard SQ4.readableVersions.contains(version) else {
            throw FormatError.unsupported(path: path, what: "SQ4 version \(version); this Squint reads versions "
                                          + "\(SQ4.readableVersions.lowerBound)...\(SQ4.readableVersions.upperBound)")
        }
        self.version = version
        let flags = try file.readLE(UInt32.self, at: 12, what: "the flags")
        guard flags == 0 else { throw FormatError.unsupported(path: path, what: "SQ4 flags 0x\(String(flags, radix: 16)) (versions 1 and 2 have none)") }
        let n64 = try file.readLE(UInt64.self, at: 16, what: "the header length")
        guard n64 >= 8, n64 <= UInt64(SQ4.maxHeaderLength), n64 % 8 == 0 else {
            throw bad("header length \(n64) must be a multiple of 8 between 8 and \(SQ4.maxHeaderLength)")
        }
        let n = Int(n64)
        headerLength = n
        let storedCRC = try file.readLE(UInt32.self, at: 24, what: "the header checksum")
        let reserved = try file.readLE(UInt32.self, at: 28, what: "the reserved field")
        guard reserved == 0 else { throw bad("the reserved field at byte 28 is \(reserved), expected 0") }
        let headerBytes = try file.slice(SQ4.preludeSize, n, what: "the \(n)-byte JSON header")
        let crc = SQ4.crc32(headerBytes)
        guard crc == storedCRC else {
            throw bad("header checksum mismatch: stored \(SQ4.hex8(storedCRC)), computed \(SQ4.hex8(crc)) (the file is corrupt)")
        }
        guard let last = headerBytes.lastIndex(where: { $0 != 0x20 }), headerBytes[last] == UInt8(ascii: "}") else {
            throw bad("the header must be a JSON object padded with spaces")
        }
        let d = SQ4.roundUp(SQ4.preludeSize + n, SQ4.pageAlignment)!  // n <= 64 MiB: no overflow
        dataSectionOffset = d
        let pad = try file.slice(SQ4.preludeSize + n, d - SQ4.preludeSize - n, what: "the padding before the data section")
        guard pad.allSatisfy({ $0 == 0 }) else { throw bad("the padding between the header and the data section is not zero") }

        let json = try StrictJSON.parseObject(headerBytes, path: path, what: "the header")
        let parsed = try SQ4HeaderParser(path: path, version: version).parse(json)
        header = parsed.header
        linears = parsed.linears
        table = parsed.table

        // Rules 2 and 3 of §3: canonical aligned offsets, in bounds, file ends at the last tensor.
        let dataLength = file.size - d
        var end = 0
        for e in table {
            let a = SQ4.alignment(forLength: e.length)
            guard let expected = SQ4.roundUp(end, a) else { throw bad("tensor '\(e.name)': offset overflows") }
            guard e.offset == expected else {
                throw bad("tensor '\(e.name)' is at data offset \(e.offset), expected \(expected) (the first multiple of \(a) "
                    + "at or after the previous tensor's end \(end)): tensors must follow each other, aligned, without overlap")
            }
            let (stop, o) = e.offset.addingReportingOverflow(e.length)
            guard !o else { throw bad("tensor '\(e.name)': offset + length overflows") }
            guard stop <= dataLength else {
                throw FormatError.truncated(path: path, what: "tensor '\(e.name)' needs data bytes \(e.offset)..<\(stop) but the "
                    + "data section holds \(dataLength) bytes")
            }
            end = stop
        }
        guard end == dataLength else {
            throw bad("the file has \(dataLength - end) bytes after the last tensor (the data section holds \(dataLength), tensors end at \(end))")
        }
        tensors = table.map {
            TensorInfo(name: $0.name, dtype: $0.dtype, shape: $0.shape, file: path, offset: d + $0.offset, byteCount: $0.length)
        }
        var index: [String: Int] = [:]
        for (i, t) in table.enumerated() {
            guard index.updateValue(i, forKey: t.name) == nil else { throw bad("tensor '\(t.name)' is listed twice") }
        }
        indexByName = index
        try SQ4HeaderParser.checkRecords(linears, tensors: table.map { ($0.name, $0.dtype, $0.shape) },
                                         vocabTensor: header.tokenizer.vocabTensor, path: path,
                                         tokenizerJSONTensor: header.tokenizer.tokenizerJSONTensor)
        linearByName = Dictionary(uniqueKeysWithValues: linears.enumerated().map { ($1.name, $0) })
    }

    public func info(_ name: String) -> TensorInfo? { indexByName[name].map { tensors[$0] } }

    /// The tensor's bytes, straight from the mapping (no copy; checksum not verified, see `verify`).
    public func view(_ name: String) throws -> TensorView {
        guard let i = indexByName[name] else { throw FormatError.missingTensor(path: path, name: name) }
        let t = tensors[i]
        return TensorView(info: t, bytes: try mapping.slice(t.offset, t.byteCount, what: "tensor '\(name)'"), owner: mapping)
    }

    /// The record of quantized linear `name` (zero-copy views, checked: zeros <= 16, perm a permutation).
    public func quantizedLinear(_ name: String) throws -> QuantizedLinearRecord {
        guard let i = linearByName[name] else { throw FormatError.missingTensor(path: path, name: name + " (quantized linear)") }
        let s = linears[i]
        return try QuantizedLinearRecord(
            spec: s, codes: view(s.codesName), scales: view(s.scalesName),
            zeros: s.symmetric ? nil : view(s.zerosName), perm: s.actOrder ? view(s.permName) : nil,
            bias: s.hasBias ? view(s.biasName) : nil, path: path)
    }

    /// Checks one tensor's CRC-32 against the table.
    public func verify(tensor name: String) throws {
        guard let i = indexByName[name] else { throw FormatError.missingTensor(path: path, name: name) }
        let v = try view(name)
        let crc = SQ4.crc32(v.bytes)
        guard crc == table[i].crc32 else {
            throw FormatError.invalid(path: path, what: "tensor '\(name)': checksum mismatch: stored \(SQ4.hex8(table[i].crc32)), "
                + "computed \(SQ4.hex8(crc)) (the file is corrupt)")
        }
    }

    /// Full verification: every tensor's checksum, and zero padding between tensors. Reads the file
    /// once (CRC-32 runs at ~6 GB/s per core: about 1 s for the 4.6 GB Qwen-VL-Chat Int4 file on 2
    /// threads, page cache permitting). Tensors are checked on up to `threads` threads, biggest first;
    /// the first mismatch in table order is reported. `progress(bytesDone, bytesTotal)` may be called
    /// from any thread.
    public func verify(threads: Int = 1, progress: (@Sendable (Int, Int) -> Void)? = nil) throws {
        var end = 0
        for e in table {
            let gap = try mapping.slice(dataSectionOffset + end, e.offset - end, what: "padding before '\(e.name)'")
            guard gap.allSatisfy({ $0 == 0 }) else {
                throw FormatError.invalid(path: path, what: "the alignment padding before tensor '\(e.name)' is not zero")
            }
            end = e.offset + e.length
        }
        let order = table.indices.sorted { table[$0].length > table[$1].length }
        let total = table.reduce(0) { $0 + $1.length }
        final class State: @unchecked Sendable {
            let lock = NSLock()
            var next = 0, done = 0
            var failures: [Int: Error] = [:]
        }
        let state = State()
        let workers = max(1, min(threads, order.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                state.lock.lock()
                let k = state.next
                state.next += 1
                state.lock.unlock()
                if k >= order.count { return }
                let i = order[k]
                do { try verify(tensor: table[i].name) } catch {
                    state.lock.lock(); state.failures[i] = error; state.lock.unlock()
                }
                state.lock.lock()
                state.done += table[i].length
                let d = state.done
                state.lock.unlock()
                progress?(d, total)
            }
        }
        if let first = state.failures.keys.min() { throw state.failures[first]! }
    }
}

/// Turns the header's JSON into typed values, applying every rule of §2-§4 that needs no file bytes.
struct SQ4HeaderParser {
    let path: String
    /// Version 2 adds (and requires) `generation_config`, `tokenizer.tokenizer_json_tensor` and
    /// `tokenizer.chat_template`; version 1 refuses them as unknown members.
    var version: UInt32 = 1
    func bad(_ w: String) -> FormatError { .invalid(path: path, what: w) }

    func members(_ v: JSONValue, _ what: String, required: [String], optional: [String] = []) throws -> [String: JSONValue] {
        guard case .object(let m) = v else { throw bad("\(what) must be an object, found \(v.kindName)") }
        var out: [String: JSONValue] = [:]
        for (k, x) in m {
            guard required.contains(k) || optional.contains(k) else { throw bad("\(what) has the unknown member \"\(k)\"") }
            out[k] = x
        }
        for k in required where out[k] == nil { throw bad("\(what) lacks \"\(k)\"") }
        return out
    }
    func string(_ v: JSONValue?, _ what: String) throws -> String {
        guard case .string(let s)? = v else { throw bad("\(what) must be a string, found \(v?.kindName ?? "nothing")") }
        return s
    }
    func optionalString(_ v: JSONValue?, _ what: String) throws -> String? {
        if case .null? = v { return nil }
        return try string(v, what)
    }
    func int(_ v: JSONValue?, _ what: String) throws -> Int {
        guard case .integer(let i)? = v, i >= 0 else { throw bad("\(what) must be a non-negative integer, found \(v?.kindName ?? "nothing")") }
        return Int(i)
    }
    func bool(_ v: JSONValue?, _ what: String) throws -> Bool {
        guard case .bool(let b)? = v else { throw bad("\(what) must be true or false, found \(v?.kindName ?? "nothing")") }
        return b
    }
    func sha(_ v: JSONValue?, _ what: String) throws -> String? {
        guard let s = try optionalString(v, what) else { return nil }
        guard s.utf8.count == 64, s.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw bad("\(what) must be 64 lowercase hex digits")
        }
        return s
    }

    func parse(_ json: JSONValue) throws -> (header: SQ4Header, linears: [QuantizedLinearSpec], table: [SQ4TableEntry]) {
        let v2 = version >= 2
        let top = try members(json, "the header", required: ["format", "config", "quantization", "tokenizer", "provenance", "linears", "tensors"]
                                                            + (v2 ? ["generation_config"] : []))
        guard try string(top["format"], "format") == "SQ4" else { throw bad("format must be \"SQ4\"") }
        guard case .object = top["config"]! else { throw bad("config must be an object, found \(top["config"]!.kindName)") }
        var generation: JSONValue? = nil
        if v2 {
            switch top["generation_config"]! {
            case .null: break
            case .object(let m): generation = .object(m)
            case let other: throw bad("generation_config must be an object or null, found \(other.kindName)")
            }
        }

        let q = try members(top["quantization"]!, "quantization", required: ["bits", "group_size", "sym", "desc_act", "static_groups",
                                                                             "damp_percent", "true_sequential", "method"])
        let bits = try int(q["bits"], "quantization.bits")
        guard bits == 4 else { throw FormatError.unsupported(path: path, what: "quantization.bits is \(bits); SQ4 version 1 holds 4-bit codes only") }
        let damp: Double
        switch q["damp_percent"]! {
        case .double(let x, _): damp = x
        case .integer(let i): damp = Double(i)
        default: throw bad("quantization.damp_percent must be a number")
        }
        let methodName = try string(q["method"], "quantization.method")
        guard let method = SQ4Quantization.Method(rawValue: methodName) else { throw bad("quantization.method \"\(methodName)\" is not gptq or rtn") }
        let quant = SQ4Quantization(bits: bits, groupSize: try int(q["group_size"], "quantization.group_size"),
                                    sym: try bool(q["sym"], "quantization.sym"), descAct: try bool(q["desc_act"], "quantization.desc_act"),
                                    staticGroups: try bool(q["static_groups"], "quantization.static_groups"), dampPercent: damp,
                                    trueSequential: try bool(q["true_sequential"], "quantization.true_sequential"), method: method)
        try quant.validate(path: path)
        let t = try members(top["tokenizer"]!, "tokenizer", required: ["qwen_tiktoken_sha256", "vocab_tensor"]
                                                                      + (v2 ? ["tokenizer_json_tensor", "chat_template"] : []))
        let tok = SQ4Tokenizer(qwenTiktokenSHA256: try sha(t["qwen_tiktoken_sha256"], "tokenizer.qwen_tiktoken_sha256"),
                               vocabTensor: try optionalString(t["vocab_tensor"], "tokenizer.vocab_tensor"),
                               tokenizerJSONTensor: v2 ? try optionalString(t["tokenizer_json_tensor"], "tokenizer.tokenizer_json_tensor") : nil,
                               chatTemplate: v2 ? try optionalString(t["chat_template"], "tokenizer.chat_template") : nil)
        let p = try members(top["provenance"]!, "provenance", required: ["source", "source_sha256", "calibration", "tool"])
        let prov = SQ4Provenance(source: try string(p["source"], "provenance.source"),
                                 sourceSHA256: try sha(p["source_sha256"], "provenance.source_sha256"),
                                 calibration: try string(p["calibration"], "provenance.calibration"),
                                 tool: try string(p["tool"], "provenance.tool"))

        guard case .array(let ls) = top["linears"]! else { throw bad("linears must be an array") }
        var linears: [QuantizedLinearSpec] = []
        var names = Set<String>()
        for (i, l) in ls.enumerated() {
            let w = "linears[\(i)]"
            let m = try members(l, w, required: ["name", "out", "in", "group_size", "zeros", "act_order", "bias"])
            let zeros = try string(m["zeros"], "\(w).zeros")
            guard zeros == "symmetric" || zeros == "explicit" else { throw bad("\(w).zeros must be \"symmetric\" or \"explicit\"") }
            let s = QuantizedLinearSpec(name: try string(m["name"], "\(w).name"), outFeatures: try int(m["out"], "\(w).out"),
                                        inFeatures: try int(m["in"], "\(w).in"), groupSize: try int(m["group_size"], "\(w).group_size"),
                                        symmetric: zeros == "symmetric", actOrder: try bool(m["act_order"], "\(w).act_order"),
                                        hasBias: try bool(m["bias"], "\(w).bias"))
            if let problem = s.shapeProblem() { throw bad(problem) }
            guard names.insert(s.name).inserted else { throw bad("linear '\(s.name)' is declared twice") }
            linears.append(s)
        }

        guard case .array(let ts) = top["tensors"]! else { throw bad("tensors must be an array") }
        var table: [SQ4TableEntry] = []
        table.reserveCapacity(ts.count)
        for (i, e) in ts.enumerated() {
            let m = try members(e, "tensors[\(i)]", required: ["name", "dtype", "shape", "offset", "length", "crc32"])
            let name = try string(m["name"], "tensors[\(i)].name")
            guard !name.isEmpty, !name.utf8.contains(0) else { throw bad("tensors[\(i)] has an empty name or one with U+0000") }
            let w = "tensor '\(name)'"
            let dn = try string(m["dtype"], "\(w) dtype")
            guard let dtype = DType(rawValue: dn) else { throw FormatError.unsupported(path: path, what: "\(w) has dtype \"\(dn)\", which Squint does not read") }
            guard case .array(let dims)? = m["shape"] else { throw bad("\(w): shape must be an array") }
            let shape = try dims.enumerated().map { try int($1, "\(w) shape[\($0)]") }
            let offset = try int(m["offset"], "\(w) offset")
            let length = try int(m["length"], "\(w) length")
            guard let bytes = checkedByteCount(shape: shape, dtype: dtype) else { throw bad("\(w): shape \(shape) overflows a 64-bit byte count") }
            guard bytes == length else { throw bad("\(w): shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but length is \(length)") }
            let c = try string(m["crc32"], "\(w) crc32")
            guard c.utf8.count == 8, c.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }), let crc = UInt32(c, radix: 16) else {
                throw bad("\(w): crc32 must be 8 lowercase hex digits, found \"\(c)\"")
            }
            table.append(SQ4TableEntry(name: name, dtype: dtype, shape: shape, offset: offset, length: length, crc32: crc))
        }
        return (SQ4Header(config: top["config"]!, quantization: quant, tokenizer: tok, provenance: prov, generationConfig: generation),
                linears, table)
    }

    /// Rule 4 of §3 (shared with the writer): records' tensors present with their dtype and shape; no
    /// orphan quantized tensors; the vocab tensor, if named, a rank-1 U8 tensor.
    static func checkRecords(_ linears: [QuantizedLinearSpec], tensors: [(name: String, dtype: DType, shape: [Int])],
                             vocabTensor: String?, path: String, tokenizerJSONTensor: String? = nil) throws {
        func bad(_ w: String) -> FormatError { .invalid(path: path, what: w) }
        var byName: [String: (DType, [Int])] = [:]
        for t in tensors {
            guard byName.updateValue((t.dtype, t.shape), forKey: t.name) == nil else { throw bad("tensor '\(t.name)' is listed twice") }
        }
        var owned = Set<String>()
        for l in linears {
            for e in l.expectedTensors() {
                guard let (dt, shape) = byName[e.name] else { throw bad("linear '\(l.name)' needs tensor '\(e.name)', which the file lacks") }
                guard shape == e.shape else { throw bad("tensor '\(e.name)' has shape \(shape), but linear '\(l.name)' needs \(e.shape)") }
                if let want = e.dtype {
                    guard dt == want else { throw bad("tensor '\(e.name)' has dtype \(dt.rawValue), but linear '\(l.name)' needs \(want.rawValue)") }
                } else {
                    guard [.f16, .bf16, .f32].contains(dt) else { throw bad("bias '\(e.name)' has dtype \(dt.rawValue); F16, BF16 or F32 expected") }
                }
                owned.insert(e.name)
            }
        }
        for t in tensors where !owned.contains(t.name) {
            if let suffix = QuantizedLinearSpec.quantSuffixes.first(where: { t.name.hasSuffix($0) }) {
                throw bad("tensor '\(t.name)' ends in \(suffix) but belongs to no declared linear")
            }
        }
        if let v = vocabTensor {
            guard let (dt, shape) = byName[v], dt == .u8, shape.count == 1 else {
                throw bad("tokenizer.vocab_tensor '\(v)' must name a rank-1 U8 tensor of the file")
            }
        }
        if let v = tokenizerJSONTensor {
            guard let (dt, shape) = byName[v], dt == .u8, shape.count == 1 else {
                throw bad("tokenizer.tokenizer_json_tensor '\(v)' must name a rank-1 U8 tensor of the file")
            }
        }
    }
}
