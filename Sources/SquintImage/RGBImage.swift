#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSquintImageIO
import SquintFormats

/// An 8-bit RGB image, row-major, 3 bytes per pixel: the form Pillow's `convert("RGB")` gives and
/// the only form the Qwen-VL preprocessing needs.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// [height, width, 3] uint8, row-major (HWC).
    public var pixels: [UInt8]

    /// Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS (2 * 89,478,485 pixels) with
    /// DecompressionBombError. We use the same limit so that any image Pillow (and so the official
    /// pipeline) accepts, we accept too, while a tiny file declaring 60000x60000 pixels cannot make
    /// us allocate gigabytes. The check runs on the header, before any pixel buffer exists.
    public static let maxPixels: Int = 2 * 89_478_485

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3,
                     "RGBImage: \(pixels.count) bytes for \(width)x\(height)x3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A width x height image filled with one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        precondition(width >= 0 && height >= 0)
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { p[3 * i] = fill.0; p[3 * i + 1] = fill.1; p[3 * i + 2] = fill.2 }
        self.init(width: width, height: height, pixels: p)
    }

    /// The encoded formats we read, recognised by their first bytes.
    public enum Format: String, Sendable { case jpeg, png }

    /// Identifies JPEG/PNG by magic bytes (never by the file name), or nil.
    public static func detectFormat<C: Collection>(_ bytes: C) -> Format? where C.Element == UInt8 {
        let head = Array(bytes.prefix(8))
        if head.count >= 3, head[0] == 0xFF, head[1] == 0xD8, head[2] == 0xFF { return .jpeg }
        if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        return nil
    }

    /// Reads and decodes a JPEG or PNG file as Pillow's `Image.open(path).convert("RGB")` would.
    /// Throws ImageError naming the file: unreadable, not an image, truncated, corrupt, unsupported
    /// or too large.
    public static func load(path: String, maxPixels: Int = RGBImage.maxPixels) throws -> RGBImage {
        let bytes = try readWholeFile(path)
        return try decode(bytes, name: path, maxPixels: maxPixels)
    }

    /// Decodes an in-memory JPEG or PNG; `name` is used in error messages.
    public static func decode(_ bytes: [UInt8], name: String, maxPixels: Int = RGBImage.maxPixels) throws -> RGBImage {
        guard let format = detectFormat(bytes) else {
            throw ImageError.notAnImage(path: name, what: bytes.isEmpty ? "the file is empty"
                : "the first bytes are neither a JPEG nor a PNG signature" + otherFormatHint(bytes))
        }
        var result = sq_img_result()
        let limit = UInt64(max(0, maxPixels))
        let status: Int32 = bytes.withUnsafeBufferPointer { buf in
            switch format {
            case .jpeg: return sq_decode_jpeg(buf.baseAddress, buf.count, limit, &result)
            case .png: return sq_decode_png(buf.baseAddress, buf.count, limit, &result)
            }
        }
        let message = withUnsafeBytes(of: result.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let what = "\(format.rawValue): \(message)"
        switch sq_img_status(rawValue: UInt32(bitPattern: status)) {
        case SQ_IMG_OK: break
        case SQ_IMG_NOT_IMAGE: throw ImageError.notAnImage(path: name, what: what)
        case SQ_IMG_TRUNCATED: throw ImageError.truncated(path: name, what: what)
        case SQ_IMG_UNSUPPORTED: throw ImageError.unsupported(path: name, what: what)
        case SQ_IMG_TOO_LARGE: throw ImageError.tooLarge(path: name, what: what)
        case SQ_IMG_NO_MEMORY: throw ImageError.unreadable(path: name, message: "out of memory decoding \(format.rawValue)")
        default: throw ImageError.corrupt(path: name, what: what)
        }
        guard let px = result.pixels else { throw ImageError.corrupt(path: name, what: "\(format.rawValue): decoder returned no pixels") }
        defer { sq_img_free(px) }
        let w = Int(result.width), h = Int(result.height)
        let pixels = [UInt8](UnsafeBufferPointer(start: px, count: w * h * 3))
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    private static func otherFormatHint(_ b: [UInt8]) -> String {
        let s = Array(b.prefix(12))
        if s.starts(with: Array("GIF8".utf8)) { return " (it looks like GIF, which is not supported)" }
        if s.count >= 12, s.starts(with: Array("RIFF".utf8)), Array(s[8..<12]) == Array("WEBP".utf8) {
            return " (it looks like WebP, which is not supported)"
        }
        if s.starts(with: Array("BM".utf8)) { return " (it may be BMP, which is not supported)" }
        return ""
    }

    /// Reads a whole file with read(2). Not mmap: a file truncated while mapped would raise SIGBUS.
    static func readWholeFile(_ path: String) throws -> [UInt8] {
        // open(2) would stop at a U+0000 and read the prefix's file instead (issue 17).
        guard !path.utf8.contains(0) else { throw ImageError.unreadable(path: path, message: "the path contains U+0000") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.unreadable(path: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ImageError.unreadable(path: path, message: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ImageError.unreadable(path: path, message: "not a regular file") }
        // Encoded images above 1 GiB are far beyond anything the pixel limit would let through.
        guard st.st_size <= 1 << 30 else { throw ImageError.tooLarge(path: path, what: "file is \(st.st_size) bytes (limit 1 GiB)") }
        var out = [UInt8]()
        out.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError.unreadable(path: path, message: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            guard out.count <= 1 << 30 else { throw ImageError.tooLarge(path: path, what: "file grew beyond 1 GiB while reading") }
        }
        return out
    }

    // MARK: - Writing and drawing

    /// Encodes the image as an 8-bit RGB PNG (libpng, default compression).
    public func pngData() throws -> [UInt8] {
        guard width > 0, height > 0 else { throw ImageError.writeFailed(path: "<memory>", message: "empty image") }
        var data: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var msg = [CChar](repeating: 0, count: 200)
        let st = pixels.withUnsafeBufferPointer { buf in
            sq_encode_png_rgb(buf.baseAddress, UInt32(width), UInt32(height), &data, &size, &msg)
        }
        guard st == 0, let data else {
            throw ImageError.writeFailed(path: "<memory>", message: String(cString: msg))
        }
        defer { sq_img_free(data) }
        return [UInt8](UnsafeBufferPointer(start: data, count: size))
    }

    /// Writes the image as a PNG atomically (temporary file in the destination folder, fsync,
    /// rename), so a crash never leaves a half-written picture under the final name.
    public func writePNG(path: String, overwrite: Bool = true) throws {
        let bytes: [UInt8]
        do { bytes = try pngData() } catch ImageError.writeFailed(_, let m) {
            throw ImageError.writeFailed(path: path, message: m)
        }
        do {
            let w = try AtomicFileWriter(destination: path, overwrite: overwrite)
            try w.write(bytes)
            try w.commit()
        } catch let e as FormatError {
            throw ImageError.writeFailed(path: path, message: e.description)
        }
    }

    /// Draws the outline of the rectangle with corners (x1, y1) and (x2, y2), both inclusive, as
    /// Pillow's `ImageDraw.rectangle(..., outline=color, width=lineWidth)` does: the line grows
    /// inward from the edges. Coordinates may lie outside the image; only the visible part is drawn.
    /// Used for `--draw` output of grounding boxes.
    public mutating func drawRectangle(x1: Int, y1: Int, x2: Int, y2: Int,
                                       color: (UInt8, UInt8, UInt8), lineWidth: Int = 1) {
        let (lx, hx) = (min(x1, x2), max(x1, x2))
        let (ly, hy) = (min(y1, y2), max(y1, y2))
        let lw = max(1, lineWidth)
        func fill(_ ax: Int, _ ay: Int, _ bx: Int, _ by: Int) {
            let x0 = max(ax, 0), x1 = min(bx, width - 1)
            let y0 = max(ay, 0), y1 = min(by, height - 1)
            guard x0 <= x1, y0 <= y1 else { return }
            for y in y0...y1 {
                for x in x0...x1 {
                    let i = (y * width + x) * 3
                    pixels[i] = color.0; pixels[i + 1] = color.1; pixels[i + 2] = color.2
                }
            }
        }
        // Widths saturate so that hostile coordinates cannot overflow.
        let inner = lw &- 1
        fill(lx, ly, hx, min(hy, ly.addingReportingOverflow(inner).overflow ? hy : ly + inner))  // top
        fill(lx, max(ly, hy.subtractingReportingOverflow(inner).overflow ? ly : hy - inner), hx, hy)  // bottom
        fill(lx, ly, min(hx, lx.addingReportingOverflow(inner).overflow ? hx : lx + inner), hy)  // left
        fill(max(lx, hx.subtractingReportingOverflow(inner).overflow ? lx : hx - inner), ly, hx, hy)  // right
    }
}
