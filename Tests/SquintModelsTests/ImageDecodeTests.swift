import Foundation
import SquintImage
import TestSupport
import XCTest
import SquintTensor

/// Decoding must give exactly the bytes Pillow's Image.open(f).convert("RGB") gives: Qwen-VL's
/// pixel_values start from them. Ground truth: fixtures/images/expected.json (Pillow 13.0.0).
final class ImageDecodeTests: XCTestCase {
    func testEveryFixtureImageDecodesToPillowsRGBBytes() throws {
        let expected = try ImageFixtures.expectedImages()
        XCTAssertGreaterThanOrEqual(expected.count, 30, "expected.json lists the synthetic cases and photos")
        for (rel, rec) in expected.sorted(by: { $0.key < $1.key }) {
            let img = try RGBImage.load(path: ImageFixtures.path(rel))
            XCTAssertEqual(img.width, rec["width"] as? Int, rel)
            XCTAssertEqual(img.height, rec["height"] as? Int, rel)
            XCTAssertEqual(sha256Hex(img.pixels), rec["decoded_rgb_sha256"] as? String,
                           "\(rel) (Pillow mode \(rec["pil_mode"] ?? "?")) decodes differently from Pillow")
            if let hex = rec["decoded_rgb_hex"] as? String {
                XCTAssertEqual(img.pixels, ImageFixtures.bytes(hex: hex), rel)
            }
        }
    }

    /// The photos kept in fixtures are two of the calibration set; decoded_pixels.json (written by
    /// the calibration generator, independently of our fixture script) must agree too.
    func testFixturePhotosMatchCalibrationDecodedPixels() throws {
        let cal = try ImageFixtures.json("decoded_pixels.json")["images"] as? [String: [String: Any]] ?? [:]
        for name in ["skimage_chelsea.png", "skimage_rocket.jpg"] {
            let rec = try XCTUnwrap(cal["images/\(name)"], name)
            let img = try RGBImage.load(path: ImageFixtures.path("photos/\(name)"))
            XCTAssertEqual(sha256Hex(img.pixels), rec["decoded_rgb_sha256"] as? String, name)
            let r = img.resizedBicubic(width: 448, height: 448)
            XCTAssertEqual(sha256Hex(r.pixels), rec["resized_448_bicubic_rgb_sha256"] as? String, name)
        }
    }

    /// All eight calibration photos, when /work/shared is present (not needed on a fresh clone).
    func testAllCalibrationPhotosMatchPillow() throws {
        let dir = ImageFixtures.calibrationDir
        let jsonPath = dir + "/decoded_pixels.json"
        guard FileManager.default.fileExists(atPath: jsonPath) else {
            throw XCTSkip("\(dir) not present on this machine")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: jsonPath))
        let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let images = try XCTUnwrap(obj?["images"] as? [String: [String: Any]])
        XCTAssertEqual(images.count, 8)
        for (rel, rec) in images.sorted(by: { $0.key < $1.key }) {
            let img = try RGBImage.load(path: dir + "/" + rel)
            XCTAssertEqual(img.width, rec["width"] as? Int, rel)
            XCTAssertEqual(img.height, rec["height"] as? Int, rel)
            XCTAssertEqual(sha256Hex(img.pixels), rec["decoded_rgb_sha256"] as? String, "decode \(rel)")
            let r = img.resizedBicubic(width: 448, height: 448)
            XCTAssertEqual(sha256Hex(r.pixels), rec["resized_448_bicubic_rgb_sha256"] as? String, "resize \(rel)")
        }
    }

    func testFormatIsDetectedByMagicBytesNotByName() throws {
        // A PNG saved under a .jpg name still decodes as PNG.
        let src = ImageFixtures.path("synthetic/png_rgb8_37x23.png")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("squint-png-named-\(getpid()).jpg").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.copyItem(atPath: src, toPath: tmp)
        XCTAssertEqual(try RGBImage.load(path: tmp), try RGBImage.load(path: src))
        XCTAssertEqual(RGBImage.detectFormat([0xFF, 0xD8, 0xFF, 0xE0]), .jpeg)
        XCTAssertNil(RGBImage.detectFormat(Array("GIF89a".utf8)))
    }

    /// Every corrupt fixture is one Pillow refuses (recorded in expected.json); we must refuse it
    /// too, with the right error kind and the file's path in the message.
    func testCorruptFilesThrowErrorsNamingTheFile() throws {
        let corrupt = try ImageFixtures.expectedCorrupt()
        XCTAssertGreaterThanOrEqual(corrupt.count, 15)
        let kinds: [String: String] = [
            "corrupt/empty.png": "notAnImage",
            "corrupt/text_not_an_image.jpg": "notAnImage",
            "corrupt/gif_unsupported.gif": "notAnImage",
            "corrupt/png_truncated_in_idat.png": "truncated",
            "corrupt/png_truncated_in_header.png": "truncated",
            "corrupt/png_bad_ihdr_crc.png": "corrupt",
            "corrupt/png_bad_zlib.png": "corrupt",
            "corrupt/png_bomb_100000x100000.png": "tooLarge",
            "corrupt/png_bomb_wide_3000000x100.png": "tooLarge",
            "corrupt/jpeg_truncated_half.jpg": "truncated",
            "corrupt/jpeg_missing_eoi.jpg": "truncated",
            "corrupt/jpeg_truncated_in_header.jpg": "truncated",
            "corrupt/jpeg_bomb_65000x65000.jpg": "tooLarge",
            "corrupt/jpeg_bad_huffman.jpg": "corrupt",
            "corrupt/jpeg_12bit_precision.jpg": "unsupported",
        ]
        XCTAssertEqual(Set(kinds.keys), Set(corrupt.keys), "every corrupt fixture has an expected error kind")
        for (rel, rec) in corrupt.sorted(by: { $0.key < $1.key }) {
            let pil = rec["pil_result"] as? String ?? ""
            XCTAssertNotEqual(pil, "accepted", "\(rel): Pillow accepted it, so it is no corrupt fixture")
            let path = ImageFixtures.path(rel)
            do {
                _ = try RGBImage.load(path: path)
                XCTFail("\(rel) decoded, but Pillow says: \(pil)")
            } catch let e as ImageError {
                XCTAssertEqual(e.path, path, rel)
                XCTAssertTrue(e.description.hasPrefix(path + ": "), "\(rel): message must name the file: \(e)")
                let kind: String
                switch e {
                case .notAnImage: kind = "notAnImage"
                case .truncated: kind = "truncated"
                case .corrupt: kind = "corrupt"
                case .tooLarge: kind = "tooLarge"
                case .unsupported: kind = "unsupported"
                case .unreadable: kind = "unreadable"
                case .writeFailed: kind = "writeFailed"
                }
                XCTAssertEqual(kind, kinds[rel], "\(rel): \(e)")
            }
        }
    }

    /// Fuzz regression (issue 12.2, fixtures/fuzz/jpeg/regressions/): a 209-byte progressive JPEG whose
    /// header claims 36385x1983 pixels (under the pixel cap) kept libjpeg busy for seconds filling a
    /// 216 MB image; no Huffman-coded JPEG can code more than 512 pixels per byte, so it is refused as
    /// truncated before any image buffer exists.
    func testTinyJPEGClaimingMorePixelsThanItCanCodeIsRefusedAsTruncated() throws {
        let path = Fixtures.path("fuzz/jpeg/regressions/progressive_36385x1983_in_209_bytes.jpg")
        XCTAssertThrowsError(try RGBImage.load(path: path)) { e in
            guard case let .truncated(p, what)? = e as? ImageError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, path)
            XCTAssertTrue(what.contains("36385x1983"), what)
        }
    }

    func testMissingFileAndDirectoryAreUnreadable() {
        let missing = ImageFixtures.path("no_such_file.png")
        XCTAssertThrowsError(try RGBImage.load(path: missing)) { e in
            XCTAssertEqual((e as? ImageError)?.path, missing)
            guard case .unreadable = e as? ImageError else { return XCTFail("\(e)") }
        }
        let dir = ImageFixtures.path("synthetic")
        XCTAssertThrowsError(try RGBImage.load(path: dir)) { e in
            guard case .unreadable(let p, _)? = e as? ImageError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, dir)
        }
    }

    /// Cutting a valid file at every length must give an error (or, for PNG cut inside the trailing
    /// IEND, the image, as Pillow accepts), never a crash: the setjmp paths are all exercised.
    func testEveryPrefixOfSmallFilesFailsCleanly() throws {
        for rel in ["synthetic/png_rgb8_interlaced_13x11.png", "synthetic/jpeg_rgb_422_45x31.jpg"] {
            let full = try Array(Data(contentsOf: URL(fileURLWithPath: ImageFixtures.path(rel))))
            let whole = try RGBImage.decode(full, name: rel)
            for n in 0..<full.count {
                do {
                    let img = try RGBImage.decode(Array(full[0..<n]), name: rel)
                    XCTAssertTrue(rel.hasSuffix(".png") && n >= full.count - 12, "\(rel) cut at \(n) decoded")
                    XCTAssertEqual(img, whole)
                } catch let e as ImageError {
                    XCTAssertEqual(e.path, rel)
                }
            }
        }
    }

    func testPixelLimitIsCheckedBeforeDecoding() throws {
        let rel = "synthetic/png_rgb8_37x23.png"
        XCTAssertThrowsError(try RGBImage.load(path: ImageFixtures.path(rel), maxPixels: 37 * 23 - 1)) { e in
            guard case .tooLarge? = e as? ImageError else { return XCTFail("\(e)") }
        }
        XCTAssertNoThrow(try RGBImage.load(path: ImageFixtures.path(rel), maxPixels: 37 * 23))
    }
}

/// Hostile bytes: flipped bits anywhere in small valid files. libjpeg may accept some (it conceals
/// damage in entropy-coded data, as Pillow does), so the assertion is about the contract: either a
/// typed error naming the file, or an image with the header's size and a full pixel buffer.
final class ImageHostileBytesTests: XCTestCase {
    func testFlippedBitsGiveTypedErrorsOrWellFormedImages() throws {
        var rng = SplitMix64(seed: 20240611)
        var errors = 0
        for rel in ["synthetic/png_rgb8_interlaced_13x11.png", "synthetic/jpeg_rgb_422_45x31.jpg",
                    "synthetic/png_palette4_short_plte_15x6.png", "synthetic/jpeg_grey_progressive_33x65.jpg"] {
            let full = try Array(Data(contentsOf: URL(fileURLWithPath: ImageFixtures.path(rel))))
            for _ in 0..<300 {
                var b = full
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let i = Int(rng.next() % UInt64(b.count))
                    b[i] ^= UInt8(1 << (rng.next() % 8))
                }
                do {
                    let img = try RGBImage.decode(b, name: rel)
                    XCTAssertGreaterThan(img.width, 0)
                    XCTAssertEqual(img.pixels.count, img.width * img.height * 3)
                } catch let e as ImageError {
                    XCTAssertEqual(e.path, rel)
                    errors += 1
                }
            }
        }
        // PNG chunks are CRC-protected, so most PNG corruptions must be refused.
        XCTAssertGreaterThan(errors, 300)
    }
}

