import Foundation
import XCTest
@testable import SquintFormats

/// Files written by the reference implementation (torch + safetensors.save_file) read back exactly as
/// python describes them in fixtures/safetensors/expected.json.
final class SafetensorsReaderTests: XCTestCase {
    private func checkAgainstPython(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let exp = SafetensorsFixtures.expectedFile(name)
        let st = try SafetensorsFile(path: SafetensorsFixtures.path(name))
        XCTAssertEqual(st.headerLength, exp["header_length"] as! Int, file: file, line: line)
        XCTAssertEqual(st.mapping.size, exp["file_size"] as! Int, file: file, line: line)
        XCTAssertEqual(st.metadata, exp["metadata"] as! [String: String], file: file, line: line)
        let tensors = exp["tensors"] as! [[String: Any]]
        XCTAssertEqual(st.tensors.map(\.name), tensors.map { $0["name"] as! String }, "file order", file: file, line: line)
        for (info, e) in zip(st.tensors, tensors) {
            let name = e["name"] as! String
            XCTAssertEqual(info.dtype.rawValue, e["dtype"] as! String, name, file: file, line: line)
            XCTAssertEqual(info.shape, e["shape"] as! [Int], name, file: file, line: line)
            XCTAssertEqual(info.offset, e["offset"] as! Int, "absolute offset of \(name)", file: file, line: line)
            XCTAssertEqual(info.byteCount, e["byte_count"] as! Int, name, file: file, line: line)
            XCTAssertEqual(info.file, SafetensorsFixtures.path(exp["file"] as! String), file: file, line: line)
            let view = try st.view(name)
            XCTAssertEqual(Array(view.bytes), hexBytes(e["hex"] as! String), "bytes of \(name)", file: file, line: line)
            XCTAssertEqual(view.info, info, file: file, line: line)
        }
    }

    func testEveryDtypeScalarAndEmptyTensorsReadAsTorchWroteThem() throws {
        try checkAgainstPython("all_dtypes.safetensors")
        let st = try SafetensorsFile(path: SafetensorsFixtures.path("all_dtypes.safetensors"))
        XCTAssertEqual(Set(st.tensors.map(\.dtype)), Set(DType.allCases), "all 15 dtypes present")
        XCTAssertEqual(st.info("scalar.f32")?.shape, [])
        XCTAssertEqual(st.info("empty2d.bf16")?.byteCount, 0)
        XCTAssertEqual(st.metadata, ["format": "pt", "source": "squint fixtures"])
    }

    func testFileWithoutMetadataReadsWithEmptyMetadata() throws {
        try checkAgainstPython("no_metadata.safetensors")
    }

    func testCheckpointWithNoTensorsIsValid() throws {
        try checkAgainstPython("no_tensors.safetensors")
        XCTAssertTrue(try SafetensorsFile(path: SafetensorsFixtures.path("no_tensors.safetensors")).tensors.isEmpty)
    }

    func testShardsReadAsTorchWroteThem() throws {
        try checkAgainstPython("sharded/model-00001-of-00002.safetensors")
        try checkAgainstPython("sharded/model-00002-of-00002.safetensors")
    }

    func testFloatValuesDecodeToWhatTorchStored() throws {
        // F32 and F64 elements checked as numbers (not only bytes) against python's values.
        let exp = SafetensorsFixtures.expectedFile("all_dtypes.safetensors")["tensors"] as! [[String: Any]]
        let st = try SafetensorsFile(path: SafetensorsFixtures.path("all_dtypes.safetensors"))
        let f32 = try st.view("t.f32").bytes
        let want32 = (exp.first { $0["name"] as! String == "t.f32" }!["values"] as! [Double])
        XCTAssertEqual((0..<6).map { Double(f32.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self)) }, want32)
        let f64 = try st.view("t.f64").bytes
        let want64 = (exp.first { $0["name"] as! String == "t.f64" }!["values"] as! [Double])
        XCTAssertEqual((0..<6).map { f64.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }, want64)
        let wide = try st.view("wide.i64").bytes
        XCTAssertEqual((0..<3).map { wide.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }, [Int64.min, Int64.max, 1])
    }

    func testAskingForAnUnknownTensorNamesFileAndTensor() throws {
        let p = SafetensorsFixtures.path("no_metadata.safetensors")
        let st = try SafetensorsFile(path: p)
        assertFormatError(try st.view("nope"), "missingTensor", path: p, mentioning: "nope")
    }

    func testViewsOutliveTheFileObject() throws {
        // A view holds the mapping: the bytes stay valid after the SafetensorsFile is gone.
        var st: SafetensorsFile? = try SafetensorsFile(path: SafetensorsFixtures.path("no_metadata.safetensors"))
        let v = try st!.view("b")
        st = nil
        XCTAssertEqual((0..<4).map { v.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }, [0, 1, 2, 3])
    }
}
