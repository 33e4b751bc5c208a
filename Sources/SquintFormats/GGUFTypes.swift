/// The ggml element types Squint reads from GGUF files (Formats/GGUF.md §5). Raw values are the ids
/// stored in a tensor info. Every other id is refused by the reader, by name when ggml defines it.
public enum GGMLType: UInt32, CaseIterable, Sendable, Codable {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q2_K = 10
    case q3_K = 11
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// ggml's spelling ("Q4_K", "BF16").
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }

    public init?(name: String) {
        guard let t = GGMLType.allCases.first(where: { $0.name == name.uppercased() || $0.name.uppercased() == name.uppercased() }) else { return nil }
        self = t
    }

    /// Elements per block (B in the spec): 1 for the plain types.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block (S in the spec).
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q8_0: return 34
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        }
    }

    /// Storage bits per weight, scales included (Q4_K: 4.5).
    public var bitsPerWeight: Double { Double(blockBytes * 8) / Double(blockSize) }

    public var isQuantized: Bool { blockSize > 1 }

    /// The safetensors dtype holding the same bits, for the plain types.
    public var plainDType: DType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }

    /// Names of the ggml type ids Squint does not read, so a refusal can say what the file holds.
    public static func knownName(of id: UInt32) -> String? {
        if let t = GGMLType(rawValue: id) { return t.name }
        let others: [UInt32: String] = [
            4: "Q4_2 (retired)", 5: "Q4_3 (retired)", 9: "Q8_1", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
            18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8",
            25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 31: "Q4_0_4_4 (retired)",
            32: "Q4_0_4_8 (retired)", 33: "Q4_0_8_8 (retired)", 34: "TQ1_0", 35: "TQ2_0", 36: "IQ4_NL_4_4 (retired)",
            37: "IQ4_NL_4_8 (retired)", 38: "IQ4_NL_8_8 (retired)", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0",
        ]
        return others[id]
    }
}

/// Type ids of GGUF metadata values (Formats/GGUF.md §2).
public enum GGUFValueType: UInt32, CaseIterable, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    public var name: String {
        switch self {
        case .uint8: return "UINT8"
        case .int8: return "INT8"
        case .uint16: return "UINT16"
        case .int16: return "INT16"
        case .uint32: return "UINT32"
        case .int32: return "INT32"
        case .float32: return "FLOAT32"
        case .bool: return "BOOL"
        case .string: return "STRING"
        case .array: return "ARRAY"
        case .uint64: return "UINT64"
        case .int64: return "INT64"
        case .float64: return "FLOAT64"
        }
    }

    /// The fewest bytes one value of this type takes in a file (strings: the length field; arrays:
    /// element type and count). Used to refuse counts that cannot fit before allocating.
    var minimumEncodedSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// One metadata value. Arrays keep their declared element type, so an empty array still says what
/// it holds, and nested arrays are arrays of `.array` values.
public indirect enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array(GGUFValueType, [GGUFValue])

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        case .array: return .array
        }
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }

    /// Any integer value that fits in `Int` (a UINT64 above Int.max gives nil).
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// FLOAT32 / FLOAT64 (widened exactly), or an integer converted.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }

    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }

    public var array: [GGUFValue]? { if case .array(_, let a) = self { return a }; return nil }

    /// An array of strings (nil when this is not an array or an element is not a string).
    public var strings: [String]? {
        guard case .array(.string, let a) = self else { return nil }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for v in a { guard case .string(let s) = v else { return nil }; out.append(s) }
        return out
    }

    public var ints: [Int]? {
        guard case .array(_, let a) = self else { return nil }
        var out: [Int] = []
        out.reserveCapacity(a.count)
        for v in a { guard let i = v.int else { return nil }; out.append(i) }
        return out
    }

    public var doubles: [Double]? {
        guard case .array(_, let a) = self else { return nil }
        var out: [Double] = []
        out.reserveCapacity(a.count)
        for v in a { guard let d = v.double else { return nil }; out.append(d) }
        return out
    }

    /// A one-line rendering for people: scalars as is, arrays summarised past `limit` elements.
    public func summary(limit: Int = 8) -> String {
        switch self {
        case .uint8(let v): return "\(v)"
        case .int8(let v): return "\(v)"
        case .uint16(let v): return "\(v)"
        case .int16(let v): return "\(v)"
        case .uint32(let v): return "\(v)"
        case .int32(let v): return "\(v)"
        case .uint64(let v): return "\(v)"
        case .int64(let v): return "\(v)"
        case .float32(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .bool(let v): return "\(v)"
        case .string(let s):
            let shown = s.count > 80 ? String(s.prefix(77)) + "..." : s
            let escaped = shown.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\"\(escaped)\""
        case .array(let t, let a):
            let items = a.prefix(limit).map { $0.summary(limit: limit) }.joined(separator: ", ")
            let more = a.count > limit ? ", ... (\(a.count) \(t.name) values)" : ""
            return "[\(items)\(more)]"
        }
    }
}

/// One key/value pair of a GGUF file, in file order.
public struct GGUFKeyValue: Equatable, Sendable {
    public var key: String
    public var value: GGUFValue
    public init(key: String, value: GGUFValue) { self.key = key; self.value = value }
}

/// One tensor of a GGUF file as its info declares it (Formats/GGUF.md §3), validated.
public struct GGUFTensorInfo: Equatable, Sendable {
    public var name: String
    public var type: GGMLType
    /// Dimensions in ggml order, fastest-varying first: `ne[0]` is the row length.
    public var ne: [Int]
    /// Absolute byte offset in the file of the tensor's first byte.
    public var offset: Int
    /// Bytes the tensor occupies: numel / blockSize * blockBytes.
    public var byteCount: Int
    public var elementCount: Int

    /// Row-major ("numpy", PyTorch) shape: `ne` reversed. A Linear weight [out, in] has ne [in, out].
    public var shape: [Int] { ne.reversed() }
    /// Number of rows of `ne[0]` elements.
    public var rowCount: Int { ne[0] == 0 ? 0 : elementCount / ne[0] }
    /// Bytes of one row.
    public var rowBytes: Int { ne[0] / type.blockSize * type.blockBytes }
}
