import Foundation
import XCTest
import TestSupport
@testable import SquintFormats

/// fixtures/torch/ (made by scripts/fixtures/make_torch_fixtures.py with real torch 2.13) and the
/// values torch recorded for it in expected.json.
enum TorchFixtures {
    static let root = Fixtures.path("torch")

    static func path(_ name: String) -> String { root + "/" + name }

    static let expected: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: root + "/expected.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    struct Tensor {
        var name: String, dtype: String, shape: [Int], storageOffset: Int, stride: [Int], bytes: [UInt8]
    }

    static func tensors(_ file: String) -> [Tensor] {
        (expected[file] as! [[String: Any]]).map {
            Tensor(name: $0["name"] as! String, dtype: $0["dtype"] as! String, shape: $0["shape"] as! [Int],
                   storageOffset: $0["storage_offset"] as! Int, stride: $0["stride"] as! [Int],
                   bytes: hexBytes($0["hex"] as! String))
        }
    }

    static func hexBytes(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        func nib(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
        while let a = it.next(), let b = it.next() { out.append(nib(a) << 4 | nib(b)) }
        return out
    }
}

/// Asserts that reading throws a FormatError and returns it for finer checks.
func assertFormatError(_ body: @autoclosure () throws -> Any, file: StaticString = #filePath, line: UInt = #line)
    -> FormatError?
{
    do {
        _ = try body()
        XCTFail("expected a FormatError, got success", file: file, line: line)
        return nil
    } catch let e as FormatError {
        return e
    } catch {
        XCTFail("expected a FormatError, got \(error)", file: file, line: line)
        return nil
    }
}
