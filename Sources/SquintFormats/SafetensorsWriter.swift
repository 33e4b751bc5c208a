import CSquintKernels

/// Writes one `.safetensors` file with the layout of the Python `safetensors` library
/// (Formats/SAFETENSORS.md §5): tensors ordered by dtype (wide first) then name, compact header JSON,
/// spaces padding the header to a multiple of 8, data streamed in, atomic rename at the end.
///
/// Why match the reference byte for byte: a file Squint writes then reads identically in every other
/// tool, and the same input always gives the same bytes (STYLE habit 13), so outputs can be compared
/// by hash.
public struct SafetensorsWriter {
    /// One tensor to write; its bytes come later, from the data closure.
    public struct Tensor: Equatable, Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) {
            self.name = name; self.dtype = dtype; self.shape = shape
        }
        /// `product(shape) x dtype size`; nil when it overflows (refused by the writer's init).
        public var byteCount: Int? { checkedByteCount(shape: shape, dtype: dtype) }
    }

    /// Tensors in the order they are written (the reference layout), with data offsets relative to the
    /// data section: `[begin, end)`.
    public let layout: [(tensor: Tensor, begin: Int, end: Int)]
    public let metadata: [String: String]
    /// The complete header: JSON plus space padding (its length is `N`, a multiple of 8).
    public let header: [UInt8]
    /// Bytes of the data section (= sum of the tensors' byte counts).
    public var dataLength: Int { layout.last?.end ?? 0 }
    /// Size of the file this writes: `8 + N + dataLength`.
    public var fileSize: Int { 8 + header.count + dataLength }

    /// Order the reference library writes dtypes in (its dtype enum, descending).
    public static let dtypeWriteOrder: [DType] = [.u64, .i64, .f64, .f32, .u32, .i32, .bf16, .f16, .u16, .i16,
                                                  .f8e4m3, .f8e5m2, .i8, .u8, .bool]

    /// Checks the tensor list (names unique, non-empty, not `__metadata__`, no NUL; sizes fit) and fixes
    /// the layout. `path` only names the file in errors.
    public init(tensors: [Tensor], metadata: [String: String] = [:], path: String = "<safetensors writer>") throws {
        var seen = Set<String>()
        for t in tensors {
            guard !t.name.isEmpty, t.name != "__metadata__", !t.name.utf8.contains(0) else {
                throw FormatError.invalid(path: path, what: "cannot write a tensor named \"\(t.name)\"")
            }
            guard seen.insert(t.name).inserted else {
                throw FormatError.invalid(path: path, what: "tensor '\(t.name)' is given twice")
            }
            guard t.byteCount != nil else {
                throw FormatError.invalid(path: path, what: "tensor '\(t.name)': shape \(t.shape) has a negative "
                    + "dimension or overflows a 64-bit byte count")
            }
        }
        for k in metadata.keys where k.utf8.contains(0) {
            throw FormatError.invalid(path: path, what: "metadata key \"\(k)\" contains U+0000")
        }
        let rank = Dictionary(uniqueKeysWithValues: Self.dtypeWriteOrder.enumerated().map { ($1, $0) })
        let ordered = tensors.sorted {
            rank[$0.dtype]! != rank[$1.dtype]! ? rank[$0.dtype]! < rank[$1.dtype]!
                : $0.name.utf8.lexicographicallyPrecedes($1.name.utf8)
        }
        var offset = 0
        var layout: [(tensor: Tensor, begin: Int, end: Int)] = []
        for t in ordered {
            let (end, o) = offset.addingReportingOverflow(t.byteCount!)
            guard !o else { throw FormatError.invalid(path: path, what: "total data size overflows 64 bits") }
            layout.append((t, offset, end))
            offset = end
        }
        self.layout = layout
        self.metadata = metadata

        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                .map { "\(JSONText.quoted($0)):\(JSONText.quoted(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        for (t, b, e) in layout {
            if !first { json += "," }
            first = false
            json += "\(JSONText.quoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":["
                + t.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(b),\(e)]}"
        }
        json += "}"
        var header = Array(json.utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        self.header = header
    }

    /// Writes the file. `data` is called once per tensor, in `layout` order, and must pass exactly the
    /// tensor's bytes to the sink (in as many pieces as it likes, so large tensors can be converted
    /// and streamed chunk by chunk). On any error the destination is left untouched.
    public func write(to path: String, overwrite: Bool,
                      data: (Tensor, TensorSink) throws -> Void) throws {
        let out = try AtomicFileWriter(destination: path, overwrite: overwrite)
        do {
            var n = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &n) { try out.write($0) }
            try out.write(header)
            for (t, b, e) in layout {
                let sink = TensorSink(out: out, tensor: t, expected: e - b, path: path)
                try data(t, sink)
                guard sink.remaining == 0 else {
                    throw FormatError.invalid(path: path, what: "tensor '\(t.name)' needs \(e - b) bytes but "
                        + "\(e - b - sink.remaining) were given")
                }
            }
            try out.commit()
        } catch {
            out.abandon()
            throw error
        }
    }

    /// Convenience: each tensor's bytes as one array.
    public func write(to path: String, overwrite: Bool, bytes: (Tensor) throws -> [UInt8]) throws {
        try write(to: path, overwrite: overwrite) { t, sink in try sink.write(try bytes(t)) }
    }
}

/// Receives one tensor's bytes for `SafetensorsWriter`; refuses more bytes than the tensor holds.
public final class TensorSink {
    let out: AtomicFileWriter
    public let tensor: SafetensorsWriter.Tensor
    public private(set) var remaining: Int
    let path: String
    /// Running CRC-32 of the bytes given, when the writer asked for one (SQ4 tensor checksums).
    var crc: UInt32? = nil

    init(out: AtomicFileWriter, tensor: SafetensorsWriter.Tensor, expected: Int, path: String) {
        self.out = out; self.tensor = tensor; self.remaining = expected; self.path = path
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count <= remaining else {
            throw FormatError.invalid(path: path, what: "tensor '\(tensor.name)' was given more bytes than its shape "
                + "\(tensor.shape) of \(tensor.dtype.rawValue) holds")
        }
        try out.write(bytes)
        if let c = crc, bytes.count > 0 { crc = sq_crc32(c, bytes.baseAddress!, bytes.count) }
        remaining -= bytes.count
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
}

/// JSON string literals, escaped the way the writers we imitate do.
public enum JSONText {
    /// serde_json style (the Rust safetensors library): only `"`, `\` and control bytes are escaped,
    /// non-ASCII stays raw UTF-8.
    public static func quoted(_ s: String) -> String { escape(s, asciiOnly: false) }

    /// Python `json.dumps` style with `ensure_ascii=True` (transformers' index files, AutoGPTQ's
    /// configs): as above, but every scalar outside 0x20...0x7E is written as `\uXXXX` (a surrogate
    /// pair above U+FFFF), lowercase hex.
    public static func quotedASCII(_ s: String) -> String { escape(s, asciiOnly: true) }

    static func escape(_ s: String, asciiOnly: Bool) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (asciiOnly && u.value > 0x7E) {
                    for unit in String(u).utf16 { out += "\\u" + hex4(UInt32(unit)) }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    private static func hex4(_ v: UInt32) -> String { let h = String(v, radix: 16); return String(repeating: "0", count: 4 - h.count) + h }
}
