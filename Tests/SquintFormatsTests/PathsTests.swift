import Foundation
import XCTest
import SquintFormats

final class PathsTests: XCTestCase {
    func testParent() {
        let cases: [(String, String)] = [
            ("m", "."), ("model", "."), ("m/", "."), ("./m", "."), ("a/m", "a"), ("a/b/", "a"), ("a//b", "a"),
            ("/m", "/"), ("/", "/"), ("/a/b/c.json", "/a/b"), ("../x", ".."), ("", "."),
        ]
        for (path, parent) in cases { XCTAssertEqual(Paths.parent(of: path), parent, path) }
    }
}

/// Foundation's errors reach the user as "PATH: problem", never "NSCocoaErrorDomain Code=...".
final class FoundationErrorTextTests: XCTestCase {
    func testFoundationErrorsBecomeAFewPlainWords() throws {
        let dir = NSTemporaryDirectory() + "squint-fe-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Writing into a folder that does not exist.
        do {
            try Data([1]).write(to: URL(fileURLWithPath: dir + "/missing/x.bin"))
            XCTFail("the write should fail")
        } catch {
            XCTAssertTrue(FormatError.isFoundationError(error))
            XCTAssertEqual(FormatError.plainReason(error), "no such file or directory")
            let e = FormatError.io(path: dir + "/missing/x.bin", doing: "cannot write", error)
            XCTAssertEqual(e.description, dir + "/missing/x.bin: cannot write: no such file or directory")
        }
        // Moving onto an existing file (Foundation's NSCocoaErrorDomain 516).
        FileManager.default.createFile(atPath: dir + "/a", contents: Data([1]))
        FileManager.default.createFile(atPath: dir + "/b", contents: Data([2]))
        do {
            try FileManager.default.moveItem(atPath: dir + "/a", toPath: dir + "/b")
            XCTFail("the move should fail")
        } catch {
            let reason = FormatError.plainReason(error)
            XCTAssertTrue(reason == "already exists" || reason == "file exists", reason)
            XCTAssertFalse(reason.contains("Domain"), reason)
        }
        // Squint's own errors keep their text.
        XCTAssertFalse(FormatError.isFoundationError(FormatError.exists(path: "x")))
    }
}
