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
