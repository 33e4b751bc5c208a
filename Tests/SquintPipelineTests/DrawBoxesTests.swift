import Foundation
import XCTest
import SquintImage
@testable import SquintPipeline
import TestSupport

/// `--draw` places boxes as the official `draw_bbox_on_latest_picture`: corners (x/1000*w, y/1000*h),
/// truncated to integers.
final class DrawBoxesTests: XCTestCase {
    func testBoxCornersFollowTheOfficialScaling() throws {
        let tmp = Fixtures.temporaryFolder("draw")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let src = "\(tmp)/grey.png"
        try RGBImage(width: 300, height: 200, fill: (128, 128, 128)).writePNG(path: src)
        let out = "\(tmp)/boxes.png"
        // (536,509),(588,602) on 300x200 -> (160,101),(176,120): int(536/1000*300) = 160, int(509/1000*200) = 101.
        try Runner.drawBoxes([.init(ref: "hand", x1: 536, y1: 509, x2: 588, y2: 602)], imagePath: src, output: out, overwrite: false)
        let img = try RGBImage.load(path: out)
        func px(_ x: Int, _ y: Int) -> [UInt8] { let o = (y * img.width + x) * 3; return Array(img.pixels[o..<(o + 3)]) }
        let blue: [UInt8] = [31, 119, 180]
        XCTAssertEqual(px(160, 101), blue)    // top-left corner
        XCTAssertEqual(px(176, 120), blue)    // bottom-right corner (inclusive)
        XCTAssertEqual(px(168, 101), blue)    // top edge
        XCTAssertEqual(px(168, 110), [128, 128, 128])   // inside stays untouched
        XCTAssertEqual(px(159, 101), [128, 128, 128])   // just outside
        XCTAssertThrowsError(try Runner.drawBoxes([], imagePath: src, output: out, overwrite: false))
    }
}
