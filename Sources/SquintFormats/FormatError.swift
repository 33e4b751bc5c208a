import Foundation

/// Every way a checkpoint file can be refused. Each case names the file and says what was wrong, so
/// the CLI can print it as is; nothing in the readers traps on bad input.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened, mapped, read or written (errno text included).
    case io(path: String, message: String)
    /// The file ends before a structure it declares.
    case truncated(path: String, what: String)
    /// A structural rule of the format is broken (bad header, offsets, shapes, JSON...).
    case invalid(path: String, what: String)
    /// Valid for the format but outside what Squint accepts (documented in Formats/).
    case unsupported(path: String, what: String)
    /// A pickle reached for a global outside the state-dict allowlist. Nothing was executed.
    case forbiddenGlobal(path: String, global: String)
    /// A tensor name was asked for that the checkpoint does not hold.
    case missingTensor(path: String, name: String)
    /// Refused to replace something the user already has.
    case exists(path: String)

    /// One line: names from the file are escaped (`printable`), whatever the case.
    public var description: String { printable(rawDescription) }

    private var rawDescription: String {
        switch self {
        case let .io(p, m): return "\(p): \(m)"
        case let .truncated(p, w): return "\(p): file is truncated: \(w)"
        case let .invalid(p, w): return "\(p): invalid: \(w)"
        case let .unsupported(p, w): return "\(p): unsupported: \(w)"
        case let .forbiddenGlobal(p, g):
            return "\(p): refused: the pickle references the global '\(g)', which is not allowed in a "
                + "state dict (nothing was executed)"
        case let .missingTensor(p, n): return "\(p): no tensor named '\(n)'"
        case let .exists(p): return "\(p): already exists (pass --force to overwrite)"
        }
    }
}

extension FormatError {
    /// `.io` for a failed file operation, with the problem said in a few words (never Foundation's
    /// "The operation could not be completed. (NSCocoaErrorDomain error 516.)" nor a second copy of
    /// the path): `doing` is what was attempted, e.g. "cannot write the report".
    public static func io(path: String, doing: String, _ error: Error) -> FormatError {
        .io(path: path, message: "\(doing): \(plainReason(error))")
    }

    /// A Foundation or POSIX error in a few words ("already exists", "permission denied", ...);
    /// other errors as their own description.
    public static func plainReason(_ error: Error) -> String {
        if let e = error as? FormatError {
            switch e {
            case let .io(_, m): return m
            default: return e.description
            }
        }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain, let s = strerror(Int32(truncatingIfNeeded: ns.code)) {
            return String(cString: s).lowercased()
        }
        guard ns.domain == NSCocoaErrorDomain else { return "\(error)" }
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain,
           let s = strerror(Int32(truncatingIfNeeded: u.code)) {
            return String(cString: s).lowercased()
        }
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileWriteFileExists: return "already exists"
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or directory"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteOutOfSpace: return "no space left on the device"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileReadCorruptFile: return "unreadable (corrupt) file"
        case .fileReadTooLarge: return "file too large"
        case .fileReadInapplicableStringEncoding, .fileWriteInapplicableStringEncoding: return "not valid text in the expected encoding"
        case .fileLocking: return "file is locked"
        case .fileWriteInvalidFileName: return "invalid file name"
        default: return "input/output error (Foundation code \(ns.code))"
        }
    }

    /// The path a Foundation error names, if any.
    public static func path(of error: Error) -> String? {
        let ns = error as NSError
        guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return nil }
        if let p = ns.userInfo[NSFilePathErrorKey] as? String { return p }
        if let u = ns.userInfo[NSURLErrorKey] as? URL { return u.path }
        return nil
    }

    /// True for errors raised by Foundation or the C library rather than by Squint's own types.
    public static func isFoundationError(_ error: Error) -> Bool {
        let d = (error as NSError).domain
        return d == NSCocoaErrorDomain || d == NSPOSIXErrorDomain
    }
}
