import CEditLine
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C while `chat` runs: SIGINT only raises this flag (installed without SA_RESTART, so a
/// blocked read returns EINTR); generation checks it between tokens and the prompt reader returns.
nonisolated(unsafe) var interruptFlag: sig_atomic_t = 0

enum Terminal {
    /// Both stdin and stdout are a terminal: line editing, history and echo control apply. Pipes
    /// (scripts, tests) get plain line reading.
    static var isInteractive: Bool { isatty(STDIN_FILENO) != 0 && isatty(STDOUT_FILENO) != 0 }

    /// Routes SIGINT to `interruptFlag` instead of ending the process.
    static func catchInterrupts() {
        var sa = sigaction()
        sa.__sigaction_handler.sa_handler = { _ in interruptFlag = 1 }
        sigemptyset(&sa.sa_mask)
        sa.sa_flags = 0
        sigaction(SIGINT, &sa, nil)
    }

    /// One byte of stdin, or nil at end of input or once Ctrl-C was pressed. The signal may be
    /// delivered to any of the process's threads (OpenBLAS and the kernels have workers), so a
    /// blocked read() would not always return: stdin is polled every 50 ms and the flag checked.
    static func readByte() -> UInt8? {
        var c: UInt8 = 0
        while interruptFlag == 0 {
            var p = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, 50)
            if r == 0 || (r < 0 && errno == EINTR) { continue }
            if r < 0 { return nil }
            let n = read(STDIN_FILENO, &c, 1)
            if n == 1 { return c }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return nil
        }
        return nil
    }

    /// libedit's byte reader: -1 (end of line input) on Ctrl-C too; the caller tells the two apart
    /// by the flag.
    static let interruptibleGetc: @convention(c) (UnsafeMutablePointer<FILE>?) -> Int32 = { _ in
        Terminal.readByte().map { Int32($0) } ?? -1
    }

    enum Input: Equatable { case line(String), interrupt, end }

    /// A prompt with line editing and history (libedit) on a terminal, plain lines otherwise.
    final class LineReader {
        let interactive = Terminal.isInteractive

        init() {
            if interactive {
                rl_readline_name = UnsafePointer(strdup("squint"))
                rl_catch_signals = 0
                rl_getc_function = Terminal.interruptibleGetc
                using_history()
            }
        }

        /// The next line; `.interrupt` when Ctrl-C was pressed at the prompt (or between prompts: the
        /// caller clears `interruptFlag` once it has handled one).
        func read(prompt: String) -> Input {
            if interruptFlag != 0 { return .interrupt }
            if interactive {
                guard let p = readline(prompt) else {
                    if interruptFlag != 0 { print(""); return .interrupt }
                    return .end
                }
                defer { free(p) }
                let s = String(cString: p)
                if !s.trimmingCharacters(in: .whitespaces).isEmpty { add_history(p) }
                return .line(s)
            }
            print(prompt, terminator: ""); fflush(stdout)
            var bytes: [UInt8] = []
            while let b = Terminal.readByte() {
                if b == UInt8(ascii: "\n") { return .line(String(decoding: bytes, as: UTF8.self)) }
                bytes.append(b)
            }
            if interruptFlag != 0 { print(""); return .interrupt }
            return bytes.isEmpty ? .end : .line(String(decoding: bytes, as: UTF8.self))
        }
    }

    /// While an answer streams: keys typed are neither echoed into it nor kept for the next prompt.
    final class QuietInput {
        var saved = termios()
        let active: Bool
        init() {
            active = Terminal.isInteractive && tcgetattr(STDIN_FILENO, &saved) == 0
            guard active else { return }
            var t = saved
            t.c_lflag &= ~tcflag_t(ECHO | ICANON)   // ISIG stays: Ctrl-C still interrupts
            tcsetattr(STDIN_FILENO, TCSANOW, &t)
        }
        func restore() {
            guard active else { return }
            tcflush(STDIN_FILENO, TCIFLUSH)
            tcsetattr(STDIN_FILENO, TCSANOW, &saved)
        }
    }
}
