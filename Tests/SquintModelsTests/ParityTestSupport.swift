import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// Tolerances for comparing our float32 forward pass with the official float32 one. Both sides
/// compute the same graph in float32; they differ only in summation order and in libm/SLEEF
/// last-bit differences (exp, erf, cos). The reference README measures the official code against
/// itself (KV-cached vs uncached, i.e. summation order only) at up to 1.5e-5 absolute on logits of
/// magnitude ~20 (~1e-6 relative), so a float32 reimplementation should land within a few 1e-5
/// relative of the activation scale. Each stage check is `max|a - e| <= atol + rtol * |e|`
/// elementwise, with `atol` scaled to the stage's typical magnitude.
enum Tol {
    /// Bicubic-resized tables: the same float32 taps and weights as torch, a handful of roundings
    /// (observed max |diff| 5e-7 on values ~1).
    static let interp = (rtol: Float(1e-6), atol: Float(1e-6))
    /// ViT activations (LayerNorm scale, |x| ~ 1..5): GEMM summation order over <= 315 terms per
    /// dot product, compounded over 2 blocks (observed 3e-6).
    static let vit = (rtol: Float(1e-5), atol: Float(1e-5))
    /// Resampler output and image features (|x| ~ 1): one more attention and two GEMMs (observed 2e-6).
    static let resampler = (rtol: Float(1e-5), atol: Float(1e-5))
    /// LLM hidden states (|x| up to ~10 after the residual adds; observed 3e-6).
    static let hidden = (rtol: Float(1e-5), atol: Float(2e-5))
    /// Logits (|x| ~ 20 over a 151936 vocab): the reference's own cache/no-cache gap (summation order
    /// only) is up to 1.15e-5 absolute; we allow ~10x that (5e-6 relative at |x| ~ 20; observed 1.5e-5).
    static let logits = (rtol: Float(1e-5), atol: Float(1e-4))
    /// logsumexp over the vocab: a smooth function of the logits, same scale (observed 4e-6).
    static let logsumexp = (rtol: Float(1e-5), atol: Float(1e-4))
}

/// Worst elementwise violation of |a - e| <= atol + rtol*|e|, reported with the stage name.
func assertClose(_ a: [Float], _ e: [Float], _ tol: (rtol: Float, atol: Float), _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, e.count, "\(what): element count", file: file, line: line)
    guard a.count == e.count else { return }
    var worst: Float = 0, worstIdx = 0, maxAbs: Float = 0
    for i in 0..<a.count {
        let d = abs(a[i] - e[i])
        maxAbs = max(maxAbs, d)
        let ratio = d / (tol.atol + tol.rtol * abs(e[i]))
        if !(ratio <= worst) { worst = ratio; worstIdx = i }
    }
    if ProcessInfo.processInfo.environment["SQUINT_PARITY_VERBOSE"] != nil {
        print("parity \(what): max|diff| \(maxAbs), worst tolerance use \(worst)")
    }
    XCTAssert(worst <= 1, "\(what): element \(worstIdx) is \(a[worstIdx]), reference \(e[worstIdx]) "
              + "(max |diff| \(maxAbs), \(worst)x the tolerance)", file: file, line: line)
}

/// Everything the parity tests compare, computed once per test process.
final class TinyRun {
    static let shared: Result<TinyRun, Error> = Result { try TinyRun() }

    let reference: FixtureSafetensors
    let config: QwenVLConfig
    let model: QwenVLModel
    var vit = VisionEncoder.Intermediates()
    let features: FloatTensor
    let prefill: QwenLM.PrefillResult
    let greedy: QwenVLModel.Generation
    let ids: [Int32]

    init() throws {
        reference = try FixtureSafetensors(path: fixturePath("qwen-vl-tiny/reference.safetensors"))
        config = try QwenVLConfig.load(path: fixturePath("qwen-vl-tiny/config.json"))
        model = try QwenVLModel(config: config, weights: syntheticCheckpoint(config: config, seed: 20240611))
        let px = try reference.floats("pixel_values")
        ids = try reference.ints("input_ids").values
        (features, vit) = try model.vision.encodeRecording(pixelValues: FloatTensor(shape: px.shape, data: px.values))
        let cache = KVCache(config: config, capacity: ids.count)
        prefill = try model.language.prefill(ids: ids, imageFeatures: features, cache: cache,
                                             allLogits: true, keepHiddenStates: true)
        greedy = try model.generateGreedy(ids: ids, pixelValues: FloatTensor(shape: px.shape, data: px.values), steps: 8)
    }
}

/// The k largest entries of `row` as (index, value), by descending value, lower index first on ties.
func topK(_ row: ArraySlice<Float>, _ k: Int) -> [(Int, Float)] {
    var best: [(Int, Float)] = []
    best.reserveCapacity(k + 1)
    for i in row.indices {
        let v = row[i]
        if best.count == k, let last = best.last, !(v > last.1) { continue }
        var j = best.count
        while j > 0 && v > best[j - 1].1 { j -= 1 }
        best.insert((i - row.startIndex, v), at: j)
        if best.count > k { best.removeLast() }
    }
    return best
}

/// Our top-k ids at one position against the reference's, allowing two ids to trade places only
/// where the reference's own logits of the two are closer than twice the logits tolerance: each of
/// our logits may sit `atol + rtol*|x|` from the reference's (Tol.logits), so two logits that close
/// can come out in either order depending on summation order (thread count, BLAS kernel set), and
/// no tighter statement about their order can hold on every machine. Ids further apart must keep
/// the reference's order exactly, and the set of ids must be the same but for such a near-tie at
/// the last rank (checked through `row`, our whole logits row).
func assertSameTopK(_ ours: [(Int, Float)], _ refIds: ArraySlice<Int32>, _ refLogits: ArraySlice<Float>,
                    row: ArraySlice<Float>, _ tol: (rtol: Float, atol: Float), _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
    let refIds = Array(refIds), refLogits = Array(refLogits)
    XCTAssertEqual(ours.count, refIds.count, "\(what): k", file: file, line: line)
    for (i, (id, _)) in ours.enumerated() where i < refIds.count && Int32(id) != refIds[i] {
        // The reference's logit for our id at rank i (ours when the reference ranked it past k).
        let refOfOurs = refIds.firstIndex(of: Int32(id)).map { refLogits[$0] } ?? row[row.startIndex + id]
        let gap = abs(refOfOurs - refLogits[i])
        let allowed = 2 * (tol.atol + tol.rtol * abs(refLogits[i]))
        XCTAssert(gap <= allowed, "\(what): rank \(i) is id \(id), reference id \(refIds[i]); their reference logits "
                  + "differ by \(gap), more than a near-tie (\(allowed))", file: file, line: line)
    }
}

/// Row `row` of `w` [rows, x.count] times `x` in double (`exact`) and the error bound of the same product
/// on the int8 grid of `Int8Linear` (per block of 32: d = max|v| / 127, both roundings at most half a
/// step): |x|·dw/2 + |w|·dx/2 + dw·dx/4 per element, plus 1e-5·|w·x| for the float rounding of scales and
/// sums, plus |w|·(xRelative·|x| + xAbsolute) when `x` itself is known only to within that.
func int8ProductBound(_ w: [Float], row: Int, _ x: [Float], xRelative: Double = 0, xAbsolute: Double = 0) -> (exact: Double, bound: Double) {
    let k = x.count
    var exact = 0.0, bound = 0.0
    for b in 0..<k / 32 {
        let wb = (0..<32).map { Double(w[row * k + b * 32 + $0]) }, xb = (0..<32).map { Double(x[b * 32 + $0]) }
        let dw = wb.map(abs).max()! / 127, dx = xb.map(abs).max()! / 127
        for j in 0..<32 {
            exact += wb[j] * xb[j]
            bound += abs(xb[j]) * dw / 2 + abs(wb[j]) * dx / 2 + dw * dx / 4 + abs(wb[j] * xb[j]) * 1e-5
            bound += abs(wb[j]) * (xRelative * abs(xb[j]) + xAbsolute)
        }
    }
    return (exact, bound)
}
