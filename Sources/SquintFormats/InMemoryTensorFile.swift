/// A `TensorFile` whose tensors live in memory: synthetic checkpoints built without touching disk,
/// and test doubles for the model binder. Each tensor owns one stable allocation, so views handed
/// out stay valid as long as the view (which holds its storage) is alive.
public final class InMemoryTensorFile: TensorFile {
    /// One tensor's bytes; freed when the last view (or the file) lets go of it.
    final class Storage {
        let bytes: UnsafeMutableRawBufferPointer
        init(count: Int) {
            bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        }
        deinit { bytes.deallocate() }
    }

    public let path: String
    public private(set) var tensors: [TensorInfo] = []
    public var metadata: [String: String]
    private var storage: [String: (info: TensorInfo, bytes: Storage)] = [:]
    /// Tensors that live elsewhere (e.g. a mapped file), held by their views (`add(view:)`).
    private var external: [String: TensorView] = [:]

    /// `path` only labels errors and reports (nothing is read from or written to it).
    public init(path: String = "<memory>", metadata: [String: String] = [:]) {
        self.path = path
        self.metadata = metadata
    }

    /// Adds a tensor and lets `fill` write its bytes (exactly `byteCount` of them, zeroed first).
    /// Throws `FormatError.invalid` for a duplicate name or a shape whose byte count overflows.
    @discardableResult
    public func add(name: String, dtype: DType, shape: [Int],
                    fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> TensorInfo {
        guard storage[name] == nil && external[name] == nil else {
            throw FormatError.invalid(path: path, what: "duplicate tensor name '\(name)'")
        }
        guard let byteCount = checkedByteCount(shape: shape, dtype: dtype) else {
            throw FormatError.invalid(path: path, what: "tensor '\(name)': shape \(shape) overflows")
        }
        let s = Storage(count: byteCount)
        s.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        try fill(UnsafeMutableRawBufferPointer(rebasing: s.bytes[0..<byteCount]))
        let info = TensorInfo(name: name, dtype: dtype, shape: shape, file: path, offset: 0,
                              byteCount: byteCount)
        storage[name] = (info, s)
        tensors.append(info)
        return info
    }

    /// Adds a float32 tensor from values (count must equal the shape's element count).
    @discardableResult
    public func add(name: String, shape: [Int], f32 values: [Float]) throws -> TensorInfo {
        guard values.count == elementCount(shape) else {
            throw FormatError.invalid(path: path, what: "tensor '\(name)': \(values.count) values for shape \(shape)")
        }
        return try add(name: name, dtype: .f32, shape: shape) { dst in
            values.withUnsafeBytes { dst.copyMemory(from: $0) }
        }
    }

    /// Adds a tensor without copying it: the view (and so its owner, e.g. a file mapping) is kept,
    /// and `view(name)` hands out the same bytes under the same name.
    public func add(view v: TensorView) throws {
        guard storage[v.info.name] == nil && external[v.info.name] == nil else {
            throw FormatError.invalid(path: path, what: "duplicate tensor name '\(v.info.name)'")
        }
        external[v.info.name] = v
        tensors.append(v.info)
    }

    /// Removes a tensor (tests use this to build incomplete checkpoints).
    public func remove(_ name: String) {
        storage[name] = nil
        external[name] = nil
        tensors.removeAll { $0.name == name }
    }

    public func view(_ name: String) throws -> TensorView {
        if let v = external[name] { return v }
        guard let (info, s) = storage[name] else { throw FormatError.missingTensor(path: path, name: name) }
        return TensorView(info: info, bytes: UnsafeRawBufferPointer(rebasing: s.bytes[0..<info.byteCount]),
                          owner: s)
    }
}
