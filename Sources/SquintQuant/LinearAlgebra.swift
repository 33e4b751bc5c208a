import COpenBLAS
import CSquintKernels
import Foundation
import SquintTensor

/// Precision of the inverse-Hessian factorisation in `fasterquant`.
///
/// torch factorises in float32 with MKL, whose rounding cannot be reproduced with OpenBLAS; its factor
/// carries ~1e-5 relative error on realistic Hessians, and a code flips wherever a value sits closer
/// than that to a rounding boundary (the flip then cascades along the row through error feedback).
/// Computing our factor more accurately keeps us within torch's own error instead of adding ours.
/// Measured agreement with torch (identical codes): reference cases 100% with `.double`/`.mixed`,
/// 99.78-99.85% in two settings with `.float`; a random 2048x4096 case 99.50 / 99.52 / 99.30%.
public enum HinvPrecision: String, Sendable, CaseIterable {
    /// Cholesky and triangular inverse in float64, rounded to float32 at the end (slowest).
    case double
    /// Cholesky in float64 (the ill-conditioned step), its triangular inverse in float32 (default:
    /// as faithful as `.double` in our measurements at ~60% of its cost).
    case mixed
    /// Both in float32 (fastest; slightly more code flips against the reference).
    case float
}

/// LAPACK wrappers for the one factorisation GPTQ needs.
///
/// AutoGPTQ computes `Hinv = cholesky(cholesky_inverse(cholesky(H)), upper=True)`: the upper
/// Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU). We get the same matrix with half the work: factor H "from the
/// bottom" as H = Ũ Ũᵀ with Ũ upper (the lower Cholesky factor of J H J, J = index reversal, flipped
/// back); then H⁻¹ = Ũ⁻ᵀ Ũ⁻¹ = (Ũ⁻¹)ᵀ (Ũ⁻¹), and Ũ⁻¹ is upper with a positive diagonal, so by
/// uniqueness of the Cholesky factor U = Ũ⁻¹ (one potrf + one trtri = 2n³/3 flops instead of 4n³/3).
///
/// Layout: our matrices are row-major, LAPACK's column-major; element (i, j) of a column-major
/// n×n array is at i + j·n. J H J of a symmetric H is H's array reversed, and Ũ(i, j) = L̃(n-1-i, n-1-j)
/// is L̃'s array reversed (its upper part; trtri never reads the rest), so both copies stream memory;
/// the final column- to row-major transposition of U swaps pairs in place in cache-sized tiles. No n×n
/// array is allocated per call (CSquintKernels/linalg.c; `Workspace` for the float64 factor).
///
/// (Factoring J H J with potrf("U") and inverting the reversed lower factor with trtri("L") would give
/// row-major U directly, with no transposition, but trtri("L") rounds differently in float32 and
/// flipped 0.2 % of the codes of one AutoGPTQ reference case; this order keeps them all.)
enum LinearAlgebra {
    /// `h` [n, n] row-major symmetric positive definite (already damped) -> U [n, n] row-major upper
    /// triangular with zeros below the diagonal.
    static func upperCholeskyOfInverse(_ h: inout [Float], n: Int, precision: HinvPrecision = .mixed) throws {
        let nn = n * n
        precondition(h.count == nn)
        switch precision {
        case .double:
            try Workspace.shared.withDoubles(nn) { a in
                h.withUnsafeBufferPointer { sq_reverse_f32_to_f64($0.baseAddress!, a, nn) }     // J H J
                try choleskyLowerDouble(a, n: n)
                sq_reverse_f64_inplace(a, nn)                                                    // Ũ (upper part)
                try trtriUpper(a, n: n, dtrtri_)
                h.withUnsafeMutableBufferPointer { sq_upper_col_to_row_f64_to_f32(a, $0.baseAddress!, n) }
            }
        case .mixed:
            // Cholesky in float64 (the ill-conditioned step), triangular inverse in float32.
            try Workspace.shared.withDoubles(nn) { a in
                h.withUnsafeBufferPointer { sq_reverse_f32_to_f64($0.baseAddress!, a, nn) }
                try choleskyLowerDouble(a, n: n)
                try h.withUnsafeMutableBufferPointer { hp in
                    let p = hp.baseAddress!
                    sq_reverse_f64_to_f32(a, p, nn)
                    try trtriUpper(p, n: n, strtri_)
                    sq_upper_col_to_row_f32_inplace(p, n)
                }
            }
        case .float:
            try h.withUnsafeMutableBufferPointer { hp in
                let p = hp.baseAddress!
                sq_reverse_f32_inplace(p, nn)
                try potrfLower(p, n: n, spotrf_)
                sq_reverse_f32_inplace(p, nn)
                try trtriUpper(p, n: n, strtri_)
                sq_upper_col_to_row_f32_inplace(p, n)
            }
        }
    }

    /// The float64 n x n scratch of `.double`/`.mixed`, kept between calls: a conversion factors a
    /// 968 MB matrix per block, and touching fresh anonymous memory costs ~1-2.5 s per GB on this
    /// machine kind (page faults), more than the copies themselves. Grows to the largest n seen;
    /// `release()` gives it back.
    final class Workspace: @unchecked Sendable {
        static let shared = Workspace()
        private let lock = NSLock()
        private var buffer: UnsafeMutablePointer<Double>?
        private var capacity = 0

        func withDoubles<R>(_ count: Int, _ body: (UnsafeMutablePointer<Double>) throws -> R) rethrows -> R {
            lock.lock()
            defer { lock.unlock() }
            if capacity < count {
                buffer?.deallocate()
                buffer = UnsafeMutablePointer<Double>.allocate(capacity: count)
                capacity = count
            }
            return try body(buffer!)
        }

        func release() {
            lock.lock()
            defer { lock.unlock() }
            buffer?.deallocate(); buffer = nil; capacity = 0
        }
    }

    /// Whether the float64 Cholesky runs its trailing updates on AVX-512 (`sq_dpotrf_lower_avx512`,
    /// bit-identical to dpotrf, ~1.6x faster on a CPU that executes 512-bit FMAs at full width): when the
    /// CPU has AVX-512F and `$SQUINT_NO_AVX512` is unset. Elsewhere OpenBLAS's dpotrf runs.
    static let avx512Cholesky: Bool = {
        ProcessInfo.processInfo.environment["SQUINT_NO_AVX512"] == nil && sq_cpu_has_avx512f() != 0
    }()

    /// dpotrf("L") of the column-major float64 n x n `a`: the AVX-512 blocked factorisation where
    /// available, LAPACK's otherwise (same bits either way).
    static func choleskyLowerDouble(_ a: UnsafeMutablePointer<Double>, n: Int) throws {
        if avx512Cholesky {
            let info = sq_dpotrf_lower_avx512(a, n, Int32(Threads.count))
            if info > 0 { throw QuantError.notPositiveDefinite(stage: "cholesky(H)", info: Int(info)) }
            if info == 0 { return }
        }
        try potrfLower(a, n: n, dpotrf_)
    }

    private static func potrfLower<T>(
        _ a: UnsafeMutablePointer<T>, n: Int,
        _ potrf: (UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<T>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>, Int) -> Void
    ) throws {
        var nn = Int32(n), info: Int32 = 0
        var lower = CChar(UInt8(ascii: "L"))
        potrf(&lower, &nn, a, &nn, &info, 1)
        if info != 0 { throw QuantError.notPositiveDefinite(stage: "cholesky(H)", info: Int(info)) }
    }

    /// trtri on the upper triangle of column-major u (the strictly lower part is neither read nor written).
    private static func trtriUpper<T>(
        _ u: UnsafeMutablePointer<T>, n: Int,
        _ trtri: (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<T>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>, Int, Int) -> Void
    ) throws {
        var nn = Int32(n), info: Int32 = 0
        var upper = CChar(UInt8(ascii: "U")), nonUnit = CChar(UInt8(ascii: "N"))
        trtri(&upper, &nonUnit, &nn, u, &nn, &info, 1, 1)
        if info != 0 { throw QuantError.notPositiveDefinite(stage: "inverse of the Cholesky factor", info: Int(info)) }
    }
}
