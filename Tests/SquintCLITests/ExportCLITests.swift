import Foundation
import XCTest
import SquintFormats
import TestSupport

/// `squint export` end to end: output file, exit codes and messages.
final class ExportCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("export-cli") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func testExportWritesTheSelectedTensorsAndRefusesToOverwrite() throws {
        let src = Fixtures.path("gguf/quants.gguf"), out = tmp + "/o.safetensors"
        let r = try Fixtures.run(squint, ["export", src, "--tensors", "^q4_k$", "-o", out, "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        XCTAssertEqual(obj["format"] as? String, "gguf")
        let rows = try XCTUnwrap(obj["tensors"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["name"] as? String }, ["q4_k"])
        XCTAssertEqual(rows.first?["from"] as? String, "Q4_K")
        let f = try SafetensorsFile(path: out)
        XCTAssertEqual(f.info("q4_k")?.shape, [33, 256])
        XCTAssertEqual(obj["bytes"] as? Int, Int(try FileManager.default.attributesOfItem(atPath: out)[.size] as! UInt64))

        let again = try Fixtures.run(squint, ["export", src, "--tensors", "f16", "-o", out])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.err.contains("already exists"), again.err)
        XCTAssertEqual(try SafetensorsFile(path: out).tensors.map(\.name), ["q4_k"])
        let forced = try Fixtures.run(squint, ["export", src, "--tensors", "^f16$", "-o", out, "--force", "--dtype", "bf16"])
        XCTAssertEqual(forced.status, 0, forced.err)
        XCTAssertEqual(try SafetensorsFile(path: out).info("f16")?.dtype, .bf16)
    }

    func testUsageErrorsExit64AndNoMatchExits1NamingTheRegex() throws {
        let src = Fixtures.path("gguf/quants.gguf"), out = tmp + "/o.safetensors"
        let bad = try Fixtures.run(squint, ["export", src, "--tensors", "([", "-o", out])
        XCTAssertEqual(bad.status, 64, bad.err)
        XCTAssertTrue(bad.err.contains("not a valid regular expression"), bad.err)
        XCTAssertEqual(try Fixtures.run(squint, ["export", src, "--tensors", "q", "-o", out, "--dtype", "f64"]).status, 64)
        XCTAssertEqual(try Fixtures.run(squint, ["export", src, "--tensors", "q", "-o", out, "--raw", "--dtype", "f16"]).status, 64)
        XCTAssertEqual(try Fixtures.run(squint, ["export", src, "-o", out]).status, 64)
        let none = try Fixtures.run(squint, ["export", src, "--tensors", "^zzz", "-o", out])
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.err.contains("'^zzz'"), none.err)
        let missing = try Fixtures.run(squint, ["export", tmp + "/nope.gguf", "--tensors", "q", "-o", out])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("nope.gguf"), missing.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testHelpSaysInt4ModulesBecomeXWeight() throws {
        let r = try Fixtures.run(squint, ["export", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.out.contains("X.weight"), r.out)
        XCTAssertTrue(try Fixtures.run(squint, ["--help"]).out.contains("export"))
    }
}
