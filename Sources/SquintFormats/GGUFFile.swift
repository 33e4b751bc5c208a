/// One `.gguf` file, memory-mapped and validated in full before anything is returned
/// (Formats/GGUF.md §6). Tensor bytes are handed out zero-copy from the mapping.
///
/// Why so strict: past GGUF readers had integer overflows and out-of-bounds reads from lying headers
/// (n_dims, string and array lengths, tensor offsets). Here every count and length is checked against
/// the bytes left in the file before anything is allocated, every product is overflow-checked, and
/// every tensor must lie aligned, inside the file and apart from the others.
public final class GGUFFile: TensorFile {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    /// Arrays nested deeper than this are refused (a crafted file could otherwise recurse without bound).
    public static let maxArrayDepth = 8
    /// `general.alignment` above this is refused: no real file needs it, and it would let a header
    /// demand megabytes of padding.
    public static let maxAlignment = 1 << 20
    public static let defaultAlignment = 32

    public let path: String
    /// 2 or 3 (read identically).
    public let version: UInt32
    /// `general.alignment`, or 32.
    public let alignment: Int
    /// Absolute file offset of the data section.
    public let dataOffset: Int
    /// Metadata in file order.
    public let keyValues: [GGUFKeyValue]
    /// Tensors in file (info) order.
    public let ggufTensors: [GGUFTensorInfo]
    /// The mapping the views point into; kept alive by every `TensorView` taken from this file.
    public let mapping: MappedFile
    private let keyIndex: [String: Int]
    private let tensorIndex: [String: Int]

    // TensorFile
    public let tensors: [TensorInfo]
    public let metadata: [String: String]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.path = path
        self.mapping = file
        var r = GGUFCursor(file: file)

        let magicBytes = try file.slice(0, 4, what: "the 4-byte magic")
        guard Array(magicBytes) == Self.magic else {
            throw FormatError.invalid(path: path, what: "not a GGUF file (magic \(Array(magicBytes).map { String($0, radix: 16) }), expected \"GGUF\")")
        }
        r.position = 4
        let v = try r.u32("the version")
        switch v {
        case 2, 3: break
        case 1: throw FormatError.unsupported(path: path, what: "GGUF version 1 (obsolete; convert it with a current llama.cpp)")
        case 0x0200_0000, 0x0300_0000:
            throw FormatError.unsupported(path: path, what: "big-endian GGUF file (Squint reads little-endian GGUF only)")
        default: throw FormatError.unsupported(path: path, what: "GGUF version \(v) (Squint reads versions 2 and 3)")
        }
        version = v
        let nTensors64 = try r.u64("the tensor count")
        let nKV64 = try r.u64("the metadata count")
        // Smallest encodings: a KV pair 13 bytes (key length, type, 1-byte value), a tensor info 32
        // (name length, n_dims, one dimension, type, offset). Counts that cannot fit are lies.
        let left = UInt64(file.size - r.position)
        guard nKV64 <= left / 13 else {
            throw FormatError.truncated(path: path, what: "the header declares \(nKV64) metadata pairs but only \(left) bytes follow it")
        }
        guard nTensors64 <= left / 32 else {
            throw FormatError.truncated(path: path, what: "the header declares \(nTensors64) tensors but only \(left) bytes follow it")
        }
        let nKV = Int(nKV64), nTensors = Int(nTensors64)

        var kvs: [GGUFKeyValue] = []
        kvs.reserveCapacity(min(nKV, 1 << 12))  // grows only as pairs are actually read
        var keyIndex: [String: Int] = [:]
        for i in 0..<nKV {
            let key = try r.string("key of metadata pair \(i)")
            guard !key.isEmpty else { throw FormatError.invalid(path: path, what: "metadata pair \(i) has an empty key") }
            guard keyIndex[key] == nil else { throw FormatError.invalid(path: path, what: "duplicate metadata key \(shown(key))") }
            let typeID = try r.u32("value type of \(shown(key))")
            let value = try r.value(typeID: typeID, depth: 0, what: "\(shown(key))")
            keyIndex[key] = kvs.count
            kvs.append(GGUFKeyValue(key: key, value: value))
        }
        keyValues = kvs
        self.keyIndex = keyIndex

        var align = Self.defaultAlignment
        if let i = keyIndex["general.alignment"] {
            guard case .uint32(let a) = kvs[i].value else {
                throw FormatError.invalid(path: path, what: "general.alignment must be a UINT32, found \(kvs[i].value.type.name)")
            }
            guard a > 0, a & (a - 1) == 0, Int(a) <= Self.maxAlignment else {
                throw FormatError.invalid(path: path, what: "general.alignment \(a) is not a power of two in 1...\(Self.maxAlignment)")
            }
            align = Int(a)
        }
        alignment = align

        struct Raw { var name: String; var type: GGMLType; var ne: [Int]; var rel: Int; var bytes: Int; var count: Int }
        var raws: [Raw] = []
        raws.reserveCapacity(min(nTensors, 1 << 12))
        var tensorIndex: [String: Int] = [:]
        for i in 0..<nTensors {
            let name = try r.string("name of tensor info \(i)")
            guard !name.isEmpty else { throw FormatError.invalid(path: path, what: "tensor info \(i) has an empty name") }
            guard tensorIndex[name] == nil else { throw FormatError.invalid(path: path, what: "duplicate tensor name \(shown(name))") }
            let nDims = try r.u32("n_dims of tensor \(shown(name))")
            guard (1...4).contains(nDims) else {
                throw FormatError.invalid(path: path, what: "tensor \(shown(name)) has n_dims \(nDims) (must be 1...4)")
            }
            var ne: [Int] = []
            // The product of the non-zero dimensions must fit: an empty tensor (a 0 among them) may not carry
            // dimensions whose product, taken in another order (a shape's row count, its row size), overflows
            // (fuzz finding 5: ne [2^62, 0] passed, then its row size trapped).
            var nonZero = 1
            for d in 0..<Int(nDims) {
                let n = try r.u64("dimension \(d) of tensor \(shown(name))")
                guard let n = Int(exactly: n) else {
                    throw FormatError.invalid(path: path, what: "tensor \(shown(name)) dimension \(d) is \(n), above 2^63-1")
                }
                let (q, o) = nonZero.multipliedReportingOverflow(by: max(n, 1))
                guard !o else {
                    throw FormatError.invalid(path: path, what: "tensor \(shown(name)) element count overflows 64 bits (ne \(ne + [n]))")
                }
                nonZero = q
                ne.append(n)
            }
            let count = ne.contains(0) ? 0 : nonZero
            let typeID = try r.u32("ggml type of tensor \(shown(name))")
            guard let type = GGMLType(rawValue: typeID) else {
                if let known = GGMLType.knownName(of: typeID) {
                    throw FormatError.unsupported(path: path, what: "tensor \(shown(name)) has ggml type \(known) (id \(typeID)), "
                        + "valid GGUF but not read by Squint (it reads \(GGMLType.allCases.map(\.name).joined(separator: ", ")))")
                }
                throw FormatError.invalid(path: path, what: "tensor \(shown(name)) has unknown ggml type id \(typeID)")
            }
            guard ne[0] % type.blockSize == 0 else {
                throw FormatError.invalid(path: path, what: "tensor \(shown(name)) row length ne[0] = \(ne[0]) is not a multiple of "
                    + "the \(type.name) block size \(type.blockSize)")
            }
            let (allBytes, o) = (nonZero / type.blockSize).multipliedReportingOverflow(by: type.blockBytes)
            guard !o else { throw FormatError.invalid(path: path, what: "tensor \(shown(name)) byte size overflows 64 bits") }
            let bytes = count == 0 ? 0 : allBytes
            let rel64 = try r.u64("data offset of tensor \(shown(name))")
            guard let rel = Int(exactly: rel64) else {
                throw FormatError.invalid(path: path, what: "tensor \(shown(name)) offset \(rel64) is beyond any file")
            }
            guard rel % align == 0 else {
                throw FormatError.invalid(path: path, what: "tensor \(shown(name)) offset \(rel) is not a multiple of the alignment \(align)")
            }
            tensorIndex[name] = raws.count
            raws.append(Raw(name: name, type: type, ne: ne, rel: rel, bytes: bytes, count: count))
        }
        self.tensorIndex = tensorIndex

        // The data section may start past the end of a file whose tensors are all empty (or absent);
        // each tensor's bytes are checked against the file size below.
        let padded = r.position + (align - r.position % align) % align
        dataOffset = padded

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raws.count)
        for t in raws {
            let (start, o1) = padded.addingReportingOverflow(t.rel)
            let (end, o2) = start.addingReportingOverflow(t.bytes)
            guard !o1, !o2 else {
                throw FormatError.invalid(path: path, what: "tensor \(shown(t.name)) offset \(t.rel) + \(t.bytes) bytes overflows 64 bits")
            }
            guard end <= file.size || t.bytes == 0 else {
                throw FormatError.truncated(path: path, what: "tensor \(shown(t.name)) (\(t.type.name), ne \(t.ne)) needs bytes "
                    + "\(start)..<\(end) of a \(file.size)-byte file")
            }
            infos.append(GGUFTensorInfo(name: t.name, type: t.type, ne: t.ne, offset: start, byteCount: t.bytes,
                                        elementCount: t.count))
        }
        // Overlap: sort non-empty ranges by start; each must begin at or after the previous end.
        let order = infos.indices.filter { infos[$0].byteCount > 0 }.sorted { infos[$0].offset < infos[$1].offset }
        for (a, b) in zip(order, order.dropFirst()) where infos[b].offset < infos[a].offset + infos[a].byteCount {
            throw FormatError.invalid(path: path, what: "tensor \(shown(infos[b].name)) (bytes \(infos[b].offset)..<"
                + "\(infos[b].offset + infos[b].byteCount)) overlaps tensor \(shown(infos[a].name)) (bytes \(infos[a].offset)..<"
                + "\(infos[a].offset + infos[a].byteCount))")
        }
        ggufTensors = infos

        tensors = infos.map { t in
            if let dt = t.type.plainDType {
                return TensorInfo(name: t.name, dtype: dt, shape: t.shape, file: path, offset: t.offset, byteCount: t.byteCount)
            }
            var shape = t.shape
            shape[shape.count - 1] = t.rowBytes
            return TensorInfo(name: t.name, dtype: .u8, shape: shape, file: path, offset: t.offset, byteCount: t.byteCount)
        }
        var md: [String: String] = [:]
        for kv in kvs {
            switch kv.value {
            case .string(let s): md[kv.key] = s
            case .array(let t, let a): md[kv.key] = "[\(a.count) \(t.name) values]"
            default: md[kv.key] = kv.value.summary()
            }
        }
        metadata = md
    }

    /// The metadata value of `key`, if present.
    public func value(forKey key: String) -> GGUFValue? { keyIndex[key].map { keyValues[$0].value } }

    /// `general.architecture`, when present.
    public var architecture: String? { value(forKey: "general.architecture")?.string }

    public func ggufTensor(named name: String) -> GGUFTensorInfo? { tensorIndex[name].map { ggufTensors[$0] } }

    /// The tensor's bytes, straight from the mapping (no copy). Valid while this file is alive.
    public func bytes(of t: GGUFTensorInfo) throws -> UnsafeRawBufferPointer {
        if t.byteCount == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return try mapping.slice(t.offset, t.byteCount, what: "tensor \(shown(t.name))")
    }

    public func bytes(named name: String) throws -> UnsafeRawBufferPointer {
        guard let t = ggufTensor(named: name) else { throw FormatError.missingTensor(path: path, name: name) }
        return try bytes(of: t)
    }

    public func info(_ name: String) -> TensorInfo? { tensorIndex[name].map { tensors[$0] } }

    public func view(_ name: String) throws -> TensorView {
        guard let i = tensorIndex[name] else { throw FormatError.missingTensor(path: path, name: name) }
        return TensorView(info: tensors[i], bytes: try bytes(of: ggufTensors[i]), owner: mapping)
    }
}

/// Bounds-checked little-endian reads over the mapping, advancing a position. Every length is
/// checked against the bytes left before anything is allocated.
struct GGUFCursor {
    let file: MappedFile
    var position = 0

    init(file: MappedFile) { self.file = file }

    var path: String { file.path }
    var remaining: Int { file.size - position }

    mutating func raw(_ count: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        let b = try file.slice(position, count, what: what())
        position += count
        return b
    }

    mutating func int<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let b = try raw(MemoryLayout<T>.size, what())
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try int(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try int(UInt64.self, what()) }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let n = try u64("the length of \(what())")
        guard n <= UInt64(remaining) else {
            throw FormatError.truncated(path: path, what: "\(what()) declares \(n) bytes but \(remaining) remain in the file")
        }
        let b = try raw(Int(n), what())
        guard let s = String(validating: b, as: UTF8.self) else {
            throw FormatError.invalid(path: path, what: "\(what()) is not valid UTF-8")
        }
        return s
    }

    mutating func value(typeID: UInt32, depth: Int, what: @autoclosure () -> String) throws -> GGUFValue {
        guard let t = GGUFValueType(rawValue: typeID) else {
            throw FormatError.invalid(path: path, what: "\(what()) has unknown value type \(typeID) (GGUF defines 0...12)")
        }
        return try value(t, depth: depth, what: what())
    }

    mutating func value(_ t: GGUFValueType, depth: Int, what: @autoclosure () -> String) throws -> GGUFValue {
        switch t {
        case .uint8: return .uint8(try int(UInt8.self, what()))
        case .int8: return .int8(try int(Int8.self, what()))
        case .uint16: return .uint16(try int(UInt16.self, what()))
        case .int16: return .int16(try int(Int16.self, what()))
        case .uint32: return .uint32(try int(UInt32.self, what()))
        case .int32: return .int32(try int(Int32.self, what()))
        case .uint64: return .uint64(try int(UInt64.self, what()))
        case .int64: return .int64(try int(Int64.self, what()))
        case .float32: return .float32(Float(bitPattern: try int(UInt32.self, what())))
        case .float64: return .float64(Double(bitPattern: try int(UInt64.self, what())))
        case .bool:
            let b = try int(UInt8.self, what())
            guard b <= 1 else { throw FormatError.invalid(path: path, what: "\(what()) is a BOOL with byte \(b) (must be 0 or 1)") }
            return .bool(b == 1)
        case .string: return .string(try string(what()))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else {
                throw FormatError.invalid(path: path, what: "\(what()) nests arrays deeper than \(GGUFFile.maxArrayDepth) levels")
            }
            let et = try u32("the element type of \(what())")
            guard let elementType = GGUFValueType(rawValue: et) else {
                throw FormatError.invalid(path: path, what: "\(what()) is an array of unknown value type \(et) (GGUF defines 0...12)")
            }
            let n = try u64("the length of \(what())")
            guard n <= UInt64(remaining / elementType.minimumEncodedSize) else {
                throw FormatError.truncated(path: path, what: "\(what()) declares \(n) \(elementType.name) elements but only "
                    + "\(remaining) bytes remain in the file")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(min(Int(n), 1 << 16))  // a lying count cannot reserve more than this
            for k in 0..<Int(n) {
                items.append(try value(elementType, depth: depth + 1, what: "\(what())[\(k)]"))
            }
            return .array(elementType, items)
        }
    }
}

/// A name from the file as error messages show it: quoted, control characters escaped and long names
/// cut, so a hostile name cannot break the one-line message or flood the terminal.
func shown(_ s: String) -> String {
    var out = ""
    for u in s.unicodeScalars.prefix(120) {
        if u.value < 0x20 || u.value == 0x7f { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
    }
    return "'" + out + (s.unicodeScalars.count > 120 ? "...'" : "'")
}
