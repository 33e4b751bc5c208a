import Foundation
import XCTest
import SquintFormats
import SquintModels
@testable import SquintPipeline
import TestSupport

/// `synth` against the reference: the official generator's checkpoint files are described by
/// fixtures/qwen-vl-tiny/manifest.json (per-tensor and per-file sha256); the official release's
/// shard map by fixtures/qwen-vl/bf16.index.json.
final class SynthTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("synth") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    var manifest: [String: Any] { try! Fixtures.json("qwen-vl-tiny/manifest.json") as! [String: Any] }
    var tinyConfig: String { Fixtures.path("qwen-vl-tiny/config.json") }

    func synth(_ format: Synth.Format, shard: Int? = nil, to name: String) throws -> String {
        let out = "\(tmp)/\(name)"
        _ = try Synth.run(.init(configPath: tinyConfig, seed: 20240611, format: format, maxShardSize: shard, output: out))
        return out
    }

    func testSafetensorsFileIsByteIdenticalToTheOfficialGenerator() throws {
        let out = try synth(.safetensors, to: "st")
        let expected = (manifest["omitted_files"] as! [String: Any])["files"] as! [String: [String: Any]]
        let file = MappedFile.self
        let m = try file.init(path: "\(out)/model.safetensors")
        XCTAssertEqual(m.size, expected["model.safetensors"]!["bytes"] as! Int)
        XCTAssertEqual(sha256Hex(m.bytes), expected["model.safetensors"]!["sha256"] as! String)
    }

    /// Every tensor's BF16 bytes, read back through `inspect`'s reader path (absolute offsets read
    /// from the raw file, not through the reader's own view), hash to the reference's sha256.
    func checkTensorsAgainstManifest(_ folder: String) throws {
        let hashes = manifest["tensor_bf16_sha256"] as! [String: String]
        let ck = try CheckpointOpener.open(folder)
        XCTAssertEqual(Set(ck.file.tensors.map(\.name)), Set(hashes.keys))
        var maps: [String: MappedFile] = [:]
        for t in ck.file.tensors {
            let m = try maps[t.file] ?? MappedFile(path: t.file)
            maps[t.file] = m
            let raw = try m.slice(t.offset, t.byteCount, what: t.name)
            XCTAssertEqual(sha256Hex(raw), hashes[t.name], t.name)
        }
    }

    func testSafetensorsTensorsMatchReferenceHashes() throws {
        try checkTensorsAgainstManifest(try synth(.safetensors, to: "st"))
    }

    func testBinShardsMatchReferenceShardingAndHashes() throws {
        let out = try synth(.bin, shard: 39_747_574, to: "bin")
        try checkTensorsAgainstManifest(out)
        // Same shard names, tensor-to-shard map and total size as transformers wrote for the reference.
        let ours = try ShardIndex.read(path: "\(out)/pytorch_model.bin.index.json")
        let ref = try ShardIndex.read(path: Fixtures.path("qwen-vl-tiny/pytorch_model.bin.index.json"))
        XCTAssertEqual(ours.weightMap, ref.weightMap)
        XCTAssertEqual(ours.totalSize, 79_298_540)
        XCTAssertEqual(ours.totalSize, ref.totalSize)
        let counts = Dictionary(grouping: ours.weightMap.values, by: { $0 }).mapValues(\.count)
        XCTAssertEqual(counts, ["pytorch_model-00001-of-00002.bin": 16, "pytorch_model-00002-of-00002.bin": 45])
    }

    /// The real 9.6B layout without writing 19 GB: the plan `synth --format bin` follows for the
    /// official config reproduces the official index exactly.
    func testRealConfigReproducesOfficialBF16ShardMap() throws {
        let cfg = try QwenVLConfig.load(path: Fixtures.path("qwen-vl/config-bf16.json"))
        let plan = Synth.binPlan(specs: cfg.bf16TensorSpecs(), maxShardSize: Synth.defaultBinShardSize)
        let official = try ShardIndex.read(path: Fixtures.path("qwen-vl/bf16.index.json"))
        XCTAssertEqual(plan.shards.count, 10)
        XCTAssertEqual(plan.index?.weightMap, official.weightMap)
        XCTAssertEqual(plan.index?.totalSize, 19_313_870_336)
        XCTAssertEqual(plan.index?.totalSize, official.totalSize)
    }

    /// Names and shapes of the tensor table equal the official release's list (tensors-bf16.tsv).
    func testRealConfigTensorTableMatchesOfficialList() throws {
        let cfg = try QwenVLConfig.load(path: Fixtures.path("qwen-vl/config-bf16.json"))
        let tsv = try String(contentsOfFile: Fixtures.path("qwen-vl/tensors-bf16.tsv"), encoding: .utf8)
        var official: [String: [Int]] = [:]
        for line in tsv.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: "\t")
            let shape = f[1].dropFirst().dropLast().split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
            official[String(f[0])] = shape
        }
        let ours = Dictionary(uniqueKeysWithValues: cfg.bf16TensorSpecs().map { ($0.name, $0.shape) })
        XCTAssertEqual(ours.count, 853)
        XCTAssertEqual(ours, official)
    }

    func testRefusesToReplaceAnExistingFolder() throws {
        let out = "\(tmp)/exists"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        FileManager.default.createFile(atPath: "\(out)/keep.txt", contents: Data("mine".utf8))
        XCTAssertThrowsError(try Synth.run(.init(configPath: tinyConfig, seed: 1, format: .safetensors, maxShardSize: nil, output: out))) {
            XCTAssertEqual($0 as? FormatError, .exists(path: out))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), ["keep.txt"])
    }

    func testBadConfigLeavesNothingBehind() throws {
        let bad = "\(tmp)/config.json"
        FileManager.default.createFile(atPath: bad, contents: Data(#"{"hidden_size": 128}"#.utf8))
        XCTAssertThrowsError(try Synth.run(.init(configPath: bad, seed: 1, format: .bin, maxShardSize: nil, output: "\(tmp)/out"))) {
            XCTAssertTrue("\($0)".contains(bad), "\($0)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), ["config.json"])
    }

    /// A run killed with -9 leaves its hidden staging folder; the next run for the same output removes
    /// it once its process is gone (scripts/faults.sh found them piling up), and leaves a live one alone.
    func testStaleStagingFoldersOfDeadRunsAreRemoved() throws {
        let out = "\(tmp)/model"
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run(); dead.waitUntilExit()
        let stale = Synth.stagingFolder(for: out, pid: dead.processIdentifier)
        let live = Synth.stagingFolder(for: out, pid: getppid())
        for f in [stale, live] {
            try FileManager.default.createDirectory(atPath: f, withIntermediateDirectories: false)
            FileManager.default.createFile(atPath: "\(f)/model.safetensors", contents: Data("partial".utf8))
        }
        _ = try synth(.safetensors, to: "model")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp).sorted(),
                       [(live as NSString).lastPathComponent, "model"].sorted())
    }

    func testShardSizeParsing() {
        XCTAssertEqual(Synth.parseSize("2GB"), 2_000_000_000)
        XCTAssertEqual(Synth.parseSize("500MB"), 500_000_000)
        XCTAssertEqual(Synth.parseSize("1GiB"), 1 << 30)
        XCTAssertEqual(Synth.parseSize("39747574"), 39_747_574)
        XCTAssertNil(Synth.parseSize("-3"))
        XCTAssertNil(Synth.parseSize("lots"))
    }
}
