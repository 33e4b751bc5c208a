import Foundation
import SquintFormats

/// What differs between two checkpoints (`inspect A --diff B`), by tensor name.
public struct CheckpointDiff: Codable, Equatable, Sendable {
    public struct Change: Codable, Equatable, Sendable {
        public var name: String
        public var from: String
        public var to: String
    }
    /// A tensor replaced by tensors with the same stem (X.weight -> X.qweight, X.qzeros, ...).
    public struct Rename: Codable, Equatable, Sendable {
        public var from: [String]
        public var to: [String]
    }
    public var removed: [String]
    public var added: [String]
    public var renamed: [Rename]
    public var shapeChanged: [Change]
    public var dtypeChanged: [Change]
    public var unchanged: Int
    /// How names were matched when the two files name tensors differently (a GGUF file against a
    /// Hugging Face checkpoint of the same decoder); nil when compared as they are.
    public var nameMapping: String? = nil

    enum CodingKeys: String, CodingKey {
        case removed, added, renamed, unchanged
        case nameMapping = "name_mapping"
        case shapeChanged = "shape_changed"
        case dtypeChanged = "dtype_changed"
    }

    public var isEmpty: Bool {
        removed.isEmpty && added.isEmpty && renamed.isEmpty && shapeChanged.isEmpty && dtypeChanged.isEmpty
    }

    /// `typeNamesA` / `typeNamesB` override the dtype spelling per tensor name (GGUF: ggml types).
    public static func compare(_ a: [TensorInfo], _ b: [TensorInfo], typeNamesA: [String: String] = [:],
                               typeNamesB: [String: String] = [:]) -> CheckpointDiff {
        let ma = Dictionary(a.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        let mb = Dictionary(b.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        var removed = a.map(\.name).filter { mb[$0] == nil }
        var added = b.map(\.name).filter { ma[$0] == nil }
        var shape: [Change] = [], dtype: [Change] = []
        var same = 0
        for t in a {
            guard let u = mb[t.name] else { continue }
            var changed = false
            if t.shape != u.shape { shape.append(.init(name: t.name, from: "\(t.shape)", to: "\(u.shape)")); changed = true }
            let (da, db) = (typeNamesA[t.name] ?? t.dtype.rawValue, typeNamesB[u.name] ?? u.dtype.rawValue)
            if da != db { dtype.append(.init(name: t.name, from: da, to: db)); changed = true }
            if !changed { same += 1 }
        }
        // Renames: group removed and added names by module stem (name minus its last component);
        // a stem that lost tensors and gained others is reported once as a rename.
        func stem(_ n: String) -> String { n.split(separator: ".").dropLast().joined(separator: ".") }
        let remByStem = Dictionary(grouping: removed, by: stem)
        let addByStem = Dictionary(grouping: added, by: stem)
        var renamed: [Rename] = []
        var renamedStems = Set<String>()
        for s in remByStem.keys.sorted() where addByStem[s] != nil {
            renamed.append(Rename(from: remByStem[s]!.sorted(), to: addByStem[s]!.sorted()))
            renamedStems.insert(s)
        }
        removed.removeAll { renamedStems.contains(stem($0)) }
        added.removeAll { renamedStems.contains(stem($0)) }
        return CheckpointDiff(removed: removed, added: added, renamed: renamed, shapeChanged: shape,
                              dtypeChanged: dtype, unchanged: same)
    }

    /// Collapses `transformer.h.N` / `resblocks.N` lines that differ only in N, for people.
    public func summaryLines() -> [String] {
        var lines: [String] = []
        func fold(_ names: [String]) -> [(String, Int)] {
            var order: [String] = []; var count: [String: Int] = [:]
            for n in names {
                let f = Inspector.foldedName(n)
                if count[f] == nil { order.append(f) }
                count[f, default: 0] += 1
            }
            return order.map { ($0, count[$0]!) }
        }
        func times(_ c: Int) -> String { c > 1 ? "  (x\(c))" : "" }
        for (n, c) in fold(removed) { lines.append("- \(n)\(times(c))") }
        for (n, c) in fold(added) { lines.append("+ \(n)\(times(c))") }
        var rn: [String] = []; var rc: [String: Int] = [:]
        for r in renamed {
            let key = "~ " + r.from.map(Inspector.foldedName).joined(separator: ", ") + " -> "
                + r.to.map { Inspector.foldedName($0).split(separator: ".").last.map(String.init) ?? $0 }.joined(separator: ", ")
            if rc[key] == nil { rn.append(key) }
            rc[key, default: 0] += 1
        }
        for k in rn { lines.append(k + times(rc[k]!)) }
        for (label, list) in [("shape", shapeChanged), ("dtype", dtypeChanged)] {
            var order: [String] = []; var cnt: [String: Int] = [:]
            for c in list {
                let key = "\(label) \(Inspector.foldedName(c.name)): \(c.from) -> \(c.to)"
                if cnt[key] == nil { order.append(key) }
                cnt[key, default: 0] += 1
            }
            for k in order { lines.append("* " + k + times(cnt[k]!)) }
        }
        return lines.map(printable)     // names from the files, one line each
    }
}

extension Inspector {
    /// `transformer.h.12.mlp.w1.weight` -> `transformer.h.*.mlp.w1.weight`.
    public static func foldedName(_ name: String) -> String {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for i in parts.indices.dropFirst() where Int(parts[i]) != nil && ["h", "resblocks", "layers"].contains(parts[i - 1]) {
            parts[i] = "*"
        }
        return parts.joined(separator: ".")
    }
}
