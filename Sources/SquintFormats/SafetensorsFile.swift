/// One `.safetensors` file, memory-mapped and validated in full before anything is returned
/// (Formats/SAFETENSORS.md §3). Tensor bytes are handed out zero-copy from the mapping.
///
/// Why so strict: the header is untrusted. A lying shape, an overlap or a gap would let a file hand
/// one tensor's bytes to another, or hide data nobody reads; a huge header length would make a naive
/// reader allocate gigabytes. Every such file is refused with a `FormatError` naming it.
public final class SafetensorsFile: TensorFile {
    /// The reference implementation's cap on the header length `N` (100 MB).
    public static let maxHeaderLength = 100_000_000

    public let path: String
    /// Tensors in file order: sorted by data offset (ties, which only empty tensors can have, by name).
    public let tensors: [TensorInfo]
    /// The `__metadata__` map; empty when the header has none.
    public let metadata: [String: String]
    /// `N`, the header's byte length (padding included).
    public let headerLength: Int
    /// Absolute file offset of the data section: `8 + N`.
    public var dataSectionOffset: Int { 8 + headerLength }
    /// The mapping the views point into; kept alive by every `TensorView` taken from this file.
    public let mapping: MappedFile
    private let indexByName: [String: Int]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.path = path
        self.mapping = file
        let n64 = try file.readLE(UInt64.self, at: 0, what: "the 8-byte header length")
        guard n64 <= UInt64(Self.maxHeaderLength) else {
            throw FormatError.invalid(path: path, what: "header length \(n64) exceeds the \(Self.maxHeaderLength)-byte "
                + "cap (this is not a safetensors file, or it is corrupt)")
        }
        let n = Int(n64)
        headerLength = n
        let header = try file.slice(8, n, what: "the \(n)-byte JSON header")
        let dataLength = file.size - 8 - n
        let parsed = try SafetensorsHeader.parse(header, dataLength: dataLength, path: path)
        metadata = parsed.metadata
        tensors = parsed.entries.map { e in
            TensorInfo(name: e.name, dtype: e.dtype, shape: e.shape, file: path,
                       offset: 8 + n + e.begin, byteCount: e.end - e.begin)
        }
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        indexByName = index
    }

    public func info(_ name: String) -> TensorInfo? { indexByName[name].map { tensors[$0] } }

    /// The tensor's bytes, straight from the mapping (no copy).
    public func view(_ name: String) throws -> TensorView {
        guard let i = indexByName[name] else { throw FormatError.missingTensor(path: path, name: name) }
        let t = tensors[i]
        let bytes = try mapping.slice(t.offset, t.byteCount, what: "tensor '\(name)'")
        return TensorView(info: t, bytes: bytes, owner: mapping)
    }
}

/// The header of a safetensors file, parsed and checked against the data section's length. Kept apart
/// from the file so the rules can be applied to bytes from anywhere (and tested on their own).
public struct SafetensorsHeader {
    /// One tensor as declared: offsets are relative to the data section, `[begin, end)`.
    public struct Entry: Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var begin: Int
        public var end: Int
    }

    /// Sorted by `(begin, end, name)`.
    public var entries: [Entry]
    public var metadata: [String: String]

    /// Applies rules 4-14 of Formats/SAFETENSORS.md §3. `dataLength` is the size of the data section
    /// (`file size - 8 - N`).
    public static func parse(_ header: UnsafeRawBufferPointer, dataLength: Int, path: String) throws
        -> SafetensorsHeader
    {
        func bad(_ what: String) -> FormatError { .invalid(path: path, what: what) }
        let json = try StrictJSON.parseObject(header, path: path, what: "the header")
        guard case .object(let members) = json else { throw bad("the header must be a JSON object") }

        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let pairs) = value else {
                    throw bad("__metadata__ must be an object of strings, found \(value.kindName)")
                }
                for (k, v) in pairs {
                    guard case .string(let s) = v else {
                        throw bad("__metadata__[\"\(k)\"] must be a string, found \(v.kindName)")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries.append(try entry(name: name, value, path: path))
        }

        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) || (($0.begin, $0.end) == ($1.begin, $1.end) && $0.name.utf8.lexicographicallyPrecedes($1.name.utf8)) }
        var expected = 0
        var previous: Entry? = nil
        for e in entries {
            if e.begin < expected {
                throw bad("tensor '\(e.name)' (data bytes \(e.begin)..<\(e.end)) overlaps tensor '\(previous!.name)' "
                    + "(data bytes \(previous!.begin)..<\(previous!.end))")
            }
            if e.begin > expected {
                throw bad("data bytes \(expected)..<\(e.begin) belong to no tensor (gap before tensor '\(e.name)')")
            }
            if e.end > dataLength {
                throw FormatError.truncated(path: path, what: "tensor '\(e.name)' needs data bytes \(e.begin)..<\(e.end) "
                    + "but the data section holds \(dataLength) bytes")
            }
            expected = e.end
            previous = e
        }
        if expected != dataLength {
            throw bad("the data section holds \(dataLength) bytes but the tensors cover only \(expected) "
                + "(bytes \(expected)..<\(dataLength) belong to no tensor)")
        }
        return SafetensorsHeader(entries: entries, metadata: metadata)
    }

    private static func entry(name: String, _ value: JSONValue, path: String) throws -> Entry {
        func bad(_ what: String) -> FormatError { .invalid(path: path, what: "tensor '\(name)': \(what)") }
        guard case .object(let fields) = value else {
            throw bad("entry must be an object with dtype, shape and data_offsets, found \(value.kindName)")
        }
        for (k, _) in fields where !["dtype", "shape", "data_offsets"].contains(k) {
            throw bad("unknown key \"\(k)\" (an entry has exactly dtype, shape and data_offsets)")
        }
        guard let dtypeValue = value["dtype"] else { throw bad("missing \"dtype\"") }
        guard case .string(let dtypeName) = dtypeValue else {
            throw bad("dtype must be a string, found \(dtypeValue.kindName)")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw FormatError.unsupported(path: path, what: "tensor '\(name)' has dtype \"\(dtypeName)\", which Squint "
                + "does not read (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let shapeValue = value["shape"] else { throw bad("missing \"shape\"") }
        guard case .array(let dims) = shapeValue else { throw bad("shape must be an array, found \(shapeValue.kindName)") }
        let shape = try dims.enumerated().map { (i, d) -> Int in
            try nonNegativeInt(d) ?? { throw bad("shape[\(i)] must be a non-negative integer, found \(d.kindName)") }()
        }
        guard let offsetsValue = value["data_offsets"] else { throw bad("missing \"data_offsets\"") }
        guard case .array(let offs) = offsetsValue, offs.count == 2 else {
            throw bad("data_offsets must be an array [begin, end], found \(offsetsValue.kindName)")
        }
        guard let begin = nonNegativeInt(offs[0]), let end = nonNegativeInt(offs[1]) else {
            throw bad("data_offsets must hold two non-negative integers, found \(offs[0].kindName) and \(offs[1].kindName)")
        }
        guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] end before they begin") }
        guard let bytes = checkedByteCount(shape: shape, dtype: dtype) else {
            throw bad("shape \(shape) x \(dtype.byteSize) bytes overflows a 64-bit byte count")
        }
        guard bytes == end - begin else {
            throw bad("shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets [\(begin), \(end)] "
                + "span \(end - begin)")
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    private static func nonNegativeInt(_ v: JSONValue) -> Int? {
        if case .integer(let i) = v, i >= 0 { return Int(i) }
        return nil
    }
}
