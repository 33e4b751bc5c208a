import CSquintKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a file so that the destination either keeps what it had or holds the complete new file:
/// data goes to a hidden temporary file in the destination's folder, is fsynced, then renamed over
/// the destination. Used by every writer (STYLE habit 13). Writes are buffered.
public final class AtomicFileWriter {
    public let destination: String
    public let temporaryPath: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferLimit = 8 << 20
    public private(set) var bytesWritten: Int = 0
    private var finished = false
    /// Bytes handed to the kernel so far, and the offset up to which writeback has been started.
    private var fileOffset = 0
    private var writebackStarted = 0
    /// Start writeback every 64 MiB, so the final fsync finds little left to write and writing a
    /// many-GB file streams at the disk's pace instead of stalling at the dirty-page limit.
    private let writebackStep = 64 << 20

    /// - Parameter overwrite: when false, an existing destination is an error (nothing is lost).
    public init(destination: String, overwrite: Bool) throws {
        self.destination = destination
        if !overwrite, access(destination, F_OK) == 0 { throw FormatError.exists(path: destination) }
        let dir: String
        let base: String
        if let slash = destination.lastIndex(of: "/") {
            dir = String(destination[..<slash]).isEmpty ? "/" : String(destination[..<slash])
            base = String(destination[destination.index(after: slash)...])
        } else {
            dir = "."; base = destination
        }
        temporaryPath = "\(dir)/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FormatError.io(path: destination, message: "cannot create temporary file: \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(bufferLimit)
    }

    deinit { if !finished { abandon() } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > bufferLimit { try flush() }
        if bytes.count >= bufferLimit {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
        bytesWritten += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
    public func write(_ string: String) throws { try write(Array(string.utf8)) }
    public func writeZeros(_ count: Int) throws { try write([UInt8](repeating: 0, count: count)) }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let msg = String(cString: strerror(errno))
                abandon()
                throw FormatError.io(path: destination, message: "write failed: \(msg)")
            }
            done += n
        }
        fileOffset += bytes.count
        if fileOffset - writebackStarted >= writebackStep {
            _ = sq_start_writeback(fd, Int64(writebackStarted), Int64(fileOffset - writebackStarted))
            writebackStarted = fileOffset
        }
    }

    /// Overwrites bytes already written, at `offset` from the start of the file. For headers whose
    /// fields (checksums) are only known once the data after them has streamed through (SQ4).
    public func patch(_ bytes: [UInt8], at offset: Int) throws {
        precondition(offset >= 0 && offset + bytes.count <= bytesWritten, "patch outside the written range")
        try flush()
        try bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = pwrite(fd, b.baseAddress! + done, b.count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    let msg = String(cString: strerror(errno))
                    abandon()
                    throw FormatError.io(path: destination, message: "write failed: \(msg)")
                }
                done += n
            }
        }
    }

    /// Flushes, fsyncs and renames into place. After this the destination holds the new file.
    public func commit() throws {
        try flush()
        if fsync(fd) != 0 {
            let msg = String(cString: strerror(errno)); abandon()
            throw FormatError.io(path: destination, message: "fsync failed: \(msg)")
        }
        close(fd); fd = -1
        let renamed = CommitGate.commit(to: destination) { rename(temporaryPath, destination) == 0 }
        if !renamed {
            let msg = String(cString: strerror(errno)); abandon()
            throw FormatError.io(path: destination, message: "rename failed: \(msg)")
        }
        finished = true
    }

    /// Removes the temporary file; the destination is untouched.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(temporaryPath)
        finished = true
    }

    /// Writes a small file (configs, logs) atomically in one call.
    public static func write(_ data: [UInt8], to path: String, overwrite: Bool) throws {
        let w = try AtomicFileWriter(destination: path, overwrite: overwrite)
        try w.write(data)
        try w.commit()
    }
}
