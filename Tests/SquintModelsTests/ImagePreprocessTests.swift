import Foundation
import SquintImage
import TestSupport
import XCTest

/// preprocessForQwenVL must reproduce the official image_transform output bit for bit: the
/// reference pixel_values (shared/reference/qwen-vl-tiny/reference.safetensors, computed by the
/// official pipeline for image.png = photos/skimage_chelsea.png) are summarised in
/// fixtures/images/pixel_values_chelsea.json as the sha256 of the float32 little-endian bytes plus
/// sampled values with their exact bit patterns.
final class ImagePreprocessTests: XCTestCase {
    func testPixelValuesAreBitExactWithTheOfficialPipeline() throws {
        let ref = try ImageFixtures.json("pixel_values_chelsea.json")
        let pv = try preprocessForQwenVL(path: ImageFixtures.path("photos/skimage_chelsea.png"))
        XCTAssertEqual(pv.count, 3 * 448 * 448)  // [3, 448, 448] CHW
        for s in try XCTUnwrap(ref["samples"] as? [[String: Any]]) {
            let i = try XCTUnwrap(s["index"] as? Int)
            let bits = UInt32(try XCTUnwrap(s["f32_bits"] as? String), radix: 16)
            XCTAssertEqual(pv[i].bitPattern, bits, "pixel_values[\(i)] = \(pv[i]), reference \(s["value"] ?? "?")")
        }
        // Float32 bit patterns in little-endian order, as torch stores them.
        var le = [UInt8]()
        le.reserveCapacity(pv.count * 4)
        for v in pv { withUnsafeBytes(of: v.bitPattern.littleEndian) { le.append(contentsOf: $0) } }
        XCTAssertEqual(sha256Hex(le), ref["sha256_f32le"] as? String)
    }

    /// ToTensor divides by 255 and Normalize subtracts then divides, each rounded to float32; a
    /// fused or reciprocal formula differs in the last bit for some bytes. Checked on all 256
    /// values of each channel against the definition.
    func testNormalisationFollowsTorchvisionArithmetic() {
        var px = [UInt8]()
        for v in 0..<256 { px += [UInt8(v), UInt8(255 - v), UInt8((v * 7) & 255)] }
        let img = RGBImage(width: 256, height: 1, pixels: px)
        let out = clipPixelValues(img)  // [3, 1, 256]
        let mean: [Double] = [0.48145466, 0.4578275, 0.40821073]
        let std: [Double] = [0.26862954, 0.26130258, 0.27577711]
        for c in 0..<3 {
            for i in 0..<256 {
                let x = Float(px[3 * i + c]) / 255
                let want = (x - Float(mean[c])) / Float(std[c])
                XCTAssertEqual(out[c * 256 + i].bitPattern, want.bitPattern)
            }
        }
        XCTAssertEqual(out[0], (0 - Float(mean[0])) / Float(std[0]))
    }
}
