import CSquintKernels

/// ggml blocks to float32 (Formats/GGUF.md §5), bit-identical to the `gguf` Python package's
/// `gguf.quants.dequantize` 0.19.0. Each type has a scalar reference and an AVX2 kernel that agree
/// bit for bit (no FMA anywhere: the reference rounds after every multiply).
public enum GGUFDequant {
    public enum Kernel: Sendable {
        /// The fastest kernel this CPU runs.
        case best
        /// The plain C reference.
        case scalar
        /// AVX2 (fails on a CPU without it).
        case avx2
    }

    /// True when the AVX2 kernels can run here.
    public static var hasAVX2: Bool { sq_has_avx2_fma() != 0 }

    /// Dequantises whole blocks: `blocks.count` must be a multiple of the type's block bytes and
    /// `out.count` equal to blocks x block size. Mismatches are programmer errors (preconditions):
    /// tensor sizes come from a validated `GGUFTensorInfo`.
    public static func dequantize(_ type: GGMLType, blocks: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>,
                                  kernel: Kernel = .best) {
        precondition(blocks.count % type.blockBytes == 0, "\(type.name): \(blocks.count) bytes is not whole blocks")
        let nBlocks = blocks.count / type.blockBytes
        precondition(out.count == nBlocks * type.blockSize, "\(type.name): output holds \(out.count) floats, need \(nBlocks * type.blockSize)")
        guard nBlocks > 0, let src = blocks.baseAddress, let dst = out.baseAddress else { return }
        let rc: Int32
        switch kernel {
        case .best: rc = sq_gguf_dequant(Int32(type.rawValue), src, dst, nBlocks)
        case .scalar: rc = sq_gguf_dequant_level(Int32(type.rawValue), src, dst, nBlocks, SQ_GGUF_SCALAR)
        case .avx2: rc = sq_gguf_dequant_level(Int32(type.rawValue), src, dst, nBlocks, SQ_GGUF_AVX2)
        }
        precondition(rc == 0, "\(type.name): kernel \(kernel) unavailable on this CPU")
    }

    /// The blocks' values as a new array.
    public static func dequantize(_ type: GGMLType, blocks: UnsafeRawBufferPointer, kernel: Kernel = .best) -> [Float] {
        let n = blocks.count / type.blockBytes * type.blockSize
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            dequantize(type, blocks: blocks, into: buf, kernel: kernel)   // (whole blocks: a precondition there)
            count = n
        }
    }

    /// Rows `rows` (of `ne[0]` elements each) of a tensor, e.g. a few token embeddings without
    /// dequantising the whole table. Throws when the range is outside the tensor.
    public static func dequantizeRows(_ info: GGUFTensorInfo, of file: GGUFFile, rows: Range<Int>, kernel: Kernel = .best) throws -> [Float] {
        guard rows.lowerBound >= 0, rows.upperBound <= info.rowCount else {
            throw FormatError.invalid(path: file.path, what: "rows \(rows) of tensor '\(info.name)', which has \(info.rowCount)")
        }
        let all = try file.bytes(of: info)
        let part = UnsafeRawBufferPointer(rebasing: all[(rows.lowerBound * info.rowBytes)..<(rows.upperBound * info.rowBytes)])
        return dequantize(info.type, blocks: part, kernel: kernel)
    }

    /// A whole tensor of `file` as float32, in row-major order (`info.shape`).
    public static func dequantize(_ info: GGUFTensorInfo, of file: GGUFFile, kernel: Kernel = .best) throws -> [Float] {
        dequantize(info.type, blocks: try file.bytes(of: info), kernel: kernel)
    }
}

/// float32 to ggml blocks with llama.cpp's reference round-to-nearest quantisers (Formats/GGUF.md
/// §5.8), bit-identical to gguf-py's `quantize` for Q8_0, Q4_0 and Q4_1.
public enum GGUFQuantize {
    /// Types the quantisers write.
    public static let types: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q6_K]

    /// Encodes `values` (a multiple of the type's block size) as blocks. Returns nil for a type not in
    /// `types` or a count that is not whole blocks.
    public static func quantize(_ type: GGMLType, _ values: UnsafeBufferPointer<Float>) -> [UInt8]? {
        guard types.contains(type), values.count % type.blockSize == 0 else { return nil }
        let nBlocks = values.count / type.blockSize
        let bytes = nBlocks * type.blockBytes
        guard nBlocks > 0, let src = values.baseAddress else { return [] }
        var rc: Int32 = 0
        let out = [UInt8](unsafeUninitializedCapacity: bytes) { buf, count in
            rc = sq_gguf_quantize(Int32(type.rawValue), src, buf.baseAddress, nBlocks)
            count = bytes
        }
        return rc == 0 ? out : nil
    }

    public static func quantize(_ type: GGMLType, _ values: [Float]) -> [UInt8]? {
        values.withUnsafeBufferPointer { quantize(type, $0) }
    }
}
