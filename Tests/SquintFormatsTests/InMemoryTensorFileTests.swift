import XCTest
import SquintFormats

final class InMemoryTensorFileTests: XCTestCase {
    func testTensorsKeepInsertionOrderAndBytes() throws {
        let f = InMemoryTensorFile(path: "<test>")
        try f.add(name: "b", shape: [2, 2], f32: [1, 2, 3, 4])
        try f.add(name: "a", dtype: .bf16, shape: [3]) { raw in
            raw.storeBytes(of: UInt16(0x3f80).littleEndian, toByteOffset: 0, as: UInt16.self)   // 1.0 in bf16
        }
        XCTAssertEqual(f.tensors.map(\.name), ["b", "a"])
        let a = try f.view("a")
        XCTAssertEqual(a.info.byteCount, 6)
        XCTAssertEqual(Array(a.bytes), [0x80, 0x3f, 0, 0, 0, 0], "unfilled bytes are zero")
        let b = try f.view("b")
        XCTAssertEqual(Array(b.bytes.bindMemory(to: Float.self)), [1, 2, 3, 4])
    }

    func testDuplicateNamesMissingTensorsAndOverflowingShapesAreRefused() throws {
        let f = InMemoryTensorFile(path: "<test>")
        try f.add(name: "x", shape: [1], f32: [0])
        XCTAssertThrowsError(try f.add(name: "x", shape: [1], f32: [0])) {
            XCTAssertEqual($0 as? FormatError, .invalid(path: "<test>", what: "duplicate tensor name 'x'"))
        }
        XCTAssertThrowsError(try f.view("y")) { XCTAssertEqual($0 as? FormatError, .missingTensor(path: "<test>", name: "y")) }
        XCTAssertThrowsError(try f.add(name: "big", dtype: .f32, shape: [Int.max, 2]) { _ in })
        XCTAssertThrowsError(try f.add(name: "short", shape: [3], f32: [1, 2]))
        f.remove("x")
        XCTAssertTrue(f.tensors.isEmpty)
        XCTAssertThrowsError(try f.view("x"))
    }

    func testViewsOutliveTheFile() throws {
        var f: InMemoryTensorFile? = InMemoryTensorFile()
        try f!.add(name: "x", shape: [2], f32: [5, 6])
        let v = try f!.view("x")
        f = nil
        XCTAssertEqual(Array(v.bytes.bindMemory(to: Float.self)), [5, 6])
    }
}
