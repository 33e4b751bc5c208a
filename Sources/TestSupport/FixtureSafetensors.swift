import Foundation

/// Reads the F32 / I32 tensors of a trusted, well-formed safetensors fixture (written by the
/// reference generator). Not a format reader: it does no hostile-input validation beyond refusing
/// out-of-range offsets; the project's real safetensors reader replaces it once merged.
public struct FixtureSafetensors {
    public struct Entry { public let dtype: String; public let shape: [Int]; public let range: Range<Int> }
    public let entries: [String: Entry]
    let data: Data

    public init(path: String) throws {
        let d = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        func fail(_ m: String) -> NSError { NSError(domain: "FixtureSafetensors", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path): \(m)"]) }
        guard d.count >= 8 else { throw fail("shorter than 8 bytes") }
        let n = d.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard n > 0, 8 + n <= d.count,
              let json = try JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + n))) as? [String: Any] else {
            throw fail("bad header")
        }
        var e: [String: Entry] = [:]
        for (name, v) in json where name != "__metadata__" {
            guard let o = v as? [String: Any], let dt = o["dtype"] as? String, let sh = o["shape"] as? [Int],
                  let off = o["data_offsets"] as? [Int], off.count == 2, off[0] <= off[1], 8 + n + off[1] <= d.count else {
                throw fail("bad entry \(name)")
            }
            e[name] = Entry(dtype: dt, shape: sh, range: (8 + n + off[0])..<(8 + n + off[1]))
        }
        entries = e; data = d
    }

    /// Float32 values of an F32 tensor (little-endian host).
    public func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        guard let e = entries[name], e.dtype == "F32" else { throw NSError(domain: "FixtureSafetensors", code: 2, userInfo: [NSLocalizedDescriptionKey: "no F32 tensor \(name)"]) }
        let v = data.subdata(in: e.range).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (e.shape, v)
    }

    /// Int32 values of an I32 tensor.
    public func ints(_ name: String) throws -> (shape: [Int], values: [Int32]) {
        guard let e = entries[name], e.dtype == "I32" else { throw NSError(domain: "FixtureSafetensors", code: 2, userInfo: [NSLocalizedDescriptionKey: "no I32 tensor \(name)"]) }
        let v = data.subdata(in: e.range).withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        return (e.shape, v)
    }
}

/// The package root (the folder holding Package.swift), found by walking up from a source file,
/// so tests locate `fixtures/` on any clone.
public func packageRoot(from filePath: String = #filePath) -> String {
    var url = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while url.path != "/" {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        url.deleteLastPathComponent()
    }
    return FileManager.default.currentDirectoryPath
}

/// Absolute path of a file under `fixtures/`.
public func fixturePath(_ relative: String, filePath: String = #filePath) -> String {
    packageRoot(from: filePath) + "/fixtures/" + relative
}
