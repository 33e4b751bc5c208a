/// Element types of tensors in the checkpoints Squint reads and writes, spelled as safetensors spells
/// them (the spelling `inspect --json` reports for every format).
public enum DType: String, CaseIterable, Codable, Sendable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case u16 = "U16"
    case i16 = "I16"
    case f16 = "F16"
    case bf16 = "BF16"
    case u32 = "U32"
    case i32 = "I32"
    case f32 = "F32"
    case u64 = "U64"
    case i64 = "I64"
    case f64 = "F64"
    case f8e4m3 = "F8_E4M3"
    case f8e5m2 = "F8_E5M2"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .u16, .i16, .f16, .bf16: return 2
        case .u32, .i32, .f32: return 4
        case .u64, .i64, .f64: return 8
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }
}

/// Overflow-checked element count and byte length of a shape; nil when the product overflows `Int`
/// (a hostile header can claim any shape) or a dimension is negative.
public func checkedByteCount(shape: [Int], dtype: DType) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    let (b, o) = n.multipliedReportingOverflow(by: dtype.byteSize)
    return o ? nil : b
}

public func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }
