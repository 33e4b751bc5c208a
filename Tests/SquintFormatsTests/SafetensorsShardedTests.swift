import Foundation
import XCTest
@testable import SquintFormats

/// ShardedCheckpoint against the python-written two-shard fixture, and one hostile folder per index
/// rule (Formats/SAFETENSORS.md §4).
final class SafetensorsShardedTests: XCTestCase {
    let dir = TempDir()

    /// A copy of fixtures/safetensors/sharded with the index replaced by `index` (when given).
    private func folder(index: [String: Any]? = nil, extraShard: (String, [UInt8])? = nil) throws -> String {
        for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"] {
            dir.write(f, SafetensorsFixtures.bytes("sharded/\(f)"))
        }
        if let index {
            dir.write("model.safetensors.index.json", [UInt8](try JSONSerialization.data(withJSONObject: index)))
        }
        if let (name, bytes) = extraShard { dir.write(name, bytes) }
        return "\(dir.path)/model.safetensors.index.json"
    }

    private var expected: [String: Any] { SafetensorsFixtures.expected["sharded"] as! [String: Any] }
    private var weightMap: [String: String] { expected["weight_map"] as! [String: String] }
    private var totalSize: Int { expected["total_size"] as! Int }

    func testShardedFixtureReadsAsOneCheckpoint() throws {
        let p = SafetensorsFixtures.path("sharded/model.safetensors.index.json")
        let ck = try ShardedCheckpoint(indexPath: p)
        XCTAssertEqual(ck.path, p)
        XCTAssertEqual(ck.metadata, ["total_size": String(totalSize)])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: ck.tensors.map { ($0.name, ($0.file as NSString).lastPathComponent) }),
                       weightMap)
        // Shard order, then each shard's file order, as python's headers give it.
        var want: [[String: Any]] = []
        for s in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            want += SafetensorsFixtures.expectedFile("sharded/\(s)")["tensors"] as! [[String: Any]]
        }
        XCTAssertEqual(ck.tensors.map(\.name), want.map { $0["name"] as! String })
        for (t, e) in zip(ck.tensors, want) {
            XCTAssertEqual(t.offset, e["offset"] as! Int)
            XCTAssertEqual(Array(try ck.view(t.name).bytes), hexBytes(e["hex"] as! String), t.name)
        }
        assertFormatError(try ck.view("absent"), "missingTensor", path: p, mentioning: "absent")
    }

    func testShardOpenerIsPluggable() throws {
        var opened: [String] = []
        let ck = try ShardedCheckpoint(indexPath: SafetensorsFixtures.path("sharded/model.safetensors.index.json")) {
            opened.append(($0 as NSString).lastPathComponent)
            return try SafetensorsFile(path: $0)
        }
        XCTAssertEqual(opened, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        XCTAssertEqual(ck.shards.count, 2)
    }

    func testIndexNamingAMissingShardIsAnIOErrorNamingTheShard() throws {
        var map = weightMap
        map["ghost.weight"] = "model-00003-of-00003.safetensors"
        let p = try folder(index: ["metadata": ["total_size": totalSize], "weight_map": map])
        assertFormatError(try ShardedCheckpoint(indexPath: p), "io", path: "\(dir.path)/model-00003-of-00003.safetensors",
                          mentioning: "does not exist")
    }

    func testIndexedTensorMissingFromItsShardIsRefused() throws {
        var map = weightMap
        map["ghost.weight"] = "model-00001-of-00002.safetensors"
        let p = try folder(index: ["metadata": ["total_size": totalSize], "weight_map": map])
        assertFormatError(try ShardedCheckpoint(indexPath: p), "missingTensor",
                          path: "\(dir.path)/model-00001-of-00002.safetensors", mentioning: "ghost.weight")
    }

    func testTensorInAShardButNotInTheIndexIsRefused() throws {
        var map = weightMap
        map["lm_head.weight"] = nil
        let p = try folder(index: ["metadata": ["total_size": totalSize - 4], "weight_map": map])
        assertFormatError(try ShardedCheckpoint(indexPath: p), "invalid",
                          path: "\(dir.path)/model-00002-of-00002.safetensors",
                          mentioning: "tensor 'lm_head.weight' is in this shard but not listed in the index")
    }

    func testTensorInTwoShardsIsRefused() throws {
        // A third shard that also holds model.embed.weight (listed for shard 1).
        let extra = "\(dir.path)/model-00003-of-00003.safetensors"
        let src = try SafetensorsFile(path: SafetensorsFixtures.path("sharded/model-00001-of-00002.safetensors"))
        let embed = src.info("model.embed.weight")!
        var map = weightMap
        map["extra.weight"] = "model-00003-of-00003.safetensors"
        let p = try folder(index: ["metadata": ["total_size": totalSize + 1], "weight_map": map])
        try SafetensorsWriter(tensors: [.init(name: "model.embed.weight", dtype: embed.dtype, shape: embed.shape),
                                        .init(name: "extra.weight", dtype: .u8, shape: [1])])
            .write(to: extra, overwrite: false) { t in [UInt8](repeating: 0, count: t.byteCount!) }
        assertFormatError(try ShardedCheckpoint(indexPath: p), "invalid", path: extra,
                          mentioning: "index \(p) lists it in model-00001-of-00002.safetensors")
    }

    func testTotalSizeMismatchIsRefused() throws {
        let p = try folder(index: ["metadata": ["total_size": totalSize + 2], "weight_map": weightMap])
        assertFormatError(try ShardedCheckpoint(indexPath: p), "invalid", path: p,
                          mentioning: "total_size is \(totalSize + 2) but the shards' tensors hold \(totalSize) bytes")
    }

    func testIndexWithoutTotalSizeIsAccepted() throws {
        let p = try folder(index: ["weight_map": weightMap])
        XCTAssertEqual(try ShardedCheckpoint(indexPath: p).tensors.count, weightMap.count)
    }

    func testMalformedIndexesAreRefused() throws {
        let cases: [(String, String)] = [
            ("{\"metadata\":{}}", "no \"weight_map\""),
            ("{\"weight_map\":[]}", "\"weight_map\" must be an object"),
            ("{\"weight_map\":{\"a\":1}}", "weight_map[\"a\"] must be a shard file name"),
            ("{\"weight_map\":{\"a\":\"../x.safetensors\"}}", "plain file names"),
            ("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "plain file names"),
            ("{\"weight_map\":{\"a\":\"\"}}", "plain file names"),
            ("{\"weight_map\":{},\"metadata\":[]}", "\"metadata\" must be an object"),
            ("{\"weight_map\":{},\"metadata\":{\"total_size\":-1}}", "total_size must be a non-negative integer"),
            ("{\"weight_map\":{},\"metadata\":{\"total_size\":1.5}}", "total_size must be a non-negative integer"),
            ("{\"weight_map\":{\"a\":\"s\",\"a\":\"t\"}}", "repeats the key \"a\""),
            ("{\"weight_map\":{}", "not valid JSON"),
            ("[]", "must be a JSON object"),
        ]
        for (i, (text, mention)) in cases.enumerated() {
            let p = dir.write("index-\(i).json", Array(text.utf8))
            assertFormatError(try ShardedCheckpoint(indexPath: p), "invalid", path: p, mentioning: mention)
        }
    }

    func testInvalidShardErrorNamesTheShard() throws {
        let p = try folder()
        let shard = "\(dir.path)/model-00002-of-00002.safetensors"
        let whole = SafetensorsFixtures.bytes("sharded/model-00002-of-00002.safetensors")
        dir.write("model-00002-of-00002.safetensors", Array(whole.dropLast()))
        assertFormatError(try ShardedCheckpoint(indexPath: p), "truncated", path: shard, mentioning: "needs data bytes")
    }
}
