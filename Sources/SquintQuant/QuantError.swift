import SquintFormats

/// Every way the quantization core refuses its input. Cases say which tensor or setting was wrong and
/// what was expected, so a caller (the convert pipeline, the CLI) can print them as they are.
public enum QuantError: Error, CustomStringConvertible, Equatable {
    /// A setting is outside what AutoGPTQ (or this port of it) supports.
    case invalidSetting(String)
    /// A buffer's element count does not match the shape it was declared with.
    case shapeMismatch(what: String, expected: Int, actual: Int)
    /// A weight or Hessian entry is NaN or infinite; torch would propagate it silently into every
    /// scale of the row, so we refuse instead.
    case nonFinite(what: String, index: Int)
    /// LAPACK reported that the (damped) Hessian, or its inverse, is not positive definite: AutoGPTQ
    /// fails here too (torch.linalg.cholesky raises). `info` is LAPACK's return code.
    case notPositiveDefinite(stage: String, info: Int)
    /// A value cannot be stored in the AutoGPTQ v1 bit layout (code outside 0...maxq after the
    /// fp16 round trip, or a zero point whose "zero - 1" is negative). AutoGPTQ would silently
    /// corrupt neighbouring nibbles; we stop and say where.
    case notPackable(String)

    /// One line: module names are escaped (`printable`).
    public var description: String { printable(rawDescription) }

    private var rawDescription: String {
        switch self {
        case let .invalidSetting(s): return "invalid quantization setting: \(s)"
        case let .shapeMismatch(w, e, a): return "\(w): expected \(e) elements, got \(a)"
        case let .nonFinite(w, i): return "\(w): non-finite value at flat index \(i)"
        case let .notPositiveDefinite(s, i):
            return "\(s): matrix is not positive definite (LAPACK info \(i)); raise percdamp or check the calibration inputs"
        case let .notPackable(s): return "cannot pack in the AutoGPTQ v1 layout: \(s)"
        }
    }
}
