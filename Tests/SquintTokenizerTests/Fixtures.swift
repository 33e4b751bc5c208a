import Foundation
import XCTest
import TestSupport
@testable import SquintTokenizer

/// fixtures/tokenizer/ of this package, found from this file's path (tests must not need ../shared).
enum TokenizerFixtures {
    static let directory = URL(fileURLWithPath: Fixtures.path("tokenizer"))

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Loaded once for the whole test run (parsing 151,643 lines takes a moment in debug builds).
    static let tokenizer: QwenTokenizer = {
        do { return try QwenTokenizer(vocabularyFile: path("qwen.tiktoken")) } catch {
            fatalError("cannot load fixtures/tokenizer/qwen.tiktoken: \(error)")
        }
    }()
}

/// JSON numbers arrive as NSNumber / Int; normalise to [Int].
func intArray(_ any: Any?, file: StaticString = #filePath, line: UInt = #line) throws -> [Int] {
    let a = try XCTUnwrap(any as? [Any], file: file, line: line)
    return try a.map { try XCTUnwrap(($0 as? NSNumber)?.intValue, file: file, line: line) }
}
