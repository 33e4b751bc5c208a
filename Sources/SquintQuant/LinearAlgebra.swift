import COpenBLAS

/// Precision of the inverse-Hessian factorisation in `fasterquant`.
public enum HinvPrecision: String, Sendable, CaseIterable {
    /// Factorise in float64 and round the factor to float32 (default). torch factorises in float32 with
    /// MKL, whose rounding we cannot reproduce; its factor carries ~1e-5 relative error on these
    /// Hessians. Computing ours (nearly) exactly keeps us within that error of torch's, and in the
    /// reference cases gives 100% identical codes where float32 OpenBLAS flipped one code per
    /// setting (which then cascades along the row).
    case double
    /// Factorise in float32 (about 2x faster on this step, less faithful to the reference).
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
/// n×n array is at i + j·n.
enum LinearAlgebra {
    /// `h` [n, n] row-major symmetric positive definite (already damped) -> U [n, n] row-major upper
    /// triangular with zeros below the diagonal.
    static func upperCholeskyOfInverse(_ h: inout [Float], n: Int, precision: HinvPrecision = .double) throws {
        switch precision {
        case .double:
            var a = [Double](repeating: 0, count: n * n)
            // a = J H J (symmetric, so row/column-major agree).
            for i in 0..<n { for j in 0..<n { a[i * n + j] = Double(h[(n - 1 - i) * n + (n - 1 - j)]) } }
            try factor(&a, n: n, potrf: { dpotrf_($0, $1, $2, $3, $4, 1) }, trtri: { dtrtri_($0, $1, $2, $3, $4, $5, 1, 1) })
            for r in 0..<n { for c in 0..<n { h[r * n + c] = c >= r ? Float(a[r + c * n]) : 0 } }
        case .float:
            var a = [Float](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { a[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
            try factor(&a, n: n, potrf: { spotrf_($0, $1, $2, $3, $4, 1) }, trtri: { strtri_($0, $1, $2, $3, $4, $5, 1, 1) })
            for r in 0..<n { for c in 0..<n { h[r * n + c] = c >= r ? a[r + c * n] : 0 } }
        }
    }

    /// In: a = J H J (column-major). Out: a holds U = Ũ⁻¹ in its column-major upper triangle.
    private static func factor<T: BinaryFloatingPoint>(
        _ a: inout [T], n: Int,
        potrf: (UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<T>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void,
        trtri: (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<T>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void
    ) throws {
        var nn = Int32(n), info: Int32 = 0
        var lower = CChar(UInt8(ascii: "L")), upper = CChar(UInt8(ascii: "U")), nonUnit = CChar(UInt8(ascii: "N"))
        // J H J = L̃ L̃ᵀ, L̃ in the column-major lower triangle.
        a.withUnsafeMutableBufferPointer { potrf(&lower, &nn, $0.baseAddress!, &nn, &info) }
        if info != 0 { throw QuantError.notPositiveDefinite(stage: "cholesky(H)", info: Int(info)) }
        // Ũ(i, j) = L̃(n-1-i, n-1-j), upper; stored column-major in b.
        var b = [T](repeating: 0, count: n * n)
        for j in 0..<n { for i in 0...j { b[i + j * n] = a[(n - 1 - i) + (n - 1 - j) * n] } }
        b.withUnsafeMutableBufferPointer { trtri(&upper, &nonUnit, &nn, $0.baseAddress!, &nn, &info) }
        if info != 0 { throw QuantError.notPositiveDefinite(stage: "inverse of the Cholesky factor", info: Int(info)) }
        a = b
    }
}
