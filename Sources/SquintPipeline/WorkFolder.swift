import Foundation
import SquintFormats
import SquintTensor

/// What every kind of resume state records; each kind (`ConvertWorkState` for Qwen-VL,
/// `BlockProgress` for text models) adds its own fields to the same `state.json`.
protocol ResumeState: Codable {
    /// Settings, source and calibration identity: --resume refuses a different run's state.
    var fingerprint: String { get }
    /// Blocks finished (their files are in the folder).
    var blocksDone: Int { get }
    /// The thread count the run was started with (nil in states written before it was kept).
    /// Not part of the fingerprint: another count resumes, with a warning (`WorkFolder.threadWarning`).
    var threads: Int? { get }
}

/// The resume state of a text-model conversion: the common part alone.
struct BlockProgress: ResumeState, Equatable {
    var fingerprint: String
    var blocksDone: Int
    var threads: Int?
}

/// The work folder of a conversion beside its output (`.NAME.squint-convert`): one set of rules for
/// every kind of run. Opening it refuses another run's state and any existing folder unless
/// --resume or --force is given; `write` replaces `state.json` atomically, so a block counts as done
/// only once that file says so.
struct WorkFolder<State: ResumeState> {
    let path: String
    /// The state a --resume run continues from; nil when this run made the folder.
    let saved: State?
    var statePath: String { path + "/state.json" }
    /// Whether this run made the folder (a failure before its first saved state then removes it).
    var fresh: Bool { saved == nil }

    /// Set when the saved run used another thread count than this one (`Threads.count`). OpenBLAS
    /// sums in another order on another thread count, so the blocks still to come get other float bits
    /// and some other GPTQ codes than the saved run would have given them: the output is a valid
    /// conversion, but not byte for byte the one an uninterrupted run at either count writes
    /// (docs/RELIABILITY.md). Printed as a warning when the folder is opened.
    var threadWarning: String? {
        guard let n = saved?.threads, n != Threads.count else { return nil }
        return "the saved run used \(n) thread\(n == 1 ? "" : "s") and this one uses \(Threads.count): the result will be a valid "
            + "conversion but not byte-identical to an uninterrupted run (resume with --threads \(n) for that)"
    }

    /// The folder for `output`.
    static func path(for output: String) -> String {
        let dest = (output as NSString).standardizingPath
        return "\(Paths.parent(of: dest))/.\((dest as NSString).lastPathComponent).squint-convert"
    }

    /// Opens (with `resume`) or creates the work folder for `output`.
    init(output: String, fingerprint: String, resume: Bool, force: Bool) throws {
        let fm = FileManager.default
        path = Self.path(for: output)
        var existing: State? = nil
        if fm.fileExists(atPath: path) {
            if resume, let s = try Self.read(path + "/state.json") {
                guard s.fingerprint == fingerprint else {
                    throw ConvertError.workState(path: path, problem: "the saved run used other settings, source or calibration (\(s.fingerprint)); pass --force to start over")
                }
                existing = s
            } else if resume || force {
                try? fm.removeItem(atPath: path)
            } else {
                throw ConvertError.workState(path: path, problem: "a previous run's state is here: pass --resume to continue it, or --force to start over")
            }
        }
        saved = existing
        if let w = threadWarning { FileHandle.standardError.write(Data("warning: \(path): \(w)\n".utf8)) }
        if existing == nil {
            do { try fm.createDirectory(atPath: path, withIntermediateDirectories: false) } catch {
                throw FormatError.io(path: path, doing: "cannot create the work folder", error)
            }
        }
    }

    /// A state file's contents (nil when there is none).
    static func read(_ file: String) throws -> State? {
        guard let d = FileManager.default.contents(atPath: file) else { return nil }
        do { return try JSONDecoder().decode(State.self, from: d) } catch {
            throw ConvertError.workState(path: file, problem: "the resume state is unreadable (\(error)); start over with --force")
        }
    }

    /// Replaces `state.json` atomically.
    func write(_ state: State) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let w = try AtomicFileWriter(destination: statePath, overwrite: true)
        try w.write(Array(try e.encode(state)))
        try w.commit()
    }

    /// The run finished (its output is in place) or saved nothing worth keeping.
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
