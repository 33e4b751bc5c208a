import Foundation

/// Locates the package's `fixtures/` folder from a test file's path, so tests run from any working
/// directory on a fresh clone (no `../shared` needed).
public enum Fixtures {
    public static func packageRoot(_ file: String = #filePath) -> String {
        var url = URL(fileURLWithPath: file).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
            url.deleteLastPathComponent()
        }
        fatalError("Package.swift not found above \(file)")
    }

    /// `fixtures/<relative>`.
    public static func path(_ relative: String, file: String = #filePath) -> String {
        packageRoot(file) + "/fixtures/" + relative
    }

    public static func json(_ relative: String, file: String = #filePath) throws -> Any {
        let p = path(relative, file: file)
        guard let d = FileManager.default.contents(atPath: p) else { throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: p]) }
        return try JSONSerialization.jsonObject(with: d)
    }

    /// A fresh empty folder under the system temporary directory, removed by the caller.
    public static func temporaryFolder(_ label: String = "squint-test") -> String {
        let p = NSTemporaryDirectory() + "\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// The `squint` executable built beside the test bundle (`swift build --build-tests` builds it).
    public static func squintExecutable() -> String {
        let products = Bundle.allBundles.map(\.bundleURL).first { $0.pathExtension == "xctest" }?.deletingLastPathComponent()
            ?? URL(fileURLWithPath: packageRoot() + "/.build/debug")
        return products.appendingPathComponent("squint").path
    }

    /// Runs a command, returning exit status, stdout and stderr.
    public static func run(_ executable: String, _ args: [String], cwd: String? = nil, stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let o = Pipe(), e = Pipe(), i = Pipe()
        p.standardOutput = o; p.standardError = e; p.standardInput = i
        try p.run()
        if let stdin { i.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? i.fileHandleForWriting.close()
        // Read both pipes concurrently so a large output cannot block the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let outBox = Box()
        let g = DispatchGroup()
        g.enter(); DispatchQueue.global().async { outBox.data = o.fileHandleForReading.readDataToEndOfFile(); g.leave() }
        let errData = e.fileHandleForReading.readDataToEndOfFile()
        g.wait()
        let outData = outBox.data
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

// Tests hash with the library's SHA-256 (SquintFormats.sha256Hex); re-exported for test targets.
@_exported import struct SquintFormats.SHA256
@_exported import func SquintFormats.sha256Hex
