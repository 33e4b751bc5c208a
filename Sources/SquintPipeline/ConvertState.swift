import CZstd
import Foundation
import SquintFormats
import SquintTensor

/// Calibration activations of one stage (the inputs of one block), one zstd frame per sample on
/// disk, with as many samples as the memory budget allows also kept in RAM.
///
/// Every sample is written to disk as it is produced: the files are the resume state after a
/// block, so a killed run loses at most the block in progress. RAM holds a cache of at most
/// `budget` bytes; the rest is read back (and decompressed) when the next pass needs it.
final class ActivationStore {
    let folder: String
    let hidden: Int
    let budget: Int
    private(set) var tokens: [Int]
    private var cache: [Int: [Float]] = [:]
    private var cachedBytes = 0
    /// Bytes of activations that live only on disk.
    private(set) var spilledBytes = 0

    /// Whether every sample goes to disk (resume state) or only those beyond the budget (scratch
    /// between the passes of one block).
    let persistent: Bool

    /// A store over `folder` (created if missing) for samples of `tokens[i]` x `hidden` floats.
    init(folder: String, hidden: Int, tokens: [Int], budget: Int, persistent: Bool = true) throws {
        self.folder = folder; self.hidden = hidden; self.tokens = tokens; self.budget = budget; self.persistent = persistent
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw FormatError.io(path: folder, doing: "cannot create folder", error)
        }
    }

    func file(_ i: Int) -> String { String(format: "%@/s%06d.zst", folder, i) }

    /// Stores sample i ([tokens[i], hidden] float32): compressed to disk, and in RAM if it fits.
    func put(_ i: Int, _ x: [Float]) throws {
        precondition(x.count == tokens[i] * hidden)
        let bytes = x.count * 4
        if !persistent && cachedBytes + bytes <= budget {
            cache[i] = x; cachedBytes += bytes
            return
        }
        let compressed: [UInt8] = x.withUnsafeBytes { src in
            let cap = ZSTD_compressBound(src.count)
            var out = [UInt8](repeating: 0, count: cap)
            let n = out.withUnsafeMutableBytes { ZSTD_compress($0.baseAddress, cap, src.baseAddress, src.count, 1) }
            precondition(ZSTD_isError(n) == 0, "zstd compression failed")
            out.removeSubrange(n...)
            return out
        }
        if persistent {
            // Resume state: atomic and fsynced.
            let w = try AtomicFileWriter(destination: file(i), overwrite: true)
            try w.write(compressed)
            try w.commit()
        } else {
            // Scratch that no later run reads: neither atomicity nor durability needed.
            do { try Data(compressed).write(to: URL(fileURLWithPath: file(i))) } catch {
                throw FormatError.io(path: file(i), doing: "cannot write spilled activations", error)
            }
        }
        if persistent && cachedBytes + bytes <= budget {
            cache[i] = x; cachedBytes += bytes
        } else {
            spilledBytes += bytes
        }
    }

    /// Sample i, from RAM or from its file (checked against the expected size).
    func get(_ i: Int) throws -> [Float] {
        if let x = cache[i] { return x }
        let path = file(i)
        guard let d = FileManager.default.contents(atPath: path) else {
            throw ConvertError.workState(path: path, problem: "calibration activations are missing; start over with --force")
        }
        let n = tokens[i] * hidden
        var out = [Float](repeating: 0, count: n)
        let ok: Bool = d.withUnsafeBytes { src in
            guard ZSTD_getFrameContentSize(src.baseAddress, src.count) == UInt64(n * 4) else { return false }
            let r = out.withUnsafeMutableBytes { ZSTD_decompress($0.baseAddress, n * 4, src.baseAddress, src.count) }
            return ZSTD_isError(r) == 0 && r == n * 4
        }
        guard ok else { throw ConvertError.workState(path: path, problem: "calibration activations are damaged; start over with --force") }
        return out
    }

    /// Frees the RAM copies (the files stay until the folder is removed).
    func dropCache() { cache = [:]; cachedBytes = 0 }

    /// Frees sample i's RAM copy once no later pass needs it.
    func drop(_ i: Int) {
        if let x = cache.removeValue(forKey: i) { cachedBytes -= x.count * 4 }
    }
}

/// The resume record of a Qwen-VL run (`state.json` in its `WorkFolder`), rewritten after the
/// calibration pass and after every block.
struct ConvertWorkState: ResumeState, Equatable {
    var fingerprint: String
    /// Blocks finished; block-<i>.safetensors exist for i < blocksDone, and acts-<blocksDone>
    /// holds the inputs of the next block.
    var blocksDone: Int
    /// Tokens per calibration sample.
    var tokens: [Int]
    var log: [ConvertModuleLog]
    var threads: Int? = Threads.count
}
