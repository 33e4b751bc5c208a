/// Where one tensor's bytes are, as declared by its checkpoint. Readers fill this from headers
/// only; no tensor data is touched to build it.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Path of the file holding the data (a shard, or the zip archive of a torch file).
    public var file: String
    /// Absolute byte offset in `file` of element 0 (storage offset already applied).
    public var offset: Int
    /// Bytes the tensor's elements occupy when contiguous: numel x dtype size.
    public var byteCount: Int
    /// Element strides when the stored layout is not contiguous row-major (torch views); nil when
    /// contiguous. Reading a strided tensor materialises a contiguous copy.
    public var strides: [Int]?
    /// Identifies the storage the bytes belong to, for tensors that share one (torch); nil otherwise.
    public var storageKey: String?

    public init(name: String, dtype: DType, shape: [Int], file: String, offset: Int, byteCount: Int,
                strides: [Int]? = nil, storageKey: String? = nil) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.file = file
        self.offset = offset; self.byteCount = byteCount; self.strides = strides
        self.storageKey = storageKey
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var isContiguous: Bool { strides == nil }
}

/// A tensor's bytes, contiguous and row-major. `bytes` stays valid while `owner` (the file mapping,
/// or a materialised copy) is alive; the view holds it.
public struct TensorView {
    public let info: TensorInfo
    public let bytes: UnsafeRawBufferPointer
    public let owner: AnyObject

    public init(info: TensorInfo, bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        self.info = info; self.bytes = bytes; self.owner = owner
    }
}

/// A file (or folder of shards) of named tensors. Implemented by the safetensors and torch readers,
/// by sharded-index readers that merge several, and by our Int4 file.
public protocol TensorFile: AnyObject {
    /// The path the user gave (file or folder).
    var path: String { get }
    /// Tensors in the order of the file (for shards: shard order, then file order).
    var tensors: [TensorInfo] { get }
    /// Free-form string metadata (safetensors `__metadata__`); empty when the format has none.
    var metadata: [String: String] { get }
    /// The tensor's bytes, zero-copy from the mapping when contiguous.
    func view(_ name: String) throws -> TensorView
    /// The named tensor's entry. A requirement (not only an extension) so readers' dictionary
    /// lookups are used through `any TensorFile`; the default is a linear scan.
    func info(_ name: String) -> TensorInfo?
}

extension TensorFile {
    public func info(_ name: String) -> TensorInfo? { tensors.first { $0.name == name } }
}
