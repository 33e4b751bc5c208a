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
