import Foundation
import SquintImage
import TestSupport
import XCTest

/// resizedBicubic must equal Pillow's Image.resize(size, Image.BICUBIC) byte for byte: the
/// 448x448 resize of every fixture (downscale, upscale, one pass skipped, no-op) and raw bytes of
/// resizes to small odd sizes (1x1, 7x5, 3x11, 50x2).
final class ImageResizeTests: XCTestCase {
    func testResizeTo448MatchesPillowForEveryFixture() throws {
        for (rel, rec) in try ImageFixtures.expectedImages().sorted(by: { $0.key < $1.key }) {
            let img = try RGBImage.load(path: ImageFixtures.path(rel))
            let r = img.resizedBicubic(width: 448, height: 448)
            XCTAssertEqual(r.width, 448)
            XCTAssertEqual(r.height, 448)
            XCTAssertEqual(sha256Hex(r.pixels), rec["resized_448_bicubic_rgb_sha256"] as? String, rel)
        }
    }

    func testResizeToSmallOddSizesMatchesPillowBytes() throws {
        var checked = 0
        for (rel, rec) in try ImageFixtures.expectedImages().sorted(by: { $0.key < $1.key }) {
            guard let sizes = rec["small_resizes"] as? [[String: Any]] else { continue }
            let img = try RGBImage.load(path: ImageFixtures.path(rel))
            for s in sizes {
                let w = try XCTUnwrap(s["width"] as? Int), h = try XCTUnwrap(s["height"] as? Int)
                let r = img.resizedBicubic(width: w, height: h)
                XCTAssertEqual(r.pixels, ImageFixtures.bytes(hex: try XCTUnwrap(s["rgb_hex"] as? String)),
                               "\(rel) -> \(w)x\(h)")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 100)
    }

    func testSameSizeResizeIsACopy() throws {
        let img = try RGBImage.load(path: ImageFixtures.path("synthetic/png_rgb8_37x23.png"))
        XCTAssertEqual(img.resizedBicubic(width: 37, height: 23), img)
    }
}
