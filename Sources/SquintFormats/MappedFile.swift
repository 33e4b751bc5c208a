#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file. Tensor data is read in place from here (zero copy);
/// every access goes through a bounds check so a lying header cannot read past the end.
public final class MappedFile {
    public let path: String
    public let size: Int
    /// Start of the mapping; nil for an empty file (mmap of length 0 is an error).
    public let base: UnsafeRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError.io(path: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw FormatError.io(path: path, message: String(cString: strerror(errno)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FormatError.io(path: path, message: "not a regular file")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
        } else {
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else {
                throw FormatError.io(path: path, message: "mmap failed: \(String(cString: strerror(errno)))")
            }
            base = UnsafeRawPointer(p)
        }
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// `count` bytes at `offset`, or `.truncated` naming `what` when the range leaves the file.
    public func slice(_ offset: Int, _ count: Int, what: @autoclosure () -> String) throws
        -> UnsafeRawBufferPointer
    {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw FormatError.truncated(
                path: path, what: "\(what()) needs bytes \(offset)..<\(offset &+ count) of a \(size)-byte file")
        }
        if count == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base! + offset, count: count)
    }

    /// Little-endian integer at `offset` (bounds-checked, unaligned-safe).
    public func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int, what: @autoclosure () -> String) throws -> T {
        let b = try slice(offset, MemoryLayout<T>.size, what: what())
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }
}
