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
    /// [columns, columns] row-major; while accumulating only the upper triangle is kept (ssyrk
    /// writes it; scaling and mirroring the lower half on every call cost more than the product at
    /// 11008 wide), and the lower one is filled from it when the matrix is read.
    private var storage: [Float]
    private var mirrored = true
    /// Sequences seen so far (AutoGPTQ's `nsamples`).
    public private(set) var nsamples: Int

    /// [columns, columns] row-major, symmetric: a copy (use `takeMatrix()` to hand it over instead).
    public var matrix: [Float] {
        var m = storage
        if !mirrored { Self.mirrorUpper(&m, n: columns) }
        return m
    }

    /// The symmetric matrix, handed over without a copy (the Hessian is consumed).
    public consuming func takeMatrix() -> [Float] {
        if !mirrored { Self.mirrorUpper(&storage, n: columns); mirrored = true }
        return storage
    }

    /// H[i, i] for every i.
    public var diagonal: [Float] { (0..<columns).map { storage[$0 * columns + $0] } }

    public init(columns: Int) {
        precondition(columns > 0)
        self.columns = columns
        self.storage = [Float](repeating: 0, count: columns * columns)
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
        nsamples += sequences
        // torch: `inp = math.sqrt(2 / nsamples) * inp.float()`: each element rounded to float32.
        let factor = Float((2.0 / Double(nsamples)).squareRoot())
        var xs = x
        for i in 0..<xs.count { xs[i] *= factor }
        mirrored = false
        storage.withUnsafeMutableBufferPointer { h in
            // H *= shrink (upper triangle, row by row: the same float32 products as torch's in-place scale).
            for i in 0..<n {
                let row = h.baseAddress! + i * n
                for j in i..<n { row[j] *= shrink }
            }
            if tokens > 0 {
                xs.withUnsafeBufferPointer { a in
                    // Upper triangle of H += Xsᵀ Xs, with Xs [tokens, n] row-major.
                    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(tokens),
                                1, a.baseAddress, Int32(n), 1, h.baseAddress, Int32(n))
                }
            }
        }
    }

    /// Lower triangle = upper triangle, in cache-sized tiles.
    static func mirrorUpper(_ m: inout [Float], n: Int) {
        let tile = 64
        m.withUnsafeMutableBufferPointer { h in
            for i0 in stride(from: 0, to: n, by: tile) {
                for j0 in stride(from: i0, to: n, by: tile) {
                    for i in i0..<min(i0 + tile, n) {
                        for j in max(j0, i + 1)..<max(min(j0 + tile, n), max(j0, i + 1)) { h[j * n + i] = h[i * n + j] }
                    }
                }
            }
        }
    }
}
