import Foundation
import XCTest
import TestSupport
@testable import SquintFormats

/// Locates fixtures/safetensors from this file's path (the tests must run from a fresh clone).
enum SafetensorsFixtures {
    static var root: String { Fixtures.path("safetensors") }

    static func path(_ name: String) -> String { "\(root)/\(name)" }

    /// expected.json, written by scripts/fixtures/make_safetensors_fixtures.py from the torch tensors.
    static var expected: [String: Any] {
        let data = try! Data(contentsOf: URL(fileURLWithPath: path("expected.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    static func expectedFile(_ name: String) -> [String: Any] {
        (expected["files"] as! [[String: Any]]).first { ($0["file"] as! String) == name }!
    }

    static func bytes(_ name: String) -> [UInt8] {
        [UInt8](try! Data(contentsOf: URL(fileURLWithPath: path(name))))
    }
}

/// A fresh temporary folder per test, removed when it is released or, at the latest, when the test
/// process exits: XCTest keeps every test case instance alive until the end of the run, so a TempDir
/// held in a test class's property is never released before then (804 such folders, up to 76 MB
/// each, had piled up in /tmp before this was noticed).
final class TempDir {
    let path: String
    private static let lock = NSLock()
    private static var live = Set<String>()
    private static let removeAtExit: Void = { atexit { TempDir.removeLive() } }()

    init() {
        path = NSTemporaryDirectory() + "squint-st-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        TempDir.removeAtExit
        TempDir.lock.lock(); TempDir.live.insert(path); TempDir.lock.unlock()
    }
    deinit {
        try? FileManager.default.removeItem(atPath: path)
        TempDir.lock.lock(); TempDir.live.remove(path); TempDir.lock.unlock()
    }

    private static func removeLive() {
        lock.lock(); let paths = live; live.removeAll(); lock.unlock()
        for p in paths { try? FileManager.default.removeItem(atPath: p) }
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = "\(path)/\(name)"
        precondition(FileManager.default.createFile(atPath: p, contents: Data(bytes)), "cannot write \(p)")
        return p
    }
}

func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

/// Builds safetensors bytes from a header text and data, with an optional lying header length.
func safetensorsBytes(header: String, data: [UInt8], headerLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out = withUnsafeBytes(of: (headerLength ?? UInt64(h.count)).littleEndian) { Array($0) }
    out += h
    out += data
    return out
}

/// Asserts that `body` throws exactly the FormatError case `kind` naming `path`, with a message
/// containing `mentioning`.
func assertFormatError<T>(_ body: @autoclosure () throws -> T, _ kind: String, path: String, mentioning: String,
                          file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected FormatError.\(kind) mentioning '\(mentioning)', but nothing was thrown", file: file, line: line)
    } catch let e as FormatError {
        let (k, p): (String, String)
        switch e {
        case let .io(pp, _): (k, p) = ("io", pp)
        case let .truncated(pp, _): (k, p) = ("truncated", pp)
        case let .invalid(pp, _): (k, p) = ("invalid", pp)
        case let .unsupported(pp, _): (k, p) = ("unsupported", pp)
        case let .forbiddenGlobal(pp, _): (k, p) = ("forbiddenGlobal", pp)
        case let .missingTensor(pp, _): (k, p) = ("missingTensor", pp)
        case let .exists(pp): (k, p) = ("exists", pp)
        }
        XCTAssertEqual(k, kind, "wrong case: \(e)", file: file, line: line)
        XCTAssertEqual(p, path, "error names the wrong file: \(e)", file: file, line: line)
        XCTAssertTrue(e.description.contains(mentioning), "message '\(e)' does not mention '\(mentioning)'",
                      file: file, line: line)
    } catch {
        XCTFail("expected FormatError, got \(error)", file: file, line: line)
    }
}
