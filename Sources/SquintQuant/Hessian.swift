import COpenBLAS

/// GPTQ's Hessian proxy H = (2/N_seq) * sum over all calibration tokens of x xᵀ, accumulated one
/// calibration call at a time exactly like AutoGPTQ's `GPTQ.add_batch` (SPEC §5.2):
///
///     H *= n/(n+tmp);  n += tmp;  X = sqrt(2/n)·X;  H += X Xᵀ
///
/// `n` counts sequences (the batch size of each call), not tokens: that is what AutoGPTQ does, and
/// since the damping in `fasterquant` is relative the scale of H does not change the result.
/// Products run through `cblas_ssyrk`, so the float32 summation order differs from torch's GEMM:
/// expect agreement to a few float32 ulps of the largest entry, not bit identity.
public struct Hessian: Sendable {
    /// Input features (the width of the linear layer's input).
    public let columns: Int
    /// [columns, columns] row-major, symmetric (both triangles filled after every call).
    public private(set) var matrix: [Float]
    /// Sequences seen so far (AutoGPTQ's `nsamples`).
    public private(set) var nsamples: Int

    /// The matrix, handed over without a copy (the Hessian is consumed).
    public consuming func takeMatrix() -> [Float] { matrix }

    public init(columns: Int) {
        precondition(columns > 0)
        self.columns = columns
        self.matrix = [Float](repeating: 0, count: columns * columns)
        self.nsamples = 0
    }

    /// One `add_batch` call. `x` is [tokens, columns] row-major (the layer input of `sequences`
    /// sequences flattened, padding included as AutoGPTQ does).
    public mutating func addBatch(_ x: [Float], tokens: Int, sequences: Int = 1) throws {
        guard x.count == tokens * columns else {
            throw QuantError.shapeMismatch(what: "Hessian.addBatch input [\(tokens), \(columns)]",
                                           expected: tokens * columns, actual: x.count)
        }
        guard sequences > 0 else { throw QuantError.invalidSetting("addBatch needs at least one sequence") }
        if let bad = x.firstIndex(where: { !$0.isFinite }) {
            throw QuantError.nonFinite(what: "Hessian.addBatch input", index: bad)
        }
        let n = columns
        // torch: `self.H *= nsamples / (nsamples + tmp)`: a Python float applied as a float32 scalar.
        let shrink = Float(Double(nsamples) / Double(nsamples + sequences))
        for i in 0..<matrix.count { matrix[i] *= shrink }
        nsamples += sequences
        // torch: `inp = math.sqrt(2 / nsamples) * inp.float()`: each element rounded to float32.
        let factor = Float((2.0 / Double(nsamples)).squareRoot())
        var xs = x
        for i in 0..<xs.count { xs[i] *= factor }
        if tokens > 0 {
            matrix.withUnsafeMutableBufferPointer { h in
                xs.withUnsafeBufferPointer { a in
                    // Upper triangle of H += Xsᵀ Xs, with Xs [tokens, n] row-major.
                    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(tokens),
                                1, a.baseAddress, Int32(n), 1, h.baseAddress, Int32(n))
                }
            }
        }
        // Mirror the upper triangle into the lower one.
        matrix.withUnsafeMutableBufferPointer { h in
            for i in 0..<n { for j in (i + 1)..<max(n, i + 1) { h[j * n + i] = h[i * n + j] } }
        }
    }
}
