import CSquintKernels

/// Writes a state dict as a torch zip checkpoint that `torch.load(weights_only=True)` accepts, in
/// the layout torch 2.13 writes (Formats/PYTORCH.md §5): stored entries aligned to 64 bytes, CRC-32
/// computed while streaming, ZIP64 only when needed. Used by `synth` to produce a Qwen-VL-Chat-shaped
/// BF16 release (19.3 GB) without holding a tensor twice: bytes are pulled tensor by tensor.
/// Deterministic (same input, same bytes) and atomic (AtomicFileWriter).
public struct TorchZipWriter {
    /// One tensor of the state dict: written as its own storage, contiguous row-major.
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int] // any rank; [] is a 0-d scalar
        public init(name: String, dtype: DType, shape: [Int]) {
            self.name = name; self.dtype = dtype; self.shape = shape
        }
    }

    /// When to write ZIP64 structures. `.auto` does so only past the classic limits; `.always`
    /// exists so tests can exercise the ZIP64 path without writing 4 GiB.
    public enum Zip64Mode: Sendable { case auto, always }

    public var entries: [Entry]
    public var zip64: Zip64Mode

    public init(entries: [Entry], zip64: Zip64Mode = .auto) {
        self.entries = entries; self.zip64 = zip64
    }

    /// Writes the checkpoint. `provider(i, sink)` must pass tensor `i`'s contiguous little-endian
    /// bytes to `sink`, in one or more pieces adding up to exactly numel x itemsize.
    public func write(to destination: String, overwrite: Bool = false,
                      provider: (_ index: Int, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        var names = Set<String>()
        var sizes: [Int] = []
        for e in entries {
            guard names.insert(e.name).inserted else {
                throw FormatError.invalid(path: destination, what: "duplicate tensor name '\(e.name)'")
            }
            guard let n = checkedByteCount(shape: e.shape, dtype: e.dtype) else {
                throw FormatError.invalid(path: destination, what: "tensor '\(e.name)' shape \(e.shape) overflows")
            }
            sizes.append(n)
        }
        let stem = TorchZipWriter.archiveName(for: destination)
        let out = try AtomicFileWriter(destination: destination, overwrite: overwrite)
        var zw = ZipStreamWriter(out: out, forceZip64: zip64 == .always)
        try zw.addSmall(stem + "/data.pkl", TorchZipWriter.pickle(entries))
        try zw.addSmall(stem + "/.format_version", Array("1".utf8))
        try zw.addSmall(stem + "/.storage_alignment", Array("64".utf8))
        try zw.addSmall(stem + "/byteorder", Array("little".utf8))
        for (i, size) in sizes.enumerated() {
            try zw.begin(stem + "/data/\(i)", size: size)
            try provider(i) { chunk in try zw.append(chunk, destination: destination, tensor: entries[i].name) }
            try zw.end(destination: destination, tensor: entries[i].name)
        }
        try zw.addSmall(stem + "/version", Array("3\n".utf8))
        try zw.finish()
        try out.commit()
    }

    /// torch names the archive folder after the file stem (`pytorch_model-00001-of-00010.bin` ->
    /// `pytorch_model-00001-of-00010`). Characters outside [A-Za-z0-9_.-] become `_`.
    static func archiveName(for path: String) -> String {
        var base = path.split(separator: "/").last.map(String.init) ?? "archive"
        if let dot = base.lastIndex(of: "."), dot != base.startIndex { base = String(base[..<dot]) }
        let ok = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
        let cleaned = String(base.map { ok.contains($0) ? $0 : "_" })
        return cleaned.isEmpty ? "archive" : cleaned
    }

    /// Legacy typed storage class for a dtype, or nil when torch uses UntypedStorage + _rebuild_tensor_v3.
    static func storageClass(_ d: DType) -> String? {
        switch d {
        case .bool: return "BoolStorage"
        case .u8: return "ByteStorage"
        case .i8: return "CharStorage"
        case .i16: return "ShortStorage"
        case .i32: return "IntStorage"
        case .i64: return "LongStorage"
        case .f16: return "HalfStorage"
        case .bf16: return "BFloat16Storage"
        case .f32: return "FloatStorage"
        case .f64: return "DoubleStorage"
        case .u16, .u32, .u64, .f8e4m3, .f8e5m2: return nil
        }
    }

    static func torchDTypeName(_ d: DType) -> String {
        switch d {
        case .bool: return "bool"
        case .u8: return "uint8"
        case .i8: return "int8"
        case .u16: return "uint16"
        case .i16: return "int16"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .u32: return "uint32"
        case .i32: return "int32"
        case .f32: return "float32"
        case .u64: return "uint64"
        case .i64: return "int64"
        case .f64: return "float64"
        case .f8e4m3: return "float8_e4m3fn"
        case .f8e5m2: return "float8_e5m2"
        }
    }

    /// data.pkl, protocol 2 (see Formats/PYTORCH.md §5).
    static func pickle(_ entries: [Entry]) -> [UInt8] {
        var p = PickleEmitter()
        p.op(0x80); p.byte(2) // PROTO 2
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52) // OrderedDict()
        for (i, e) in entries.enumerated() {
            if i % 1000 == 0 { p.op(0x28) } // MARK for a SETITEMS batch
            p.string(e.name)
            let cls = storageClass(e.dtype)
            p.global("torch._utils", cls == nil ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2")
            p.op(0x28) // MARK: arguments
            // persistent id ('storage', <type>, key, 'cpu', numel)
            p.op(0x28)
            p.string("storage")
            if let cls { p.global("torch", cls) } else { p.global("torch.storage", "UntypedStorage") }
            p.string(String(i)); p.string("cpu")
            let numel = e.shape.reduce(1, *)
            p.int(cls == nil ? numel * e.dtype.byteSize : numel)
            p.op(0x74); p.op(0x51) // TUPLE, BINPERSID
            p.int(0) // storage offset
            p.intTuple(e.shape)
            var strides = [Int](repeating: 1, count: e.shape.count)
            var acc = 1
            for d in stride(from: e.shape.count - 1, through: 0, by: -1) { strides[d] = acc; acc *= e.shape[d] }
            p.intTuple(strides)
            p.op(0x89) // requires_grad False
            p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52) // backward_hooks
            if cls == nil { p.global("torch", torchDTypeName(e.dtype)) }
            p.op(0x74); p.op(0x52) // TUPLE, REDUCE
            if i % 1000 == 999 || i == entries.count - 1 { p.op(0x75) } // SETITEMS
        }
        p.op(0x2E) // STOP
        return p.bytes
    }
}

/// Minimal protocol-2 pickle emitter for the opcodes above.
struct PickleEmitter {
    var bytes: [UInt8] = []
    mutating func op(_ o: UInt8) { bytes.append(o) }
    mutating func byte(_ b: UInt8) { bytes.append(b) }
    mutating func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func global(_ module: String, _ name: String) {
        op(0x63); bytes.append(contentsOf: module.utf8); byte(0x0A); bytes.append(contentsOf: name.utf8); byte(0x0A)
    }
    mutating func string(_ s: String) { op(0x58); le(UInt32(s.utf8.count)); bytes.append(contentsOf: s.utf8) }
    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 { op(0x4B); byte(UInt8(v)) }
        else if v >= 0 && v < 65536 { op(0x4D); le(UInt16(v)) }
        else if v >= Int(Int32.min) && v <= Int(Int32.max) { op(0x4A); le(Int32(v)) }
        else {
            // LONG1: minimal two's complement little-endian
            var b: [UInt8] = []
            var x = v
            repeat { b.append(UInt8(truncatingIfNeeded: x)); x >>= 8 } while !((x == 0 && b.last! & 0x80 == 0) || (x == -1 && b.last! & 0x80 != 0))
            op(0x8A); byte(UInt8(b.count)); bytes.append(contentsOf: b)
        }
    }
    mutating func intTuple(_ t: [Int]) {
        switch t.count {
        case 0: op(0x29)
        case 1: int(t[0]); op(0x85)
        case 2: int(t[0]); int(t[1]); op(0x86)
        case 3: int(t[0]); int(t[1]); int(t[2]); op(0x87)
        default: op(0x28); for v in t { int(v) }; op(0x74)
        }
    }
}

/// Streams stored zip entries with data descriptors (flag bit 3), as torch's writer does, and the
/// central directory at the end. Entry data starts on 64-byte boundaries ("FB" padding field).
struct ZipStreamWriter {
    struct Record { var name: [UInt8]; var offset: Int; var size: Int; var crc: UInt32; var zip64: Bool }
    let out: AtomicFileWriter
    let forceZip64: Bool
    var records: [Record] = []
    var pos = 0
    var current: (name: [UInt8], offset: Int, size: Int, written: Int, crc: UInt32, zip64: Bool)?

    init(out: AtomicFileWriter, forceZip64: Bool) { self.out = out; self.forceZip64 = forceZip64 }

    private mutating func emit(_ b: [UInt8]) throws { try out.write(b); pos += b.count }

    mutating func begin(_ name: String, size: Int) throws {
        let n = Array(name.utf8)
        let zip64 = forceZip64 || size >= 0xFFFF_FFFF
        var h = ByteBuf()
        h.u32(0x0403_4b50); h.u16(zip64 ? 45 : 20); h.u16(0x0808); h.u16(0); h.u16(0); h.u16(0)
        h.u32(0)
        if zip64 { h.u32(0xFFFF_FFFF); h.u32(0xFFFF_FFFF) } else { h.u32(0); h.u32(0) }
        var extra = ByteBuf()
        if zip64 { extra.u16(1); extra.u16(16); extra.u64(0); extra.u64(0) } // sizes in the descriptor
        // Pad with an "FB" field so data lands on a 64-byte boundary.
        let before = pos + 30 + n.count + extra.b.count + 4
        let pad = (64 - before % 64) % 64
        extra.u16(0x4246); extra.u16(UInt16(pad)); extra.b.append(contentsOf: [UInt8](repeating: 0x5A, count: pad))
        h.u16(UInt16(n.count)); h.u16(UInt16(extra.b.count))
        let offset = pos
        try emit(h.b + n + extra.b)
        current = (n, offset, size, 0, 0, zip64)
    }

    mutating func append(_ chunk: UnsafeRawBufferPointer, destination: String, tensor: String) throws {
        guard var c = current else { preconditionFailure("append outside an entry") }
        guard chunk.count <= c.size - c.written else {
            throw FormatError.invalid(path: destination, what: "provider gave more than \(c.size) bytes for tensor '\(tensor)'")
        }
        if chunk.count > 0 { c.crc = sq_crc32(c.crc, chunk.baseAddress, chunk.count) }
        c.written += chunk.count
        current = c
        try out.write(chunk); pos += chunk.count
    }

    mutating func end(destination: String, tensor: String) throws {
        guard let c = current else { preconditionFailure("end outside an entry") }
        guard c.written == c.size else {
            throw FormatError.invalid(path: destination, what: "provider gave \(c.written) of \(c.size) bytes for tensor '\(tensor)'")
        }
        var d = ByteBuf()
        d.u32(0x0807_4b50); d.u32(c.crc)
        if c.zip64 { d.u64(UInt64(c.size)); d.u64(UInt64(c.size)) } else { d.u32(UInt32(c.size)); d.u32(UInt32(c.size)) }
        try emit(d.b)
        records.append(Record(name: c.name, offset: c.offset, size: c.size, crc: c.crc, zip64: c.zip64))
        current = nil
    }

    mutating func addSmall(_ name: String, _ data: [UInt8]) throws {
        try begin(name, size: data.count)
        try data.withUnsafeBytes { try append($0, destination: out.destination, tensor: name) }
        try end(destination: out.destination, tensor: name)
    }

    mutating func finish() throws {
        let cdOffset = pos
        var cd = ByteBuf()
        for r in records {
            let bigSize = r.zip64 || r.size >= 0xFFFF_FFFF
            let bigOff = forceZip64 || r.offset >= 0xFFFF_FFFF
            var extra = ByteBuf()
            if bigSize || bigOff {
                extra.u16(1); extra.u16(UInt16((bigSize ? 16 : 0) + (bigOff ? 8 : 0)))
                if bigSize { extra.u64(UInt64(r.size)); extra.u64(UInt64(r.size)) }
                if bigOff { extra.u64(UInt64(r.offset)) }
            }
            let v: UInt16 = (bigSize || bigOff) ? 45 : 20
            cd.u32(0x0201_4b50); cd.u16(v); cd.u16(v); cd.u16(0x0808); cd.u16(0); cd.u16(0); cd.u16(0)
            cd.u32(r.crc)
            cd.u32(bigSize ? 0xFFFF_FFFF : UInt32(r.size)); cd.u32(bigSize ? 0xFFFF_FFFF : UInt32(r.size))
            cd.u16(UInt16(r.name.count)); cd.u16(UInt16(extra.b.count)); cd.u16(0); cd.u16(0); cd.u16(0)
            cd.u32(0); cd.u32(bigOff ? 0xFFFF_FFFF : UInt32(r.offset))
            cd.b += r.name; cd.b += extra.b
            if cd.b.count >= 1 << 20 { try emit(cd.b); cd.b.removeAll(keepingCapacity: true) }
        }
        try emit(cd.b)
        let cdSize = pos - cdOffset
        let needs64 = forceZip64 || records.count >= 0xFFFF || cdOffset >= 0xFFFF_FFFF || cdSize >= 0xFFFF_FFFF
        var e = ByteBuf()
        if needs64 {
            let rec = pos
            e.u32(0x0606_4b50); e.u64(44); e.u16(45); e.u16(45); e.u32(0); e.u32(0)
            e.u64(UInt64(records.count)); e.u64(UInt64(records.count)); e.u64(UInt64(cdSize)); e.u64(UInt64(cdOffset))
            e.u32(0x0706_4b50); e.u32(0); e.u64(UInt64(rec)); e.u32(1)
        }
        e.u32(0x0605_4b50); e.u16(0); e.u16(0)
        let cnt: UInt16 = needs64 ? 0xFFFF : UInt16(records.count)
        e.u16(cnt); e.u16(cnt)
        e.u32(needs64 ? 0xFFFF_FFFF : UInt32(cdSize)); e.u32(needs64 ? 0xFFFF_FFFF : UInt32(cdOffset)); e.u16(0)
        try emit(e.b)
    }
}

struct ByteBuf {
    var b: [UInt8] = []
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
}
