import Foundation
import XCTest
import SquintFormats
import SquintModels
@testable import SquintPipeline
import TestSupport

/// Issue 17, item 1, over a whole model folder: every number of config.json is replaced in turn by
/// hostile values (zero, negative, 2^31, 2^62, huge and tiny doubles) and the folder goes through what
/// `inspect`, `run` and `validate` do first (open, inspect, build the model). Each mutation must either
/// work or be refused with one line naming config.json; a trap would end the test process.
final class ConfigMutationTests: XCTestCase {
    static let folder = Fixtures.temporaryFolder("config-mutation")
    override class func setUp() {
        _ = try! Synth.run(.init(configPath: Fixtures.path("qwen-vl-tiny/config.json"), seed: 20240611, format: .safetensors,
                                 maxShardSize: nil, output: folder + "/model"))
    }
    override class func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    /// Paths of the numeric members of a JSON object ("visual.mlp_ratio").
    static func numericKeys(_ v: JSONValue, _ prefix: String = "") -> [String] {
        guard case .object(let members) = v else { return [] }
        return members.flatMap { (k, x) -> [String] in
            switch x {
            case .integer, .double, .integerOutOfRange: return [prefix + k]
            case .object: return numericKeys(x, prefix + k + ".")
            default: return []
            }
        }
    }

    func testEveryConfigNumberMutatedIsUsedOrRefusedByKey() throws {
        let model = Self.folder + "/model"
        let configPath = model + "/config.json"
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: configPath)))
        let json = try original.withUnsafeBytes { try StrictJSON.parseObject($0, path: configPath, what: "config") }
        let keys = Self.numericKeys(json)
        XCTAssertGreaterThan(keys.count, 20)
        let hostile = ["0", "-1", "2147483648", "4611686018427387904", "1e300", "-1e300", "1e-300", "0.5", "3"]
        var refused = 0, used = 0
        let text = String(decoding: original, as: UTF8.self)
        for key in keys {
            let leaf = String(key.split(separator: ".").last!)
            // The first `"leaf": number` after the parent's opening (the tiny config has each leaf once per level).
            let pattern = try NSRegularExpression(pattern: "(\"\(NSRegularExpression.escapedPattern(for: leaf))\":\\s*)(-?[0-9][0-9.eE+-]*)")
            for v in hostile {
                let range = NSRange(text.startIndex..., in: text)
                let mutated = pattern.stringByReplacingMatches(in: text, range: range, withTemplate: "$1\(v)")
                try mutated.write(toFile: configPath, atomically: true, encoding: .utf8)
                do {
                    let ck = try CheckpointOpener.open(model)
                    _ = try Inspector.inspect(ck.file, format: ck.format, config: ck.config, quantization: nil)
                    _ = try QwenVLModel(config: ck.config!, weights: ck.file)
                    used += 1
                } catch ModelError.binding(let path, let problems) {
                    // In range but not what the tensors are: the binder lists every mismatch by name.
                    refused += 1
                    XCTAssertEqual(path, model + "/model.safetensors")
                    XCTAssertFalse(problems.isEmpty)
                } catch {
                    refused += 1
                    let message = "\(error)"
                    XCTAssert(message.hasPrefix(configPath + ": ") && !message.contains("\n"), "\(key)=\(v): \(message)")
                }
            }
        }
        try Data(original).write(to: URL(fileURLWithPath: configPath))
        // Most hostile values are refused; a few are harmless (e.g. rotary_emb_base 3, a flag-like 0).
        XCTAssertGreaterThan(refused, used)
    }
}
