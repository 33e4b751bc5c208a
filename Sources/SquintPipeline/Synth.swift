import Foundation
import SquintFormats
import SquintModels
import CSquintKernels

/// `squint synth`: a complete Qwen-VL checkpoint folder with the bit-exact synthetic weights, for any
/// config, streamed tensor by tensor (memory stays at a few chunk buffers whatever the model size).
public enum Synth {
    public enum Format: String, CaseIterable, Sendable { case safetensors, bin }

    public struct Options: Sendable {
        public var configPath: String
        public var seed: UInt64
        public var format: Format
        /// Shard size limit in bytes; nil = one file (safetensors) or transformers' 2 GB default (bin)
        public var maxShardSize: Int?
        public var output: String
        public var overwrite: Bool
        /// A qwen.tiktoken to copy into the folder, so the runtime finds it next to the weights.
        public var vocabPath: String?

        public init(configPath: String, seed: UInt64, format: Format, maxShardSize: Int?, output: String,
                    overwrite: Bool = false, vocabPath: String? = nil) {
            self.configPath = configPath; self.seed = seed; self.format = format
            self.maxShardSize = maxShardSize; self.output = output; self.overwrite = overwrite
            self.vocabPath = vocabPath
        }
    }

    public struct Result: Codable, Sendable {
        public var output: String
        public var files: [String]
        public var tensors: Int
        public var bytes: Int
        public var seconds: Double
    }

    /// transformers' `save_pretrained` default shard limit: "10GB" since 4.35, "2GB" in the 4.31/4.32 that
    /// wrote the Qwen-VL-Chat release; we follow the release so `synth` reproduces its shard map.
    public static let defaultBinShardSize = 2_000_000_000

    /// Parses "2GB", "500MB", "1.5GiB", "39747574" (decimal units as transformers reads them).
    public static func parseSize(_ s: String) -> Int? {
        let t = s.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024),
                                         ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
        for (u, m) in units where t.hasSuffix(u) {
            // Finite and below 2^62 before the Int conversion ("infGB" or "1e300GB" would trap).
            guard let v = Double(t.dropLast(u.count)), v > 0, v.isFinite, v * m < 0x1p62 else { return nil }
            return Int(v * m)
        }
        guard let v = Int(t), v > 0 else { return nil }
        return v
    }

    static let generationConfig = """
    {
      "chat_format": "chatml",
      "do_sample": true,
      "eos_token_id": 151643,
      "max_new_tokens": 512,
      "max_window_size": 6144,
      "pad_token_id": 151643,
      "top_k": 0,
      "top_p": 0.3,
      "transformers_version": "4.31.0"
    }
    """

    /// How `--format bin` splits the tensors: transformers' `shard_checkpoint` of 4.31/4.32 (what wrote
    /// the official release): in state_dict order, a new shard starts when the next tensor would pass
    /// the limit. Shard files are `pytorch_model-0000i-of-0000n.bin` with an index, or one
    /// `pytorch_model.bin` without.
    public static func binPlan(specs: [QwenVLTensorSpec], maxShardSize: Int)
        -> (shards: [(file: String, members: [Int])], index: ShardIndex?)
    {
        let byteCounts = specs.map { $0.shape.reduce(1, *) * 2 }
        let (shardOf, count) = shardAssignment(byteCounts: byteCounts, maxShardSize: maxShardSize)
        func pad5(_ i: Int) -> String { String(format: "%05d", i) }
        let names = count == 1 ? ["pytorch_model.bin"] : (1...max(count, 1)).map { "pytorch_model-\(pad5($0))-of-\(pad5(count)).bin" }
        var shards: [(file: String, members: [Int])] = names.map { ($0, []) }
        var map: [String: String] = [:]
        for (i, s) in shardOf.enumerated() { shards[s].members.append(i); map[specs[i].name] = names[s] }
        let index = count > 1 ? ShardIndex(weightMap: map, totalSize: byteCounts.reduce(0, +)) : nil
        return (shards, index)
    }

    /// Fills `out` with elements [start, start+count) of a tensor as BF16, on both cores.
    static func fill(_ gen: SyntheticWeights, _ spec: QwenVLTensorSpec, start: Int, count: Int,
                     _ out: UnsafeMutablePointer<UInt16>) {
        let parts = count >= 1 << 16 ? 2 : 1
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = count * p / parts, hi = count * (p + 1) / parts
            gen.generate(spec, start: start + lo, count: hi - lo, bf16: out + lo)
        }
    }

    public static func run(_ o: Options, progress: ProgressBar? = nil) throws -> Result {
        let t0 = Date()
        let config = try QwenVLConfig.load(path: o.configPath)
        guard let configBytes = FileManager.default.contents(atPath: o.configPath) else {
            throw FormatError.io(path: o.configPath, message: "cannot read the file")      // removed since it was loaded
        }
        let specs = config.bf16TensorSpecs()
        let gen = SyntheticWeights(seed: o.seed)
        let byteCounts = specs.map { $0.shape.reduce(1, *) * 2 }
        let total = byteCounts.reduce(0, +)

        // Work in a hidden sibling folder, renamed into place at the end: an interrupted run
        // leaves no partial checkpoint at the destination.
        let fm = FileManager.default
        let dest = (o.output as NSString).standardizingPath
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: dest, isDirectory: &isDir) {
            if !o.overwrite { throw FormatError.exists(path: dest) }
        }
        let parent = Paths.parent(of: dest)
        guard fm.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError.io(path: dest, message: "parent folder \(parent) does not exist")
        }
        let work = stagingFolder(for: dest)
        try? fm.removeItem(atPath: work)
        removeStaleStagingFolders(for: dest)
        do {
            try fm.createDirectory(atPath: work, withIntermediateDirectories: false)
        } catch {
            throw FormatError.io(path: work, doing: "cannot create folder", error)
        }
        var files: [String] = []
        do {
            // Two 8 MiB buffers: while the writer CRCs and copies one into the page cache (one core),
            // the next chunk is generated into the other (the second core).
            let chunkElems = 1 << 22
            let buffers = [UnsafeMutablePointer<UInt16>.allocate(capacity: chunkElems),
                           UnsafeMutablePointer<UInt16>.allocate(capacity: chunkElems)]
            defer { buffers.forEach { $0.deallocate() } }
            var done = 0
            // The next chunk is cut into 16 pieces that a background worker takes in order while the
            // writer CRCs and copies the current chunk; when the writer is done it takes the pieces that
            // are left, so both cores stay busy whichever side is slower.
            final class Pieces: @unchecked Sendable {
                let lock = NSLock(); var next = 0; let count: Int
                init(count: Int) { self.count = count }
                func take() -> Int? { lock.lock(); defer { lock.unlock() }; guard next < count else { return nil }; next += 1; return next - 1 }
            }
            func stream(_ spec: QwenVLTensorSpec, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
                let n = spec.shape.reduce(1, *)
                var s = 0, k = 0
                fill(gen, spec, start: 0, count: min(chunkElems, n), buffers[0])
                while s < n {
                    let m = min(chunkElems, n - s)
                    let next = s + m
                    let ahead = DispatchGroup()
                    let count = min(chunkElems, n - next)
                    let pieces = Pieces(count: next < n ? 16 : 0)
                    // The address crosses threads as an integer; the buffer outlives the wait below.
                    let target = UInt(bitPattern: buffers[(k + 1) % 2])
                    let work: @Sendable () -> Void = {
                        while let p = pieces.take() {
                            let lo = count * p / 16, hi = count * (p + 1) / 16
                            gen.generate(spec, start: next + lo, count: hi - lo,
                                         bf16: UnsafeMutablePointer<UInt16>(bitPattern: target)! + lo)
                        }
                    }
                    if next < n { DispatchQueue.global().async(group: ahead, execute: work) }
                    defer { ahead.wait() }
                    try sink(UnsafeRawBufferPointer(start: buffers[k % 2], count: m * 2))
                    work()
                    s = next; k += 1; done += m * 2
                    progress?.update(done, total, detail: spec.name)
                }
            }
            switch o.format {
            case .safetensors:
                let tensors = specs.map { SafetensorsWriter.Tensor(name: $0.name, dtype: .bf16, shape: $0.shape) }
                let bySpec = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })
                let writer = try ShardedSafetensorsWriter(tensors: tensors, maxShardSize: o.maxShardSize ?? Int.max,
                                                          metadata: ["format": "pt"])
                files = try writer.write(toFolder: work, overwrite: false) { t, sink in
                    try stream(bySpec[t.name]!) { try sink.write($0) }
                }
            case .bin:
                let plan = binPlan(specs: specs, maxShardSize: o.maxShardSize ?? defaultBinShardSize)
                for shard in plan.shards {
                    let entries = shard.members.map { TorchZipWriter.Entry(name: specs[$0].name, dtype: .bf16, shape: specs[$0].shape) }
                    let p = "\(work)/\(shard.file)"
                    try TorchZipWriter(entries: entries).write(to: p, overwrite: false) { i, sink in
                        try stream(specs[shard.members[i]], sink)
                    }
                    files.append(p)
                }
                if let index = plan.index {
                    let p = "\(work)/pytorch_model.bin.index.json"
                    try index.write(to: p, overwrite: false)
                    files.append(p)
                }
            }
            try AtomicFileWriter.write(SyntheticWeights.markedConfig(Array(configBytes)), to: "\(work)/config.json", overwrite: false)
            try AtomicFileWriter.write(Array((generationConfig + "\n").utf8), to: "\(work)/generation_config.json", overwrite: false)
            files += ["\(work)/config.json", "\(work)/generation_config.json"]
            if let v = o.vocabPath {
                guard let d = fm.contents(atPath: v) else { throw FormatError.io(path: v, message: "cannot read the vocabulary") }
                try AtomicFileWriter.write(Array(d), to: "\(work)/qwen.tiktoken", overwrite: false)
                files.append("\(work)/qwen.tiktoken")
            }
            // Replacing an old output (only with --force) and the rename are one step for Ctrl-C.
            let placed = try CommitGate.commit(to: dest) { () throws -> Bool in
                if fm.fileExists(atPath: dest) { try fm.removeItem(atPath: dest) }
                return rename(work, dest) == 0
            }
            guard placed else {
                throw FormatError.io(path: dest, message: "cannot move the finished folder into place: \(String(cString: strerror(errno)))")
            }
        } catch {
            try? fm.removeItem(atPath: work)
            throw error
        }
        progress?.finish()
        return Result(output: dest, files: files.map { dest + "/" + ($0 as NSString).lastPathComponent },
                      tensors: specs.count, bytes: total, seconds: Date().timeIntervalSince(t0))
    }

    /// The hidden sibling folder a run writes into before renaming it to `output` (this process's).
    public static func stagingFolder(for output: String, pid: Int32 = getpid()) -> String {
        let dest = (output as NSString).standardizingPath
        return "\(Paths.parent(of: dest))/.\((dest as NSString).lastPathComponent).partial-\(pid)"
    }

    /// Removes the staging folders of earlier runs for `output` whose process is gone (killed with
    /// -9, power loss): without this a killed run of the full model left up to 19 GB behind, hidden.
    static func removeStaleStagingFolders(for output: String) {
        let fm = FileManager.default
        let dest = (output as NSString).standardizingPath
        let prefix = ".\((dest as NSString).lastPathComponent).partial-"
        let parent = Paths.parent(of: dest)
        for name in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? fm.removeItem(atPath: "\(parent)/\(name)") }
        }
    }
}
