/// Writes GGUF version 3 files laid out as llama.cpp and gguf-py write them (Formats/GGUF.md §7):
/// header, metadata in the order added, tensor infos in the order added with consecutive aligned
/// offsets, padding, then each tensor's bytes padded to the alignment. Deterministic (the same calls
/// give the same bytes) and atomic (`AtomicFileWriter`).
///
/// The alignment is the `general.alignment` UINT32 the caller adds (32 when absent), so the metadata
/// always tells readers what the layout used.
public final class GGUFWriter {
    /// Tensor types this writer accepts.
    public static var tensorTypes: [GGMLType] { GGUFQuantize.types }   // the types we can encode, and no others
    /// llama.cpp's GGML_MAX_NAME: tensor names must be shorter than this many bytes.
    public static let maxNameBytes = 64

    private struct Tensor {
        var name: String
        var type: GGMLType
        var ne: [Int]
        var byteCount: Int
        var produce: () throws -> [UInt8]
    }

    public private(set) var keyValues: [GGUFKeyValue] = []
    private var keys: Set<String> = []
    private var tensors: [Tensor] = []
    private var names: Set<String> = []
    /// Labels errors about the content (the destination is only known at `write`).
    private let label = "<gguf writer>"

    public init() {}

    private func bad(_ what: String) -> FormatError { .invalid(path: label, what: what) }

    /// The layout alignment: `general.alignment` when added, else 32.
    public var alignment: Int {
        if let kv = keyValues.first(where: { $0.key == "general.alignment" }), case .uint32(let a) = kv.value { return Int(a) }
        return GGUFFile.defaultAlignment
    }

    /// Adds a metadata pair. Refuses empty or duplicate keys, arrays whose elements are not all of the
    /// declared element type, arrays nested deeper than the reader accepts, and a `general.alignment`
    /// that is not a UINT32 power of two.
    public func add(key: String, _ value: GGUFValue) throws {
        guard !key.isEmpty else { throw bad("empty metadata key") }
        guard !keys.contains(key) else { throw bad("duplicate metadata key '\(key)'") }
        try check(value, depth: 0, key: key)
        if key == "general.alignment" {
            guard case .uint32(let a) = value, a > 0, a & (a - 1) == 0, Int(a) <= GGUFFile.maxAlignment else {
                throw bad("general.alignment must be a UINT32 power of two in 1...\(GGUFFile.maxAlignment), got \(value.summary())")
            }
            guard tensors.isEmpty else { throw bad("add general.alignment before any tensor") }
        }
        keys.insert(key)
        keyValues.append(GGUFKeyValue(key: key, value: value))
    }

    private func check(_ v: GGUFValue, depth: Int, key: String) throws {
        guard case .array(let t, let items) = v else { return }
        guard depth < GGUFFile.maxArrayDepth else { throw bad("'\(key)' nests arrays deeper than \(GGUFFile.maxArrayDepth)") }
        for (i, item) in items.enumerated() {
            guard item.type == t else { throw bad("'\(key)'[\(i)] is \(item.type.name) in an array of \(t.name)") }
            try check(item, depth: depth + 1, key: key)
        }
    }

    /// Adds a tensor from already-encoded block bytes. `shape` is row-major (numpy order); the file
    /// stores it reversed (ggml order). The last dimension must be a multiple of the type's block size.
    public func addTensor(name: String, type: GGMLType, shape: [Int], bytes: [UInt8]) throws {
        let n = try validate(name: name, type: type, shape: shape)
        guard bytes.count == n else { throw bad("tensor '\(name)': \(type.name) \(shape) needs \(n) bytes, got \(bytes.count)") }
        append(name, type, shape, n) { bytes }
    }

    /// Adds a tensor from float32 values, encoded with the reference quantisers (`GGUFQuantize`).
    public func addTensor(name: String, type: GGMLType, shape: [Int], values: [Float]) throws {
        let n = try validate(name: name, type: type, shape: shape)
        guard values.count == elementCount(shape) else {
            throw bad("tensor '\(name)': shape \(shape) holds \(elementCount(shape)) values, got \(values.count)")
        }
        guard let bytes = GGUFQuantize.quantize(type, values), bytes.count == n else {
            throw bad("tensor '\(name)': cannot encode \(type.name)")
        }
        append(name, type, shape, n) { bytes }
    }

    /// Adds a tensor whose bytes are produced only while writing (one tensor in memory at a time).
    /// `produce` must return exactly the byte count of `type` x `shape`.
    public func addTensor(name: String, type: GGMLType, shape: [Int], produce: @escaping () throws -> [UInt8]) throws {
        append(name, type, shape, try validate(name: name, type: type, shape: shape), produce)
    }

    private func append(_ name: String, _ type: GGMLType, _ shape: [Int], _ bytes: Int, _ produce: @escaping () throws -> [UInt8]) {
        names.insert(name)
        tensors.append(Tensor(name: name, type: type, ne: shape.reversed(), byteCount: bytes, produce: produce))
    }

    /// Validates a tensor declaration; returns its byte count.
    private func validate(name: String, type: GGMLType, shape: [Int]) throws -> Int {
        guard !name.isEmpty else { throw bad("empty tensor name") }
        // llama.cpp stores names in a 64-byte field with a terminator and refuses longer ones.
        guard name.utf8.count < Self.maxNameBytes else {
            throw bad("tensor name '\(name)' is \(name.utf8.count) bytes; llama.cpp accepts at most \(Self.maxNameBytes - 1)")
        }
        guard !names.contains(name) else { throw bad("duplicate tensor name '\(name)'") }
        guard Self.tensorTypes.contains(type) else {
            throw bad("tensor '\(name)': the writer does not write \(type.name) (it writes \(Self.tensorTypes.map(\.name).joined(separator: ", ")))")
        }
        guard (1...4).contains(shape.count), shape.allSatisfy({ $0 >= 0 }) else {
            throw bad("tensor '\(name)': shape \(shape) must have 1...4 non-negative dimensions")
        }
        guard let last = shape.last, last % type.blockSize == 0 else {
            throw bad("tensor '\(name)': row length \(shape.last ?? 0) is not a multiple of the \(type.name) block size \(type.blockSize)")
        }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw bad("tensor '\(name)': shape \(shape) overflows") }
            count = p
        }
        let (bytes, o) = (count / type.blockSize).multipliedReportingOverflow(by: type.blockBytes)
        guard !o else { throw bad("tensor '\(name)': shape \(shape) overflows") }
        return bytes
    }

    /// Everything before the data section (header, metadata, tensor infos, padding).
    public func headerBytes() -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        func value(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out += $0 }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out += $0 }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .float64(let x): u64(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let s): str(s)
            case .array(let t, let items):
                u32(t.rawValue); u64(UInt64(items.count))
                for i in items { value(i) }
            }
        }
        out += GGUFFile.magic
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(keyValues.count))
        for kv in keyValues { str(kv.key); u32(kv.value.type.rawValue); value(kv.value) }
        let align = alignment
        var offset = 0
        for t in tensors {
            str(t.name)
            u32(UInt32(t.ne.count))
            for n in t.ne { u64(UInt64(n)) }
            u32(t.type.rawValue)
            u64(UInt64(offset))
            offset += Self.padded(t.byteCount, align)
        }
        out += [UInt8](repeating: 0, count: Self.padded(out.count, align) - out.count)
        return out
    }

    private static func padded(_ n: Int, _ a: Int) -> Int { (n + a - 1) / a * a }

    /// Writes the file atomically. An existing `path` is an error unless `overwrite`.
    public func write(to path: String, overwrite: Bool) throws {
        let w = try AtomicFileWriter(destination: path, overwrite: overwrite)
        do {
            try w.write(headerBytes())
            let align = alignment
            for t in tensors {
                let bytes = try t.produce()
                guard bytes.count == t.byteCount else {
                    throw FormatError.invalid(path: path, what: "tensor '\(t.name)': produced \(bytes.count) bytes, \(t.type.name) "
                        + "ne \(t.ne) needs \(t.byteCount)")
                }
                try w.write(bytes)
                try w.writeZeros(Self.padded(t.byteCount, align) - t.byteCount)
            }
            try w.commit()
        } catch {
            w.abandon()
            throw error
        }
    }
}
