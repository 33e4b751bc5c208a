import ArgumentParser
import CSquintKernels
import Foundation
import SquintFormats
import SquintPipeline
import SquintTensor

/// `--threads N`, the same on every command that computes.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads for Squint's kernels and OpenBLAS (default: $SQUINT_THREADS, else every core this process may use). Float results differ in their last bits between thread counts (docs/RELIABILITY.md).")
    var threads: Int?

    func validate() throws {
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be between 1 and 1024") }
    }

    /// Sets the thread count of Squint's loops and OpenBLAS, before any work.
    func apply() { if let threads { Threads.count = threads } }

    /// `apply()` for the inference commands (run, chat, perplexity), which also take OpenBLAS's fastest
    /// kernel set (`BLASKernels.useFastest`: AVX-512 where the CPU has it).
    func applyForInference() { apply(); BLASKernels.useFastest() }
}

/// The one prefix of every error line Squint prints (its own and ArgumentParser's).
let errorPrefix = "squint: error: "

/// Writes one line (or a few) to stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((errorPrefix + message + "\n").utf8))
}

/// Runs a command body; errors from the library are printed as one clear line on stderr with exit
/// code 1 (ArgumentParser's own errors keep their codes). Errors raised by Foundation itself are
/// turned into "PATH: problem" (never "NSCocoaErrorDomain Code=...").
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        waitIfInterrupted()
        printError(userMessage(error))
        throw ExitCode(1)
    }
}

/// The text a user sees for an error: Squint's own errors as they describe themselves, Foundation's
/// as the path and the problem in a few words.
func userMessage(_ error: Error) -> String {
    if FormatError.isFoundationError(error) {
        let reason = FormatError.plainReason(error)
        return FormatError.path(of: error).map { "\($0): \(reason)" } ?? reason
    }
    return "\(error)"
}

func jsonString<T: Encodable>(_ value: T) throws -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try enc.encode(value), as: UTF8.self)
}

/// Spelling help for the command line: ArgumentParser reports only the first problem it meets, so
/// `validate A B --evl X` would say "Missing expected argument '--eval'" without naming the typo.
enum CommandLineHints {
    /// Levenshtein distance (small strings only).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        for i in 1...a.count {
            var cur = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }

    /// The closest candidate within a typo's reach (distance <= 2, or a prefix), if any.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, distance(word, $0)) }.sorted { $0.1 < $1.1 }
        if let best = scored.first, best.1 <= max(1, min(2, word.count / 3)) { return best.0 }
        return candidates.first { $0.hasPrefix(word) && word.count >= 3 }
    }

    /// "unknown command 'valdate'; did you mean 'validate'?" when the first word is not a subcommand.
    static func unknownSubcommand(_ args: [String], names: [String]) -> String? {
        guard let first = args.first, !first.hasPrefix("-"), !names.contains(first), first != "help" else { return nil }
        var m = "unknown command '\(first)'"
        if let s = suggestion(for: first, among: names) { m += "; did you mean '\(s)'?" }
        return m + "\nThe commands are: " + names.joined(separator: ", ") + ". See 'squint --help'."
    }

    /// The first `--option` on the command line that `command` does not have, with the nearest one.
    static func unknownOption(_ args: [String], command: ParsableCommand.Type) -> String? {
        let help = Squint.helpMessage(for: command, includeHidden: true)
        let regex = try? NSRegularExpression(pattern: "--[A-Za-z0-9][A-Za-z0-9-]*")
        let ns = help as NSString
        var known = Set(["--help", "--version"])
        for m in regex?.matches(in: help, range: NSRange(location: 0, length: ns.length)) ?? [] { known.insert(ns.substring(with: m.range)) }
        for a in args {
            if a == "--" { break }
            guard a.hasPrefix("--"), a.count > 2 else { continue }
            let name = String(a.split(separator: "=", maxSplits: 1)[0])
            if known.contains(name) { continue }
            var m = "Unknown option '\(name)'"
            if let s = suggestion(for: name, among: Array(known)) { m += ". Did you mean '\(s)'?" }
            return m
        }
        return nil
    }
}

/// Set by the interrupt handler before it removes files the command may still be writing.
nonisolated(unsafe) private var interruptInProgress = false

/// Called before reporting an error: when the error comes from the interrupt handler's cleanup
/// pulling files away, wait for the handler to exit, so the user sees its one line only.
func waitIfInterrupted() {
    while interruptInProgress { sleep(1) }
}

/// Ctrl-C (SIGINT) or SIGTERM during a writing command that writes `output`: stop now with one line on
/// stderr naming the output and exit code 1. Stopping at any moment is safe because every file is
/// written under a temporary name and put in place through `CommitGate`, and convert's state is saved
/// atomically after every block (scripts/faults.sh checks both with kill -9): `cleanup` only removes
/// this process's own temporary files, so nothing partial is left behind. The signal handler only
/// records the signal; a thread of our own does the rest, because the shared worker pool may be busy
/// with the very work being stopped. When the output was already in place as the signal came, the
/// job ends normally (its result is complete; deleting it would lose work).
func stopCleanlyOnInterrupt(output: String, message: @escaping () -> String, cleanup: @escaping () -> Void) {
    guard sq_interrupt_install() == 0 else { return }
    let t = Thread {
        while true {
            _ = sq_interrupt_wait()
            // The output is complete: let the job write its log and end normally.
            if CommitGate.close(checking: output) { CommitGate.dismissInterrupt(); continue }
            break
        }
        interruptInProgress = true
        cleanup()
        let lead = isatty(2) != 0 ? "\n" : ""   // end a progress line first
        FileHandle.standardError.write(Data("\(lead)\(errorPrefix)\(message())\n".utf8))
        _exit(1)
    }
    t.stackSize = 1 << 20
    t.start()
}

/// Removes this process's temporary files (`.NAME.tmp-PID-*`, AtomicFileWriter's) beside `output`.
func removeOwnTemporaries(besides output: String) {
    let fm = FileManager.default
    let dest = (output as NSString).standardizingPath
    let parent = Paths.parent(of: dest)
    let prefix = ".\((dest as NSString).lastPathComponent).tmp-\(getpid())-"
    for name in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix(prefix) {
        try? fm.removeItem(atPath: "\(parent)/\(name)")
    }
}
