import ArgumentParser
import Foundation
import SquintFormats
import SquintPipeline

/// Runs a command body; errors from the library are printed as one clear line on stderr with exit
/// code 1 (ArgumentParser's own errors keep their codes).
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        waitIfInterrupted()
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func jsonString<T: Encodable>(_ value: T) throws -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try enc.encode(value), as: UTF8.self)
}

/// Kept alive for the life of the process (a released dispatch source stops delivering).
nonisolated(unsafe) private var interruptSources: [DispatchSourceSignal] = []
/// Set by the interrupt handler before it removes files the command may still be writing.
nonisolated(unsafe) private var interruptInProgress = false

/// Called before reporting an error: when the error comes from the interrupt handler's cleanup
/// pulling files away, wait for the handler to exit, so the user sees its one line only.
func waitIfInterrupted() {
    while interruptInProgress { sleep(1) }
}

/// Ctrl-C (SIGINT) or SIGTERM during a writing command: stop now with one line on stderr naming the
/// output and exit code 1. Stopping at any moment is safe because every file is written under a
/// temporary name and renamed only when complete, and convert's state is saved atomically after every
/// block (scripts/faults.sh checks both with kill -9): `cleanup` only removes this process's own
/// temporary files, so nothing partial is left behind. Before this, SIGINT killed the process silently
/// (exit 130) and a synth left its hidden staging folder behind.
func stopCleanlyOnInterrupt(message: @escaping () -> String, cleanup: @escaping () -> Void) {
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)   // delivered to the dispatch source instead, on a normal thread
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            interruptInProgress = true
            cleanup()
            let lead = isatty(2) != 0 ? "\n" : ""   // end a progress line first
            FileHandle.standardError.write(Data("\(lead)error: \(message())\n".utf8))
            _exit(1)
        }
        source.resume()
        interruptSources.append(source)
    }
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
