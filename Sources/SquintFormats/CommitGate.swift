import CSquintKernels
import Foundation

/// The moment a writing job puts a finished file or folder in place (its rename), made atomic with
/// respect to Ctrl-C. A commit never starts once an interrupt was requested, and the interrupt
/// handler waits for a commit in progress, then learns whether the job's output is already in place:
/// the user is told "nothing was written" only when that is true, and a job whose output is complete
/// finishes normally instead of deleting what it just wrote.
public enum CommitGate {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var committed = Set<String>()

    /// Runs `body` (the rename into `destination`) unless an interrupt was requested; then it parks the
    /// calling thread: the interrupt handler ends the process.
    public static func commit<T>(to destination: String, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        if sq_interrupt_requested() != 0 {
            lock.unlock()
            while true { sleep(60) }
        }
        defer { lock.unlock() }
        let r = try body()
        committed.insert((destination as NSString).standardizingPath)
        return r
    }

    /// For the interrupt handler: waits for a commit in progress and closes the gate for good (no later
    /// commit starts), then says whether `output` was already put in place. `reopen()` undoes the closing
    /// when the handler decides to let a finished job end normally.
    public static func close(checking output: String) -> Bool {
        lock.lock()
        return committed.contains((output as NSString).standardizingPath)
    }

    public static func reopen() { lock.unlock() }

    /// For the interrupt handler that lets a finished job end: forgets the signal (so the job's last
    /// renames, e.g. its log, are not held) and reopens the gate.
    public static func dismissInterrupt() {
        sq_interrupt_clear()
        lock.unlock()
    }
}
