/// Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB, reproduced bit for bit.
///
/// Qwen-VL feeds `transforms.Resize((448, 448), BICUBIC)` a PIL image, which calls
/// `img.resize((448, 448), BICUBIC)` (Pillow's ImagingResample in libImaging/Resample.c; no
/// reducing_gap). Any difference of one grey level changes pixel_values, so this follows Pillow's
/// arithmetic exactly:
/// - separable: one pass into an 8-bit intermediate (clipped), then the other; the horizontal pass
///   usually comes first (see `pillowDoesVerticalPassFirst` for when it does not);
///   a pass is skipped when that dimension does not change (box = full image);
/// - the horizontal pass only produces the source rows the vertical pass reads;
/// - bicubic kernel with a = -0.5, support 2, widened by the downscale factor (antialiasing);
/// - per output pixel the weights are computed in double, normalised by their sum, then converted
///   to fixed point with PRECISION_BITS = 32 - 8 - 2 = 22, rounding half away from zero;
/// - accumulation starts at 1 << 21 (rounding) and the result is `acc >> 22` clipped to 0...255.
extension RGBImage {
    /// The Pillow bicubic resize of this image to width x height (aspect ratio not preserved).
    public func resizedBicubic(width outW: Int, height outH: Int) -> RGBImage {
        precondition(outW > 0 && outH > 0, "resizedBicubic: target size must be positive")
        precondition(width > 0 && height > 0, "resizedBicubic: empty source image")
        let needH = outW != width
        let needV = outH != height
        if !needH && !needV { return self }

        let horiz = PILResampleCoefficients(inSize: width, outSize: outW)
        var vert = PILResampleCoefficients(inSize: height, outSize: outH)

        if needH && needV && pillowDoesVerticalPassFirst(inWidth: width, inHeight: height,
                                                         outWidth: outW, outHeight: outH) {
            let tmp = resampleVertical(self, coefficients: vert, outHeight: outH)
            return resampleHorizontal(tmp, coefficients: horiz, outWidth: outW, rowOffset: 0, rows: outH)
        }

        // Rows of the source the vertical pass touches.
        let yFirst = vert.bounds[0]
        let yLast = vert.bounds[2 * (outH - 1)] + vert.bounds[2 * (outH - 1) + 1]

        var src = self
        if needH {
            // Shift vertical bounds to index the intermediate, which starts at source row yFirst.
            for i in 0..<outH { vert.bounds[2 * i] -= yFirst }
            src = resampleHorizontal(self, coefficients: horiz, outWidth: outW, rowOffset: yFirst,
                                     rows: yLast - yFirst)
        }
        if needV {
            src = resampleVertical(src, coefficients: vert, outHeight: outH)
        }
        return src
    }
}

/// Which pass Pillow 13 runs first when both are needed.
///
/// Pillow's libImaging/Resample.c as published up to 2024 always runs the horizontal pass first,
/// but the Pillow 13.0.0 that wrote our ground truth does not: on 390 random size combinations and
/// 136 cases straddling the boundary (scripts/fixtures/make_image_fixtures.py records such cases in
/// expected.json), its output equals vertical-then-horizontal exactly when the image shrinks
/// vertically by more than twice what it shrinks horizontally:
/// `outH < inH && inH - outH > 2 * (inW - outW)`, and horizontal-then-vertical otherwise. The two
/// orders differ by 1 in many pixels because the intermediate is rounded to 8 bits. For Qwen-VL
/// (448x448) this concerns portrait photos, e.g. 600x900. The rule was found empirically; the
/// fixture tests pin it on both sides of the boundary.
func pillowDoesVerticalPassFirst(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) -> Bool {
    outHeight < inHeight && inHeight - outHeight > 2 * (inWidth - outWidth)
}

/// Fixed-point precision of Pillow's 8-bit resampling (libImaging/Resample.c PRECISION_BITS).
let pilPrecisionBits = 32 - 8 - 2

/// Pillow's bicubic_filter with a = -0.5, written with the same operation order.
@inline(__always)
func pilBicubicFilter(_ xIn: Double) -> Double {
    let a = -0.5
    let x = xIn < 0.0 ? -xIn : xIn
    if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
    if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
    return 0.0
}

/// The per-output-pixel source windows and fixed-point weights of one resampling axis, computed
/// as Pillow's precompute_coeffs + normalize_coeffs_8bpc do for box = (0, inSize).
struct PILResampleCoefficients {
    /// Maximum taps per output pixel.
    let ksize: Int
    /// [outSize, 2]: first source index, number of taps.
    var bounds: [Int]
    /// [outSize, ksize]: fixed-point weights (Q22), zero past the tap count.
    let weights: [Int32]

    init(inSize: Int, outSize: Int) {
        let support0 = 2.0  // bicubic
        // Pillow passes the box as float; (in1 - in0) is computed in float before widening.
        let in0: Float = 0, in1 = Float(inSize)
        let scale = Double(in1 - in0) / Double(outSize)
        let filterscale = scale < 1.0 ? 1.0 : scale
        let support = support0 * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        self.ksize = ksize
        var bounds = [Int](repeating: 0, count: 2 * outSize)
        var kk = [Double](repeating: 0, count: outSize * ksize)
        for xx in 0..<outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            var ww = 0.0
            let ss = 1.0 / filterscale
            // C (int) casts truncate toward zero, as Int(Double) does.
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            let base = xx * ksize
            for x in 0..<max(xmax, 0) {
                let w = pilBicubicFilter((Double(x + xmin) - center + 0.5) * ss)
                kk[base + x] = w
                ww += w
            }
            if ww != 0.0 {
                for x in 0..<max(xmax, 0) { kk[base + x] /= ww }
            }
            bounds[2 * xx] = xmin
            bounds[2 * xx + 1] = max(xmax, 0)
        }
        self.bounds = bounds
        let one = Double(1 << pilPrecisionBits)
        weights = kk.map { v in
            v < 0 ? Int32(-0.5 + v * one) : Int32(0.5 + v * one)
        }
    }
}

@inline(__always)
private func clip8(_ acc: Int32) -> UInt8 {
    let v = acc >> Int32(pilPrecisionBits)
    return v < 0 ? 0 : (v > 255 ? 255 : UInt8(v))
}

/// Horizontal pass: source rows rowOffset..<rowOffset+rows, output width outW.
private func resampleHorizontal(_ img: RGBImage, coefficients c: PILResampleCoefficients,
                                outWidth outW: Int, rowOffset: Int, rows: Int) -> RGBImage {
    var out = [UInt8](repeating: 0, count: outW * rows * 3)
    let inW = img.width, ksize = c.ksize
    let half = Int32(1) << Int32(pilPrecisionBits - 1)
    img.pixels.withUnsafeBufferPointer { src in
        c.weights.withUnsafeBufferPointer { k in
            c.bounds.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { dst in
                    for yy in 0..<rows {
                        let srow = (yy + rowOffset) * inW * 3
                        let drow = yy * outW * 3
                        for xx in 0..<outW {
                            let xmin = b[2 * xx], n = b[2 * xx + 1]
                            let kb = xx * ksize
                            var s0 = half, s1 = half, s2 = half
                            var p = srow + xmin * 3
                            for x in 0..<n {
                                let w = k[kb + x]
                                s0 &+= Int32(src[p]) &* w
                                s1 &+= Int32(src[p + 1]) &* w
                                s2 &+= Int32(src[p + 2]) &* w
                                p += 3
                            }
                            dst[drow + 3 * xx] = clip8(s0)
                            dst[drow + 3 * xx + 1] = clip8(s1)
                            dst[drow + 3 * xx + 2] = clip8(s2)
                        }
                    }
                }
            }
        }
    }
    return RGBImage(width: outW, height: rows, pixels: out)
}

/// Vertical pass: bounds index rows of `img` directly.
private func resampleVertical(_ img: RGBImage, coefficients c: PILResampleCoefficients,
                              outHeight outH: Int) -> RGBImage {
    let w = img.width, ksize = c.ksize
    let rowLen = w * 3
    var out = [UInt8](repeating: 0, count: rowLen * outH)
    let half = Int32(1) << Int32(pilPrecisionBits - 1)
    var acc = [Int32](repeating: 0, count: rowLen)
    img.pixels.withUnsafeBufferPointer { src in
        c.weights.withUnsafeBufferPointer { k in
            out.withUnsafeMutableBufferPointer { dst in
                acc.withUnsafeMutableBufferPointer { a in
                    for yy in 0..<outH {
                        let ymin = c.bounds[2 * yy], n = c.bounds[2 * yy + 1]
                        let kb = yy * ksize
                        for i in 0..<rowLen { a[i] = half }
                        // Row by row: the same sums as Pillow's per-pixel loop (integer adds are
                        // exact and associative), in a cache-friendly order.
                        for y in 0..<n {
                            let wgt = k[kb + y]
                            let s = (ymin + y) * rowLen
                            for i in 0..<rowLen { a[i] &+= Int32(src[s + i]) &* wgt }
                        }
                        let d = yy * rowLen
                        for i in 0..<rowLen { dst[d + i] = clip8(a[i]) }
                    }
                }
            }
        }
    }
    return RGBImage(width: w, height: outH, pixels: out)
}
