import Foundation
import XCTest
import TestSupport

/// Ctrl-C during a writing command (issue 12.3): one line on stderr naming the output, exit code 1,
/// nothing at the output path and no hidden staging folder left behind. (kill -9 at random moments of
/// convert and synth, disk full and a read-only folder are exercised by scripts/faults.sh; resuming
/// after a failure at a fixed block is ConvertTests' `afterBlock` test.)
final class InterruptCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("cli-interrupt") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func testSIGINTDuringSynthStopsWithOneLineNamingTheOutputAndLeavesNothing() throws {
        let out = "\(tmp)/model"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: squint)
        p.arguments = ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "--seed", "20240611", "-o", out]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        // Interrupt once the staging folder exists (the 75 MB of weights take far longer to write than
        // this poll's 2 ms period), so the signal lands mid-write.
        let staging = "\(tmp)/.model.partial-\(p.processIdentifier)"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: staging) && p.isRunning && Date() < deadline { usleep(2000) }
        XCTAssertTrue(p.isRunning, "synth finished before it could be interrupted")
        kill(p.processIdentifier, SIGINT)
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 1)
        let errorLines = message.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).filter { $0.contains("error") }
        XCTAssertEqual(errorLines, ["squint: error: synth: interrupted; nothing was written at \(out)"], message)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), [], "no output and no staging folder")
    }
}
