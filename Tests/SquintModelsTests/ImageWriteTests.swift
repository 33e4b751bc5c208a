import Foundation
import SquintImage
import XCTest

/// The PNG writer (for --draw output) round-trips through our decoder, writes atomically, and the
/// rectangle helper draws Pillow-style inclusive outlines.
final class ImageWriteTests: XCTestCase {
    private func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("squint-\(getpid())-\(name)").path
    }

    func testPNGRoundTripIsLossless() throws {
        let img = try RGBImage.load(path: ImageFixtures.path("synthetic/jpeg_rgb_420_101x67.jpg"))
        let path = tempPath("roundtrip.png")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try img.writePNG(path: path)
        XCTAssertEqual(try RGBImage.load(path: path), img)
        // No temporary file is left next to it.
        let dir = (path as NSString).deletingLastPathComponent
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasPrefix(".squint-\(getpid())-roundtrip.png.tmp") }
        XCTAssertEqual(leftovers, [])
    }

    func testWritePNGRefusesToOverwriteWhenAsked() throws {
        let path = tempPath("keep.png")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let a = RGBImage(width: 2, height: 2, fill: (1, 2, 3))
        try a.writePNG(path: path)
        XCTAssertThrowsError(try RGBImage(width: 1, height: 1).writePNG(path: path, overwrite: false)) { e in
            XCTAssertEqual((e as? ImageError)?.path, path)
        }
        XCTAssertEqual(try RGBImage.load(path: path), a)
        XCTAssertThrowsError(try a.writePNG(path: "/nonexistent-dir-squint/x.png")) { e in
            guard case .writeFailed(let p, _)? = e as? ImageError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, "/nonexistent-dir-squint/x.png")
        }
    }

    func testDrawRectangleOutlineIsInclusiveAndGrowsInward() {
        var img = RGBImage(width: 8, height: 6)
        img.drawRectangle(x1: 1, y1: 1, x2: 6, y2: 4, color: (255, 0, 0), lineWidth: 2)
        func red(_ x: Int, _ y: Int) -> Bool { img.pixels[(y * 8 + x) * 3] == 255 }
        var drawn = Set<[Int]>()
        for y in 0..<6 { for x in 0..<8 where red(x, y) { drawn.insert([x, y]) } }
        // A 6x4 box with a 2-pixel line: rows 1-2 (top) and 3-4 (bottom) cover all of it.
        var want = Set<[Int]>()
        for y in 1...4 { for x in 1...6 { want.insert([x, y]) } }
        XCTAssertEqual(drawn, want)
        var img3 = RGBImage(width: 12, height: 12)
        img3.drawRectangle(x1: 2, y1: 3, x2: 9, y2: 10, color: (7, 7, 7), lineWidth: 2)
        for y in 0..<12 {
            for x in 0..<12 {
                let inBox = (2...9).contains(x) && (3...10).contains(y)
                let inHole = (4...7).contains(x) && (5...8).contains(y)
                XCTAssertEqual(img3.pixels[(y * 12 + x) * 3], inBox && !inHole ? 7 : 0, "(\(x), \(y))")
            }
        }
        var img2 = RGBImage(width: 10, height: 10)
        img2.drawRectangle(x1: 2, y1: 2, x2: 7, y2: 7, color: (0, 9, 0), lineWidth: 1)
        XCTAssertEqual(img2.pixels[(2 * 10 + 2) * 3 + 1], 9)   // corner
        XCTAssertEqual(img2.pixels[(7 * 10 + 7) * 3 + 1], 9)   // far corner, inclusive
        XCTAssertEqual(img2.pixels[(4 * 10 + 4) * 3 + 1], 0)   // inside stays
        XCTAssertEqual(img2.pixels[(8 * 10 + 8) * 3 + 1], 0)   // outside stays
        // Off-image and hostile coordinates are clipped, never trap.
        img2.drawRectangle(x1: -5, y1: Int.min, x2: Int.max, y2: 3, color: (1, 1, 1), lineWidth: Int.max)
        img2.drawRectangle(x1: 100, y1: 100, x2: 200, y2: 200, color: (1, 1, 1), lineWidth: 3)
    }
}
