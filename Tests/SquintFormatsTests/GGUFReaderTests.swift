import Foundation
import XCTest
import TestSupport
@testable import SquintFormats

/// fixtures/gguf, written by scripts/fixtures/make_gguf_fixtures.py with the `gguf` package 0.19.0.
enum GGUFFixtures {
    static func path(_ name: String) -> String { Fixtures.path("gguf/\(name)") }
    static func json(_ name: String) -> [String: Any] {
        try! JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(name)))) as! [String: Any]
    }
    static func bytes(_ name: String) -> [UInt8] { [UInt8](try! Data(contentsOf: URL(fileURLWithPath: path(name)))) }
}

/// Metadata and tensor infos against what gguf-py wrote (metadata_expected.json lists the inputs of
/// the generator; the generator checked them against gguf-py's own reader).
final class GGUFReaderTests: XCTestCase {
    /// Compares one decoded value with its JSON description (floats by bit pattern).
    private func check(_ v: GGUFValue, _ e: [String: Any], _ key: String, file: StaticString = #filePath, line: UInt = #line) {
        let type = e["type"] as! String
        XCTAssertEqual(v.type.name, type, key, file: file, line: line)
        switch v {
        case .array(let et, let items):
            XCTAssertEqual(et.name, e["element_type"] as? String, key, file: file, line: line)
            let expected = e["values"] as! [[String: Any]]
            XCTAssertEqual(items.count, expected.count, key, file: file, line: line)
            for (i, (a, b)) in zip(items, expected).enumerated() { check(a, b, "\(key)[\(i)]", file: file, line: line) }
        case .float32(let f):
            XCTAssertEqual(f.bitPattern, (e["bits"] as! NSNumber).uint32Value, key, file: file, line: line)
        case .float64(let d):
            XCTAssertEqual(d.bitPattern, (e["bits"] as! NSNumber).uint64Value, key, file: file, line: line)
        case .string(let s): XCTAssertEqual(s, e["value"] as? String, key, file: file, line: line)
        case .bool(let b): XCTAssertEqual(b, e["value"] as? Bool, key, file: file, line: line)
        case .uint64(let u): XCTAssertEqual(u, (e["value"] as! NSNumber).uint64Value, key, file: file, line: line)
        default:
            XCTAssertEqual(v.int, (e["value"] as! NSNumber).intValue, key, file: file, line: line)
        }
    }

    func testEveryMetadataValueTypeReadsBackInVersions2And3() throws {
        let expected = GGUFFixtures.json("metadata_expected.json")
        let keys = expected["keys"] as! [[String: Any]]
        for (name, version) in [("metadata_v3.gguf", 3), ("metadata_v2.gguf", 2)] {
            let g = try GGUFFile(path: GGUFFixtures.path(name))
            XCTAssertEqual(g.version, UInt32(version))
            XCTAssertEqual(g.alignment, 32)
            XCTAssertEqual(g.keyValues.map(\.key), keys.map { $0["key"] as! String }, "keys in file order")
            for (kv, e) in zip(g.keyValues, keys) { check(kv.value, e, kv.key) }
            XCTAssertEqual(g.architecture, "squint-fixture")
            XCTAssertEqual(g.value(forKey: "a.string")?.strings, ["a", "", "\u{fc}\n\t"])
            XCTAssertEqual(g.value(forKey: "a.nested")?.array?.compactMap(\.ints), [[1, 2], [3], [4, 5, 6]])
            XCTAssertEqual(g.value(forKey: "t.i64")?.int, Int(Int64.min))
            XCTAssertNil(g.value(forKey: "t.u64")?.int, "UINT64 max does not fit Int")
            XCTAssertEqual(g.value(forKey: "a.f64")?.doubles, [1.5, -0.0])
            // the one tensor
            XCTAssertEqual(g.ggufTensors.count, 1)
            let t = try XCTUnwrap(g.ggufTensor(named: "one"))
            XCTAssertEqual(t.ne, [3, 1]); XCTAssertEqual(t.shape, [1, 3]); XCTAssertEqual(t.type, .f32)
            XCTAssertEqual(t.offset, g.dataOffset); XCTAssertEqual(g.dataOffset % 32, 0)
            XCTAssertEqual(try GGUFDequant.dequantize(t, of: g), [1, 2, 3])
            // TensorFile view
            let v = try g.view("one")
            XCTAssertEqual(v.info.dtype, .f32); XCTAssertEqual(v.info.shape, [1, 3])
            XCTAssertEqual(Array(v.bytes.bindMemory(to: Float.self)), [1, 2, 3])
        }
    }

    func testTensorInfosOfEveryTypeWithCustomAlignment() throws {
        let g = try GGUFFile(path: GGUFFixtures.path("quants.gguf"))
        XCTAssertEqual(g.alignment, 64)
        XCTAssertEqual(g.value(forKey: "general.alignment"), .uint32(64))
        let expected = try SafetensorsFile(path: GGUFFixtures.path("quants_expected.safetensors"))
        XCTAssertEqual(Set(g.ggufTensors.map(\.name)), Set(expected.tensors.map(\.name)))
        XCTAssertEqual(Set(g.ggufTensors.map(\.type)), Set(GGMLType.allCases), "one tensor per type")
        for t in g.ggufTensors {
            let e = try XCTUnwrap(expected.info(t.name))
            XCTAssertEqual(t.shape, e.shape, t.name)
            XCTAssertEqual(t.ne, e.shape.reversed(), t.name)
            XCTAssertEqual((t.offset - g.dataOffset) % 64, 0, t.name)
            XCTAssertEqual(t.byteCount, t.elementCount / t.type.blockSize * t.type.blockBytes, t.name)
            XCTAssertEqual(t.type.name.lowercased(), t.name)
            let info = try XCTUnwrap(g.info(t.name))
            if t.type.isQuantized {
                XCTAssertEqual(info.dtype, .u8)
                XCTAssertEqual(info.shape, [t.ne[1], t.rowBytes])
            } else {
                XCTAssertEqual(info.dtype, t.type.plainDType)
                XCTAssertEqual(info.shape, t.shape)
            }
        }
    }
}

/// Dequantisation of every type, bit for bit against `gguf.quants.dequantize` (0.19.0), through the
/// scalar reference and the AVX2 kernel, whole tensors and odd block counts.
final class GGUFDequantTests: XCTestCase {
    func testEveryTypeDequantisesBitExactlyWithEveryKernel() throws {
        let g = try GGUFFile(path: GGUFFixtures.path("quants.gguf"))
        let expected = try SafetensorsFile(path: GGUFFixtures.path("quants_expected.safetensors"))
        var kernels: [GGUFDequant.Kernel] = [.scalar, .best]
        if GGUFDequant.hasAVX2 { kernels.append(.avx2) }
        for t in g.ggufTensors {
            let want = Array(try expected.view(t.name).bytes.bindMemory(to: UInt32.self))
            let blocks = try g.bytes(of: t)
            for k in kernels {
                let got = GGUFDequant.dequantize(t.type, blocks: blocks, kernel: k).map(\.bitPattern)
                XCTAssertEqual(got.count, want.count, "\(t.name) \(k)")
                if let i = got.indices.first(where: { $0 < want.count && got[$0] != want[$0] }) {
                    XCTFail("\(t.name) kernel \(k): element \(i) is \(String(got[i], radix: 16)), gguf-py gives \(String(want[i], radix: 16))")
                }
                // Odd block counts (and the all-zero / constant / tiny-scale rows inside them).
                let nBlocks = blocks.count / t.type.blockBytes
                for n in [1, 31, 33, 127, 129] where n <= nBlocks {
                    let part = UnsafeRawBufferPointer(rebasing: blocks[0..<(n * t.type.blockBytes)])
                    let p = GGUFDequant.dequantize(t.type, blocks: part, kernel: k).map(\.bitPattern)
                    XCTAssertEqual(p, Array(want[0..<(n * t.type.blockSize)]), "\(t.name) \(k) \(n) blocks")
                }
            }
        }
    }

    func testRowRangesMatchTheWholeTensor() throws {
        let g = try GGUFFile(path: GGUFFixtures.path("quants.gguf"))
        let expected = try SafetensorsFile(path: GGUFFixtures.path("quants_expected.safetensors"))
        for t in g.ggufTensors {
            let want = Array(try expected.view(t.name).bytes.bindMemory(to: UInt32.self))
            let rows = 1..<min(4, t.rowCount)
            let got = try GGUFDequant.dequantizeRows(t, of: g, rows: rows).map(\.bitPattern)
            XCTAssertEqual(got, Array(want[(rows.lowerBound * t.ne[0])..<(rows.upperBound * t.ne[0])]), t.name)
            XCTAssertThrowsError(try GGUFDequant.dequantizeRows(t, of: g, rows: 0..<(t.rowCount + 1)))
        }
    }

    /// Real checkpoints, when another tool has put them in the cache: the CRC-32 of gguf-py's
    /// dequantisation of a few tensors per type, recorded by the fixture script (real_expected.json).
    func testRealFilesInTheCacheDequantiseLikeGGUFPy() throws {
        let cache = ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
        let all = GGUFFixtures.json("real_expected.json")
        var checked = 0
        for (name, value) in all {
            let e = value as! [String: Any]
            let p = "\(cache)/models/\(name)"
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: p),
                  (attrs[.size] as? NSNumber)?.intValue == (e["size"] as! Int) else { continue }
            let g = try GGUFFile(path: p)
            XCTAssertEqual(g.ggufTensors.count, e["tensor_count"] as? Int, name)
            XCTAssertEqual(g.keyValues.count, e["kv_count"] as? Int, name)
            for t in e["tensors"] as! [[String: Any]] {
                let info = try XCTUnwrap(g.ggufTensor(named: t["name"] as! String))
                XCTAssertEqual(info.type.name, t["type"] as? String)
                XCTAssertEqual(info.ne, t["ne"] as? [Int])
                for kernel in [GGUFDequant.Kernel.scalar, .best] {
                let values = try GGUFDequant.dequantize(info, of: g, kernel: kernel)
                // CRC-32 (zlib's, in C here) rather than the recorded SHA-256: as sure to catch a changed
                // bit, and fast in a debug build.
                let crc = values.withUnsafeBytes { SQ4.crc32($0) }
                XCTAssertEqual(crc, (t["crc32"] as? NSNumber)?.uint32Value, "\(name) \(info.name) (\(info.type.name)) \(kernel)")
                }
                checked += 1
            }
        }
        if checked == 0 { throw XCTSkip("no real GGUF file of real_expected.json in \(cache)/models") }
    }
}
