import Foundation
import XCTest
import TestSupport

/// Locates fixtures/images from this source file (walks up to the package root) and reads the
/// expectations written by scripts/fixtures/make_image_fixtures.py (Pillow 13 ground truth).
enum ImageFixtures {
    static let packageRoot = URL(fileURLWithPath: Fixtures.packageRoot())

    static let root = packageRoot.appendingPathComponent("fixtures/images")

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent(name))
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw NSError(domain: "ImageFixtures", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(name) is not a JSON object"])
        }
        return obj
    }

    /// expected.json -> images: relative path -> record.
    static func expectedImages() throws -> [String: [String: Any]] {
        try json("expected.json")["images"] as? [String: [String: Any]] ?? [:]
    }

    static func expectedCorrupt() throws -> [String: [String: Any]] {
        try json("expected.json")["corrupt"] as? [String: [String: Any]] ?? [:]
    }

    static func bytes(hex: String) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(hex.utf8.count / 2)
        var hi: UInt8? = nil
        for c in hex.utf8 {
            let v: UInt8 = c <= 57 ? c - 48 : c - 87
            if let h = hi { out.append(h << 4 | v); hi = nil } else { hi = v }
        }
        return out
    }

    /// The calibration photos of the full data set, when this machine has them.
    static let calibrationDir = "/work/shared/calibration"
}
