import Foundation
import XCTest
import TestSupport
import SquintFormats

/// fixtures/gptq-cases: AutoGPTQ reference cases (see its README for provenance), located from this
/// file's path so the tests run from a fresh clone.
enum GPTQFixtures {
    static var root: String { Fixtures.path("gptq-cases") }

    static let caseNames = ["l0_mlp_c_proj", "l1_attn_c_attn"]

    static var casesJSON: [String: Any] {
        let data = try! Data(contentsOf: URL(fileURLWithPath: "\(root)/cases.json"))
        return (try! JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [String: Any]
    }

    static func file(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: "\(root)/\(name).safetensors")
    }
}

/// A fixture tensor copied out of the mapping, with its shape.
struct Loaded<T> {
    var values: [T]
    var shape: [Int]
}

func load<T>(_ file: SafetensorsFile, _ name: String, as: T.Type, dtype: DType) throws -> Loaded<T> {
    let v = try file.view(name)
    XCTAssertEqual(v.info.dtype, dtype, "\(name) dtype")
    let n = v.info.elementCount
    precondition(v.bytes.count == n * MemoryLayout<T>.stride)
    let values = [T](unsafeUninitializedCapacity: n) { buf, count in
        _ = memcpy(buf.baseAddress!, v.bytes.baseAddress!, v.bytes.count); count = n
    }
    return Loaded(values: values, shape: v.info.shape)
}

func f32(_ f: SafetensorsFile, _ name: String) throws -> Loaded<Float> { try load(f, name, as: Float.self, dtype: .f32) }
func i32(_ f: SafetensorsFile, _ name: String) throws -> Loaded<Int32> { try load(f, name, as: Int32.self, dtype: .i32) }
func u8(_ f: SafetensorsFile, _ name: String) throws -> Loaded<UInt8> { try load(f, name, as: UInt8.self, dtype: .u8) }
func f16bits(_ f: SafetensorsFile, _ name: String) throws -> Loaded<UInt16> { try load(f, name, as: UInt16.self, dtype: .f16) }
