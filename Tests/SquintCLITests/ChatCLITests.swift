import Foundation
import XCTest
import SquintPipeline
import SquintTokenizer
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `squint chat` as a terminal program: commands that never reach the model, a speed line after each
/// answer, no control tokens in answers, and Ctrl-C (under a pseudo-terminal) that stops an answer
/// without ending the conversation.
final class ChatCLITests: XCTestCase {
    static var tmp = ""
    let squint = Fixtures.squintExecutable()
    var model: String { Self.tmp + "/model" }

    override class func setUp() {
        tmp = Fixtures.temporaryFolder("chat")
        let r = try! Fixtures.run(Fixtures.squintExecutable(), ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"),
                                                                "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "-o", tmp + "/model"])
        precondition(r.status == 0, r.err)
        try! FileManager.default.copyItem(atPath: Fixtures.path("images/photos/skimage_chelsea.png"), toPath: tmp + "/cat.png")
    }
    override class func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func testCommandsNeverReachTheModel() throws {
        let input = ":help\n:bogus\n:image\n:draw\n:image /etc/passwd\n:image nope.png\n:image cat.png\n:quit\n"
        let r = try Fixtures.run(squint, ["chat", model, "--max-new-tokens", "2"], cwd: Self.tmp, stdin: input)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains(":image PATH   attach an image"), r.out)
        XCTAssertTrue(r.out.contains("unknown command :bogus; :help lists the commands"), r.out)
        XCTAssertTrue(r.out.contains("usage: :image PATH"), r.out)
        XCTAssertTrue(r.out.contains("usage: :draw OUT.png"), r.out)
        XCTAssertTrue(r.err.contains("squint: error: /etc/passwd: not an image"), r.err)
        XCTAssertTrue(r.err.contains("nope.png"), r.err)
        XCTAssertTrue(r.out.contains("(image 1 attached: cat.png)"), r.out)
        XCTAssertFalse(r.out.contains("tok/s"), "nothing may have been generated: \(r.out)")
    }

    func testEachAnswerEndsWithANewlineAndASpeedLine() throws {
        let r = try Fixtures.run(squint, ["chat", model, "--max-new-tokens", "5", "--greedy"], cwd: Self.tmp,
                                 stdin: ":image cat.png\nWhat is this?\nAnd now?\n")
        XCTAssertEqual(r.status, 0, r.err)
        let speed = r.out.split(separator: "\n").filter { $0.hasPrefix("[") && $0.contains(" tok/s") }
        XCTAssertEqual(speed.count, 2, r.out)
        XCTAssertFalse(r.out.contains("<|"), "control tokens shown: \(r.out)")
    }

    func testControlTokensAreNeverShown() {
        let ids = [15, SpecialTokens.imEnd, SpecialTokens.firstID + 3 + 154, SpecialTokens.boxStart, 16, SpecialTokens.boxEnd, 151_900]
        XCTAssertEqual(Runner.displayedIds(ids), [15, SpecialTokens.boxStart, 16, SpecialTokens.boxEnd])
        XCTAssertEqual(SpecialTokens.name(of: SpecialTokens.firstID + 3 + 154), "<|extra_154|>")
    }

    /// Under a pseudo-terminal (so chat uses libedit and turns echo off while answering): SIGINT, what
    /// Ctrl-C sends, stops the answer and the prompt comes back; the conversation goes on; two in a
    /// row at the prompt leave with status 0.
    func testCtrlCStopsTheAnswerAndReturnsToThePrompt() throws {
        // glibc's pty functions are hidden from Swift's Glibc module (they need _XOPEN_SOURCE): look them up.
        typealias IntFn = @convention(c) (Int32) -> Int32
        typealias NameFn = @convention(c) (Int32) -> UnsafeMutablePointer<CChar>?
        func fn<T>(_ name: String, _: T.Type) throws -> T { unsafeBitCast(try XCTUnwrap(dlsym(UnsafeMutableRawPointer(bitPattern: 0), name)), to: T.self) }
        let master = try fn("posix_openpt", IntFn.self)(O_RDWR | O_NOCTTY)
        XCTAssertGreaterThanOrEqual(master, 0)
        defer { close(master) }
        XCTAssertEqual(try fn("grantpt", IntFn.self)(master), 0)
        XCTAssertEqual(try fn("unlockpt", IntFn.self)(master), 0)
        let slaveName = String(cString: try XCTUnwrap(try fn("ptsname", NameFn.self)(master)))
        let slave = open(slaveName, O_RDWR | O_NOCTTY)
        XCTAssertGreaterThanOrEqual(slave, 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: squint)
        p.arguments = ["chat", model, "--max-new-tokens", "100000", "--threads", "1"]
        p.currentDirectoryURL = URL(fileURLWithPath: Self.tmp)
        let h = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
        p.standardInput = h; p.standardOutput = h; p.standardError = h
        try p.run()
        var seen = ""
        /// Reads the terminal until `done(seen)` holds; false after 60 s or when the terminal closes.
        func read(until done: (String) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if done(seen) { return true }
                var pfd = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 200) > 0 {
                    var buf = [UInt8](repeating: 0, count: 4096)
                    let n = Glibc.read(master, &buf, buf.count)
                    if n <= 0 { return false }
                    seen += String(decoding: buf[0..<n], as: UTF8.self)
                }
            }
            return false
        }
        func after(_ mark: Int, _ text: String) -> (String) -> Bool { { String($0.utf8.dropFirst(mark)).map { $0.contains(text) } ?? false } }
        func type(_ text: String) { let b = Array(text.utf8); _ = b.withUnsafeBytes { write(master, $0.baseAddress, b.count) } }

        /// True once the line editor has the terminal in raw mode (canonical mode off). Typed before
        /// that, the kernel itself echoes the line and the editor redraws it, so bytes after the echo
        /// need not be the answer (seen on a loaded machine: Ctrl-C then landed at the prompt).
        func rawMode() -> Bool {
            let deadline = Date().addingTimeInterval(60)
            var t = termios()
            while Date() < deadline {
                if tcgetattr(slave, &t) == 0 && t.c_lflag & tcflag_t(ICANON) == 0 { return true }
                usleep(10_000)
            }
            return false
        }

        XCTAssertTrue(read(until: after(0, "> ")), seen)
        XCTAssertTrue(rawMode(), "the line editor never took the terminal")
        type("Tell me a long story\r")
        XCTAssertTrue(read(until: after(0, "Tell me a long story\r\n")), seen)
        // Some of the answer has streamed in.
        let answer = seen.utf8.count
        XCTAssertTrue(read(until: { $0.utf8.count >= answer + 12 }), seen)
        p.interrupt()                                            // Ctrl-C during the answer
        XCTAssertTrue(read(until: after(answer, "[stopped: ")), seen)
        XCTAssertTrue(read(until: after(answer, "> ")), seen)
        XCTAssertTrue(p.isRunning, "Ctrl-C during an answer must not end the program")
        let help = seen.utf8.count
        type(":help\r")                                          // the conversation goes on
        XCTAssertTrue(read(until: after(help, ":reset        forget the conversation")), seen)
        XCTAssertTrue(read(until: after(help + 40, "> ")), seen)
        let prompt = seen.utf8.count
        p.interrupt()                                            // Ctrl-C at the prompt: a hint
        XCTAssertTrue(read(until: after(prompt, "Ctrl-C again")), seen)
        XCTAssertTrue(p.isRunning)
        p.interrupt()                                            // and again: leave
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, seen)
        XCTAssertEqual(p.terminationStatus, 0, seen)
    }
}
