import SquintFormats

/// Every way an image file can be refused. Each case names the file and says what was wrong, so the
/// CLI can print it as is; the decoders never trap or exit on bad bytes (the C layer catches
/// libjpeg/libpng errors with setjmp).
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or read (errno text included).
    case unreadable(path: String, message: String)
    /// The bytes are neither JPEG nor PNG (checked by magic bytes, not by the file name).
    case notAnImage(path: String, what: String)
    /// The data ends before the image does.
    case truncated(path: String, what: String)
    /// The decoder found the data invalid (bad marker, CRC, compressed stream...).
    case corrupt(path: String, what: String)
    /// A valid file we do not decode (12-bit JPEG, other formats such as GIF/WebP...).
    case unsupported(path: String, what: String)
    /// Declared dimensions above the pixel limit; refused before any pixel buffer is allocated.
    case tooLarge(path: String, what: String)
    /// Writing an output image failed.
    case writeFailed(path: String, message: String)

    /// One line: the path (often from a calibration file) is escaped (`printable`).
    public var description: String { printable(rawDescription) }

    private var rawDescription: String {
        switch self {
        case let .unreadable(p, m): return "\(p): cannot read image: \(m)"
        case let .notAnImage(p, w): return "\(p): not an image: \(w)"
        case let .truncated(p, w): return "\(p): image file is truncated: \(w)"
        case let .corrupt(p, w): return "\(p): corrupt image: \(w)"
        case let .unsupported(p, w): return "\(p): unsupported image: \(w)"
        case let .tooLarge(p, w): return "\(p): image too large: \(w)"
        case let .writeFailed(p, m): return "\(p): cannot write image: \(m)"
        }
    }

    /// The file the error is about.
    public var path: String {
        switch self {
        case let .unreadable(p, _), let .notAnImage(p, _), let .truncated(p, _), let .corrupt(p, _),
             let .unsupported(p, _), let .tooLarge(p, _), let .writeFailed(p, _):
            return p
        }
    }
}
