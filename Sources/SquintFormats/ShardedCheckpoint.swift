#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The index of a checkpoint split over several files (`model.safetensors.index.json`,
/// `pytorch_model.bin.index.json`): which shard holds each tensor, and the total data size.
/// Layout and rules: Formats/SAFETENSORS.md §4.
public struct ShardIndex: Equatable, Sendable {
    /// Tensor name -> shard file name (relative to the index's folder).
    public var weightMap: [String: String]
    /// Sum of the tensors' data bytes, as declared; nil when the index has none.
    public var totalSize: Int?
    /// Other `metadata` members, as JSON text (strings unquoted). `total_size` is not repeated here.
    public var otherMetadata: [String: String]

    public init(weightMap: [String: String], totalSize: Int?, otherMetadata: [String: String] = [:]) {
        self.weightMap = weightMap; self.totalSize = totalSize; self.otherMetadata = otherMetadata
    }

    /// Shard file names, sorted byte-wise (numeric order for `-0000N-of-0000M` names).
    public var shardNames: [String] {
        Set(weightMap.values).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Reads and checks an index file (strict JSON; shard names must stay inside the folder).
    public static func read(path: String) throws -> ShardIndex {
        let file = try MappedFile(path: path)
        return try parse(file.bytes, path: path)
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ShardIndex {
        func bad(_ what: String) -> FormatError { .invalid(path: path, what: what) }
        let json = try StrictJSON.parseObject(bytes, path: path, what: "the index")
        guard let wm = json["weight_map"] else { throw bad("the index has no \"weight_map\"") }
        guard case .object(let pairs) = wm else { throw bad("\"weight_map\" must be an object, found \(wm.kindName)") }
        var map: [String: String] = [:]
        for (name, v) in pairs {
            guard case .string(let shard) = v else {
                throw bad("weight_map[\"\(name)\"] must be a shard file name, found \(v.kindName)")
            }
            guard !shard.isEmpty, shard != ".", shard != "..", !shard.contains("/"), !shard.utf8.contains(0) else {
                throw bad("weight_map[\"\(name)\"] names the shard \"\(shard)\"; shards must be plain file names "
                    + "beside the index")
            }
            map[name] = shard
        }
        var total: Int? = nil
        var other: [String: String] = [:]
        if let md = json["metadata"] {
            guard case .object(let members) = md else { throw bad("\"metadata\" must be an object, found \(md.kindName)") }
            for (k, v) in members {
                if k == "total_size" {
                    guard case .integer(let t) = v, t >= 0 else {
                        throw bad("metadata.total_size must be a non-negative integer, found \(v.kindName)")
                    }
                    total = Int(t)
                } else {
                    other[k] = Self.text(v)
                }
            }
        }
        return ShardIndex(weightMap: map, totalSize: total, otherMetadata: other)
    }

    private static func text(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return s
        case .integer(let i): return String(i)
        case .integerOutOfRange(let t), .double(_, let t): return t
        case .bool(let b): return String(b)
        case .null: return "null"
        case .array(let a): return "[" + a.map { item -> String in
            if case .string(let s) = item { return JSONText.quoted(s) }
            return text(item)
        }.joined(separator: ",") + "]"
        case .object(let m): return "{" + m.map { member -> String in
            let value: String
            if case .string(let s) = member.value { value = JSONText.quoted(s) } else { value = text(member.value) }
            return JSONText.quoted(member.key) + ":" + value
        }.joined(separator: ",") + "}"
        }
    }

    /// The index as transformers writes it: `json.dumps(index, indent=2, sort_keys=True) + "\n"`.
    /// Only `total_size` and string-valued `otherMetadata` are written (as JSON strings).
    public func jsonText() -> String {
        func sortedKeys(_ d: [String: String]) -> [String] {
            // Python sorts str keys by code point; for UTF-8 that is byte order.
            d.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        }
        var metaLines: [String] = []
        var meta = otherMetadata.mapValues { JSONText.quotedASCII($0) }
        if let totalSize { meta["total_size"] = String(totalSize) }
        for k in sortedKeys(meta) { metaLines.append("    \(JSONText.quotedASCII(k)): \(meta[k]!)") }
        var s = "{\n"
        s += metaLines.isEmpty ? "  \"metadata\": {},\n" : "  \"metadata\": {\n" + metaLines.joined(separator: ",\n") + "\n  },\n"
        let mapLines = sortedKeys(weightMap).map { "    \(JSONText.quotedASCII($0)): \(JSONText.quotedASCII(weightMap[$0]!))" }
        s += mapLines.isEmpty ? "  \"weight_map\": {}\n" : "  \"weight_map\": {\n" + mapLines.joined(separator: ",\n") + "\n  }\n"
        return s + "}\n"
    }

    /// Writes the index atomically.
    public func write(to path: String, overwrite: Bool) throws {
        let out = try AtomicFileWriter(destination: path, overwrite: overwrite)
        try out.write(jsonText())
        try out.commit()
    }
}

/// A checkpoint split over shard files, seen as one `TensorFile` after cross-checking the index
/// against the shards (Formats/SAFETENSORS.md §4): every listed tensor is in its shard, every tensor
/// of a shard is listed for that shard, and `total_size` matches.
///
/// Why cross-check: loaders that trust the index silently skip a tensor the index forgot, or read a
/// stale one from the wrong shard. Works for safetensors and torch shards alike: the shard reader is
/// a closure.
public final class ShardedCheckpoint: TensorFile {
    /// The index file's path.
    public let path: String
    public let index: ShardIndex
    /// Opened shards, in `index.shardNames` order.
    public let shards: [TensorFile]
    public let tensors: [TensorInfo]
    /// The index's metadata: `total_size` (as text) and the other members.
    public let metadata: [String: String]
    private let location: [String: (shard: Int, position: Int)]

    /// - Parameters:
    ///   - indexPath: the index JSON; shards are looked up in its folder.
    ///   - openShard: opens one shard given its full path (default: `SafetensorsFile`).
    public init(indexPath: String,
                openShard: (String) throws -> TensorFile = { try SafetensorsFile(path: $0) }) throws {
        path = indexPath
        let index = try ShardIndex.read(path: indexPath)
        self.index = index
        let folder: String
        if let slash = indexPath.lastIndex(of: "/") {
            folder = String(indexPath[..<slash]).isEmpty ? "/" : String(indexPath[..<slash])
        } else {
            folder = "."
        }
        var byShard: [String: [String]] = [:]
        for (name, shard) in index.weightMap { byShard[shard, default: []].append(name) }

        var shards: [TensorFile] = []
        var tensors: [TensorInfo] = []
        var location: [String: (Int, Int)] = [:]
        for (si, shardName) in index.shardNames.enumerated() {
            let shardPath = folder == "/" ? "/\(shardName)" : "\(folder)/\(shardName)"
            guard access(shardPath, F_OK) == 0 else {
                throw FormatError.io(path: shardPath, message: "shard listed in \(indexPath) does not exist")
            }
            let shard = try openShard(shardPath)
            var present = Set<String>()
            for t in shard.tensors { present.insert(t.name) }
            for name in byShard[shardName]!.sorted() where !present.contains(name) {
                throw FormatError.missingTensor(path: shardPath, name: name)
            }
            for t in shard.tensors {
                guard let listed = index.weightMap[t.name] else {
                    throw FormatError.invalid(path: shardPath, what: "tensor '\(t.name)' is in this shard but not "
                        + "listed in the index \(indexPath)")
                }
                guard listed == shardName else {
                    throw FormatError.invalid(path: shardPath, what: "tensor '\(t.name)' is in this shard but the index "
                        + "\(indexPath) lists it in \(listed)")
                }
                location[t.name] = (si, tensors.count)
                tensors.append(t)
            }
            shards.append(shard)
        }
        var sum = 0
        for t in tensors {
            let (s, o) = sum.addingReportingOverflow(t.byteCount)
            guard !o else { throw FormatError.invalid(path: indexPath, what: "the shards' total size overflows 64 bits") }
            sum = s
        }
        if let declared = index.totalSize, declared != sum {
            throw FormatError.invalid(path: indexPath, what: "metadata.total_size is \(declared) but the shards' tensors "
                + "hold \(sum) bytes")
        }
        self.shards = shards
        self.tensors = tensors
        self.location = location
        var md = index.otherMetadata
        if let t = index.totalSize { md["total_size"] = String(t) }
        metadata = md
    }

    public func info(_ name: String) -> TensorInfo? { location[name].map { tensors[$0.position] } }

    public func view(_ name: String) throws -> TensorView {
        guard let loc = location[name] else { throw FormatError.missingTensor(path: path, name: name) }
        return try shards[loc.shard].view(name)
    }
}

/// Writes a checkpoint as shards plus an index, the way transformers' `save_pretrained` does: tensors
/// are taken in the caller's order and a shard is closed when the next tensor would push its data past
/// `maxShardSize`; a tensor larger than `maxShardSize` is put in a shard of its own at once, while the
/// shard being filled stays open (huggingface_hub's `split_torch_state_dict_into_shards`). Shards are
/// `model-0000i-of-0000n.safetensors`; a checkpoint that fits one shard is a single `model.safetensors`
/// and no index.
public struct ShardedSafetensorsWriter {
    /// Shard file names with their tensors, in write order.
    public let shards: [(fileName: String, tensors: [SafetensorsWriter.Tensor])]
    public let metadata: [String: String]
    /// The index, or nil for a single-file checkpoint.
    public let index: ShardIndex?
    public static let indexFileName = "model.safetensors.index.json"

    public init(tensors: [SafetensorsWriter.Tensor], maxShardSize: Int, metadata: [String: String] = [:]) throws {
        precondition(maxShardSize > 0, "maxShardSize must be positive")
        // Validate the whole list once (duplicates, sizes) with the single-file rules.
        _ = try SafetensorsWriter(tensors: tensors, path: "<sharded writer>")
        var groups: [[SafetensorsWriter.Tensor]] = []
        var current: [SafetensorsWriter.Tensor] = []
        var currentSize = 0
        var total = 0
        for t in tensors {
            let n = t.byteCount!
            total += n
            if n > maxShardSize {
                // As huggingface_hub's split_torch_state_dict_into_shards: an oversize tensor gets a shard
                // of its own, placed now; the shard being filled stays open.
                groups.append([t])
                continue
            }
            if currentSize + n > maxShardSize {
                groups.append(current); current = []; currentSize = 0
            }
            current.append(t); currentSize += n
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }
        if groups.count == 1 {
            shards = [("model.safetensors", groups[0])]
            index = nil
        } else {
            func pad5(_ i: Int) -> String { let s = String(i); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
            shards = groups.enumerated().map { ("model-\(pad5($0.offset + 1))-of-\(pad5(groups.count)).safetensors", $0.element) }
            var map: [String: String] = [:]
            for (file, ts) in shards { for t in ts { map[t.name] = file } }
            index = ShardIndex(weightMap: map, totalSize: total)
        }
        self.metadata = metadata
    }

    /// Writes every shard (each atomically), then the index. `data` is called once per tensor, shard by
    /// shard, in each shard's layout order. Returns the paths written.
    @discardableResult
    public func write(toFolder folder: String, overwrite: Bool,
                      data: (SafetensorsWriter.Tensor, TensorSink) throws -> Void) throws -> [String] {
        var written: [String] = []
        for (file, ts) in shards {
            let p = "\(folder)/\(file)"
            try SafetensorsWriter(tensors: ts, metadata: metadata, path: p).write(to: p, overwrite: overwrite, data: data)
            written.append(p)
        }
        if let index {
            let p = "\(folder)/\(Self.indexFileName)"
            try index.write(to: p, overwrite: overwrite)
            written.append(p)
        }
        return written
    }
}
