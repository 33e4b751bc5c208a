import CSquintKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `torch.save` state dict, zip or legacy container (Formats/PYTORCH.md), read without running any
/// Python: the pickle goes through an allowlist machine, tensor bytes stay in the file mapping.
/// Qwen-VL-Chat's official BF16 release is ten such `.bin` shards; `init(path:)` is what a sharded
/// reader calls per shard.
public final class TorchCheckpoint: TensorFile {
    public enum Container: String, Sendable { case zip, legacy }

    public let path: String
    public let container: Container
    /// Tensors in the pickle's dict order; `offset` is absolute in the file.
    public let tensors: [TensorInfo]
    public var metadata: [String: String] { [:] }
    public let file: MappedFile

    /// Byte size of each storage (by key), for bounds checks of strided views.
    private var storageRanges: [String: (offset: Int, bytes: Int)] = [:]
    private var index: [String: Int] = [:]
    private var archive: ZipArchive?

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let head = try file.slice(0, min(4, file.size), what: "file signature")
        var pickled: [(String, PickleTensor)]
        var ranges: [String: (offset: Int, bytes: Int)] = [:]
        if head.count == 4, head.elementsEqual([0x50, 0x4B, 0x03, 0x04]) {
            container = .zip
            let archive = try ZipArchive(file: file)
            self.archive = archive
            (pickled, ranges) = try TorchCheckpoint.loadZip(archive, path: path)
        } else if head.count == 4, head.elementsEqual([0x80, 0x02, 0x8A, 0x0A]) {
            container = .legacy
            (pickled, ranges) = try TorchCheckpoint.loadLegacy(file, path: path)
        } else if file.size < 4 {
            throw FormatError.truncated(path: path, what: "\(file.size)-byte file is too short for a torch checkpoint")
        } else {
            throw FormatError.invalid(path: path, what: "not a torch checkpoint (neither a zip archive nor a legacy pickle stream)")
        }
        storageRanges = ranges
        var infos: [TensorInfo] = []
        infos.reserveCapacity(pickled.count)
        for (name, t) in pickled {
            infos.append(try TorchCheckpoint.info(name: name, t, ranges: ranges, path: path))
        }
        tensors = infos
        for (i, t) in infos.enumerated() { index[t.name] = i }
    }

    // MARK: Containers

    private static func loadZip(_ z: ZipArchive, path: String) throws
        -> ([(String, PickleTensor)], [String: (offset: Int, bytes: Int)])
    {
        guard let first = z.entries.first, let slash = first.name.firstIndex(of: "/") else {
            throw FormatError.invalid(path: path, what: "zip: no '<archive>/data.pkl' entry")
        }
        let prefix = String(first.name[...slash])
        for e in z.entries where !e.name.hasPrefix(prefix) {
            throw FormatError.invalid(path: path, what: "zip: entry '\(e.name)' is outside the archive folder '\(prefix)'")
        }
        if let bo = z.entry(prefix + "byteorder") {
            let text = String(decoding: try z.file.slice(bo.dataOffset, bo.size, what: "byteorder"), as: UTF8.self)
            switch text {
            case "little": break
            case "big": throw FormatError.unsupported(path: path, what: "big-endian checkpoint (byteorder = big)")
            default: throw FormatError.invalid(path: path, what: "byteorder entry is '\(text.prefix(32))'")
            }
        }
        guard let pkl = z.entry(prefix + "data.pkl") else {
            throw FormatError.invalid(path: path, what: "zip: no '\(prefix)data.pkl' entry")
        }
        // A state dict's pickle is kilobytes to a few MB; a gigabyte one is an attack on memory.
        guard pkl.size <= 1 << 30 else {
            throw FormatError.unsupported(path: path, what: "data.pkl is \(pkl.size) bytes (limit 1 GiB)")
        }
        var u = Unpickler(path: path, bytes: try z.file.slice(pkl.dataOffset, pkl.size, what: "data.pkl"),
                          base: pkl.dataOffset, style: .zip)
        let root = try u.load()
        let items = try stateDict(root, path: path)
        var ranges: [String: (offset: Int, bytes: Int)] = [:]
        for (_, t) in items where ranges[t.storage.key] == nil {
            let st = t.storage
            guard let e = z.entry(prefix + "data/" + st.key) else {
                throw FormatError.invalid(path: path, what: "zip: storage '\(st.key)' has no entry '\(prefix)data/\(st.key)'")
            }
            let item = st.dtype?.byteSize ?? 1
            let (need, o) = st.numel.multipliedReportingOverflow(by: item)
            guard !o, need == e.size else {
                throw FormatError.invalid(path: path, what: "storage '\(st.key)' declares \(st.numel) x \(item) bytes but its entry holds \(e.size)")
            }
            ranges[st.key] = (e.dataOffset, e.size)
        }
        try checkConsistentStorages(items, path: path)
        return (items, ranges)
    }

    private static func loadLegacy(_ f: MappedFile, path: String) throws
        -> ([(String, PickleTensor)], [String: (offset: Int, bytes: Int)])
    {
        var u = Unpickler(path: path, bytes: f.bytes, style: .legacy)
        let magic = try u.load()
        let want: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]
        guard magic == .bigInt(want) else { throw FormatError.invalid(path: path, what: "legacy magic number mismatch") }
        guard try u.load() == .int(1001) else { throw FormatError.invalid(path: path, what: "legacy protocol version is not 1001") }
        guard case let .dict(sys) = try u.load() else { throw FormatError.invalid(path: path, what: "legacy sys_info is not a dict") }
        if let le = sys.get("little_endian"), le != .bool(true) {
            throw FormatError.unsupported(path: path, what: "big-endian checkpoint (little_endian = False)")
        }
        let items = try stateDict(try u.load(), path: path)
        guard case let .list(keyList) = try u.load() else { throw FormatError.invalid(path: path, what: "legacy storage key list is not a list") }
        var itemSize: [String: Int] = [:]
        var numel: [String: Int] = [:]
        for (_, t) in items {
            itemSize[t.storage.key] = t.storage.dtype?.byteSize ?? 1
            numel[t.storage.key] = t.storage.numel
        }
        var pos = u.pos
        var ranges: [String: (offset: Int, bytes: Int)] = [:]
        var seen = Set<String>()
        for k in keyList.items {
            guard case let .string(key) = k else { throw FormatError.invalid(path: path, what: "legacy storage key is a \(k.kindName)") }
            guard seen.insert(key).inserted else { throw FormatError.invalid(path: path, what: "legacy storage '\(key)' listed twice") }
            // Without a referencing tensor the element size is unknown and every later storage
            // would be misplaced; torch lists only storages the pickle referenced.
            guard let size = itemSize[key] else {
                throw FormatError.invalid(path: path, what: "legacy storage '\(key)' is listed but no tensor uses it")
            }
            let count = try f.readLE(UInt64.self, at: pos, what: "element count of storage '\(key)'")
            guard count <= UInt64(Int.max / size) else {
                throw FormatError.invalid(path: path, what: "storage '\(key)' claims \(count) elements")
            }
            let bytes = Int(count) * size
            _ = try f.slice(pos + 8, bytes, what: "data of storage '\(key)'")
            if let n = numel[key], n != Int(count) {
                throw FormatError.invalid(path: path, what: "storage '\(key)' holds \(count) elements but the pickle says \(n)")
            }
            ranges[key] = (pos + 8, bytes)
            pos += 8 + bytes
        }
        for key in numel.keys where ranges[key] == nil {
            throw FormatError.invalid(path: path, what: "storage '\(key)' is referenced but not in the storage list")
        }
        try checkConsistentStorages(items, path: path)
        return (items, ranges)
    }

    /// One storage key must always name the same storage type and size.
    private static func checkConsistentStorages(_ items: [(String, PickleTensor)], path: String) throws {
        var seen: [String: PickleStorage] = [:]
        for (name, t) in items {
            if let s = seen[t.storage.key], s != t.storage {
                throw FormatError.invalid(path: path, what: "tensor '\(name)' refers to storage '\(t.storage.key)' with a different type or size")
            }
            seen[t.storage.key] = t.storage
        }
    }

    /// The root must be a dict of str -> tensor.
    private static func stateDict(_ root: PickleValue, path: String) throws -> [(String, PickleTensor)] {
        guard case let .dict(d) = root else {
            throw FormatError.unsupported(path: path, what: "the pickle holds a \(root.kindName), not a state dict")
        }
        var out: [(String, PickleTensor)] = []
        out.reserveCapacity(d.keys.count)
        for (k, v) in zip(d.keys, d.values) {
            guard case let .string(name) = k else { throw FormatError.unsupported(path: path, what: "state dict key is a \(k.kindName), not a string") }
            guard case let .tensor(t) = v else { throw FormatError.unsupported(path: path, what: "state dict entry '\(name)' is a \(v.kindName), not a tensor") }
            out.append((name, t))
        }
        return out
    }

    private static func info(name: String, _ t: PickleTensor, ranges: [String: (offset: Int, bytes: Int)],
                             path: String) throws -> TensorInfo {
        let bad = { (w: String) in FormatError.invalid(path: path, what: "tensor '\(name)': \(w)") }
        guard let r = ranges[t.storage.key] else { throw bad("storage '\(t.storage.key)' has no data") }
        let item = t.dtype.byteSize
        guard t.storageOffset >= 0 else { throw bad("negative storage offset \(t.storageOffset)") }
        guard t.shape.allSatisfy({ $0 >= 0 }) else { throw bad("negative size in \(t.shape)") }
        guard t.strides.allSatisfy({ $0 >= 0 }) else { throw bad("negative stride in \(t.strides)") }
        guard let byteCount = checkedByteCount(shape: t.shape, dtype: t.dtype) else { throw bad("size \(t.shape) overflows") }
        let storageElems = r.bytes / item
        if byteCount > 0 {
            // Last element reached: offset + sum((size-1)*stride), overflow-checked.
            var last = t.storageOffset
            for (s, st) in zip(t.shape, t.strides) {
                let (m, o1) = (s - 1).multipliedReportingOverflow(by: st)
                let (a, o2) = last.addingReportingOverflow(m)
                guard !o1, !o2 else { throw bad("size \(t.shape) x stride \(t.strides) overflows") }
                last = a
            }
            guard last < storageElems else {
                throw bad("view reaches element \(last) of a \(storageElems)-element storage '\(t.storage.key)'")
            }
        } else if t.storageOffset > storageElems {
            throw bad("storage offset \(t.storageOffset) is past the \(storageElems)-element storage")
        }
        // Contiguous when strides equal row-major strides (dims of size 1 may have any stride).
        var expect = 1
        var contiguous = true
        for (s, st) in zip(t.shape, t.strides).reversed() {
            if s != 1 && st != expect { contiguous = false }
            expect = expect &* s
        }
        if byteCount == 0 { contiguous = true }
        return TensorInfo(name: name, dtype: t.dtype, shape: t.shape, file: path,
                          offset: r.offset + t.storageOffset * item, byteCount: byteCount,
                          strides: contiguous ? nil : t.strides, storageKey: t.storage.key)
    }

    // MARK: Access

    /// Largest gathered copy allowed for a broadcast view beyond 4x its storage (Formats/PYTORCH.md §3.4).
    public static let maxExpandedBytes = 256 << 20

    /// The most one view may materialise from a file of `fileSize` bytes with a `storageBytes`-byte
    /// storage: 4x the storage, or beyond that a broadcast up to `maxExpandedBytes` but never more than
    /// 1 MiB + 16x the file, so a small file never asks for much more memory than it holds (the fuzzer
    /// found a 694-byte checkpoint materialising 3.5 MB).
    static func maxViewBytes(storageBytes: Int, fileSize: Int) -> Int {
        let fileBound = (1 << 20) + fileSize.multipliedReportingOverflow(by: 16).partialValue
        return max(storageBytes.multipliedReportingOverflow(by: 4).partialValue, min(maxExpandedBytes, max(0, fileBound)))
    }

    /// Contiguous row-major bytes of a tensor: zero-copy from the mapping, or a gathered copy for
    /// strided views (transposes, step slices), bounds-checked against its storage.
    public func view(_ name: String) throws -> TensorView {
        guard let i = index[name] else { throw FormatError.missingTensor(path: path, name: name) }
        let t = tensors[i]
        guard let strides = t.strides else {
            return TensorView(info: t, bytes: try file.slice(t.offset, t.byteCount, what: "tensor '\(name)'"), owner: file)
        }
        guard let key = t.storageKey, let r = storageRanges[key] else { throw FormatError.missingTensor(path: path, name: name) }
        let storage = try file.slice(r.offset, r.bytes, what: "storage of '\(name)'")
        let item = t.dtype.byteSize
        let start = (t.offset - r.offset) / item // storage offset in elements
        // Views never need more bytes than their storage, except broadcasts (stride 0, `expand`):
        // cap those so a hostile [2^20, 2^20] view of one element cannot ask for a terabyte.
        guard t.byteCount <= Self.maxViewBytes(storageBytes: r.bytes, fileSize: file.size) else {
            throw FormatError.unsupported(path: path, what: "tensor '\(name)' would materialise \(t.byteCount) bytes from a \(r.bytes)-byte storage (broadcast view too large)")
        }
        let copy = GatheredBytes(count: t.byteCount)
        let n = t.elementCount
        let dims = t.shape.count
        var idx = [Int](repeating: 0, count: dims)
        var src = start
        for k in 0..<n {
            // Checked once more here: init already proved the last element is in range.
            let so = src * item
            guard so >= 0, so + item <= storage.count else {
                throw FormatError.invalid(path: path, what: "tensor '\(name)' element \(k) is outside its storage")
            }
            (copy.pointer + k * item).copyMemory(from: storage.baseAddress! + so, byteCount: item)
            var d = dims - 1
            while d >= 0 {
                idx[d] += 1; src += strides[d]
                if idx[d] < t.shape[d] { break }
                src -= strides[d] * t.shape[d]; idx[d] = 0; d -= 1
            }
        }
        var info = t
        info.strides = nil
        return TensorView(info: info, bytes: UnsafeRawBufferPointer(start: copy.pointer, count: t.byteCount), owner: copy)
    }

    /// Whether the file carries checksums: a zip archive has a CRC-32 per entry (Formats/PYTORCH.md §1);
    /// a legacy pickle stream has none.
    public var hasChecksums: Bool { archive != nil }

    /// Checks every zip entry's CRC-32 against the central directory, as Python's
    /// `zipfile.testzip()` does. Streamed: entries are read in file order with `pread` through one
    /// buffer of `checksumChunk` bytes (at disk or page-cache speed, memory flat whatever the checkpoint size), not
    /// through the mapping. The first mismatch, in file order, is reported with the entry's name.
    /// `progress(bytesDone, bytesTotal)` is called between chunks. Legacy files: nothing to check.
    /// The CRC buffer: 4 MiB, or the largest entry when smaller, so a small file never asks for more
    /// memory than it holds (the fuzzer's allocation bound found a 1.6 KB checkpoint allocating 4 MiB).
    static func checksumChunk(largestEntry: Int) -> Int { max(64, min(4 << 20, largestEntry)) }

    public func verifyChecksums(progress: ((Int, Int) -> Void)? = nil) throws {
        guard let zip = archive else { return }
        let entries = zip.entries.sorted { $0.dataOffset < $1.dataOffset }
        let total = entries.reduce(0) { $0 + $1.size }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError.io(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let chunk = Self.checksumChunk(largestEntry: entries.map(\.size).max() ?? 0)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var done = 0
        for e in entries {
            // The reader checked every entry lies inside the file; a file shrunk since is reported as truncated.
            var crc: UInt32 = 0
            var at = 0
            while at < e.size {
                let n = pread(fd, buffer, min(chunk, e.size - at), off_t(e.dataOffset + at))
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw FormatError.io(path: path, message: "cannot read: \(String(cString: strerror(errno)))") }
                if n == 0 { throw FormatError.truncated(path: path, what: "zip entry '\(e.name)' ends early") }
                crc = sq_crc32(crc, buffer, n)
                at += n; done += n
                progress?(done, total)
            }
            guard crc == e.crc32 else {
                throw FormatError.invalid(path: path, what: "zip entry '\(e.name)' CRC-32 is \(SQ4.hex8(crc)), "
                    + "the directory says \(SQ4.hex8(e.crc32)) (the file is corrupt)")
            }
        }
    }
}

/// Owner of a materialised contiguous copy of a strided tensor.
final class GatheredBytes {
    let pointer: UnsafeMutableRawPointer
    init(count: Int) { pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64) }
    deinit { pointer.deallocate() }
}
