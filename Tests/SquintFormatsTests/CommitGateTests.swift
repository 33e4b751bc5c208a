import CSquintKernels
import Foundation
import SquintFormats
import XCTest

/// The Ctrl-C handler asks the gate whether the output is already in place (then the job ends normally,
/// since deleting a finished result would lose work) and closes it so no later rename starts.
final class CommitGateTests: XCTestCase {
    func testTheGateKnowsWhichOutputsArePlacedAndHoldsCommitsWhileClosed() throws {
        let dir = NSTemporaryDirectory() + "commit-gate-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let placed = "\(dir)/out.bin", other = "\(dir)/other.bin"
        try AtomicFileWriter.write([1, 2, 3], to: placed, overwrite: false)
        XCTAssertTrue(CommitGate.close(checking: "\(dir)/./out.bin"), "a committed path counts however it is spelled")
        CommitGate.reopen()
        XCTAssertFalse(CommitGate.close(checking: other))
        // While the handler holds the gate, a rename waits.
        let reopened = NSLock()
        nonisolated(unsafe) var reopenedFirst = false
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
            reopened.lock(); reopenedFirst = true; reopened.unlock()
            CommitGate.reopen()
        }
        try AtomicFileWriter.write([4], to: other, overwrite: false)
        reopened.lock(); XCTAssertTrue(reopenedFirst, "the rename ran while the gate was closed"); reopened.unlock()
        XCTAssertEqual(FileManager.default.contents(atPath: other), Data([4]))
    }

    /// A signal that came after the output was placed is dismissed, and later renames (the job's log)
    /// go through instead of waiting forever.
    func testADismissedInterruptDoesNotHoldLaterCommits() throws {
        let dir = NSTemporaryDirectory() + "commit-gate-dismiss-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir); signal(SIGINT, SIG_DFL); signal(SIGTERM, SIG_DFL) }
        XCTAssertEqual(sq_interrupt_install(), 0)
        try AtomicFileWriter.write([1], to: "\(dir)/out", overwrite: false)
        raise(SIGTERM)
        XCTAssertEqual(sq_interrupt_requested(), SIGTERM)
        XCTAssertTrue(CommitGate.close(checking: "\(dir)/out"))
        CommitGate.dismissInterrupt()
        XCTAssertEqual(sq_interrupt_requested(), 0)
        try AtomicFileWriter.write([2], to: "\(dir)/out.log", overwrite: false)
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/out.log"), Data([2]))
    }
}
