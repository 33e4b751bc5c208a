import ArgumentParser
import Foundation
import SquintModels
import SquintPipeline
import SquintTokenizer

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk with a Qwen-VL-Chat model about images, keeping the conversation history.",
        discussion: """
        Type a question and press Enter. On a terminal the line can be edited and earlier lines come \
        back with the arrow keys (libedit). Ctrl-C stops an answer and returns to the prompt; Ctrl-C \
        at the prompt right after another Ctrl-C (or Ctrl-D, or :quit) leaves. Commands: \
        ":image PATH" attaches an image to the next question (repeatable; checked at once), \
        ":draw OUT.png" draws the last answer's boxes, ":reset" clears the history, ":help" lists \
        them, ":quit" leaves. Each answer ends with a speed line.

        Exit codes: 0 left with :quit, Ctrl-C or end of input; 1 the model could not be loaded; 64 bad command line.

        Example: squint chat tiny.sq4 --vocab fixtures/tokenizer/qwen.tiktoken
        """)

    @Argument(help: "Model folder (config.json, weights, qwen.tiktoken), AutoGPTQ folder or SQ4 file; or a text model (.gguf, or a Qwen2/Llama folder).")
    var model: String

    @OptionGroup var generation: GenerationOptions

    static let help = """
        :image PATH   attach an image (JPEG or PNG) to the next question; repeat for several
        :draw OUT.png draw the last answer's <box>es onto the last image
        :reset        forget the conversation (and attached images)
        :help         this list
        :quit         leave (also Ctrl-D, or Ctrl-C twice)
        Ctrl-C stops an answer being generated.
        """

    /// What a line typed at the prompt asks for.
    enum Command: Equatable {
        case question(String), image(String), draw(String), reset, help, quit, empty
        case usage(String)

        init(_ line: String) {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard text.hasPrefix(":"), let first = text.dropFirst().first, first.isLetter else {
                self = text.isEmpty ? .empty : .question(text); return
            }
            let parts = text.split(separator: " ", maxSplits: 1).map(String.init)
            let arg = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            switch parts[0] {
            case ":quit", ":exit", ":q": self = .quit
            case ":reset": self = .reset
            case ":help", ":h", ":?": self = .help
            case ":image": self = arg.isEmpty ? .usage("usage: :image PATH (a JPEG or PNG file)") : .image(arg)
            case ":draw": self = arg.isEmpty ? .usage("usage: :draw OUT.png (draws the last answer's boxes)") : .draw(arg)
            default: self = .usage("unknown command \(parts[0]); :help lists the commands")
            }
        }
    }

    func run() throws {
        try runReportingErrors {
            if TextModel.canOpen(model) { return try runText() }
            let m = try generation.load(model)
            var history: [ChatTurn] = []
            var pending: [String] = []
            var lastBoxes: [RunResult.Box] = []
            var lastImage: String?
            print("squint chat: \(model). :help for commands; Ctrl-C stops an answer.")
            if m.checkpoint.isSynthetic { print("note: \(syntheticNote(model))") }
            Terminal.catchInterrupts()
            let reader = Terminal.LineReader()
            var lastWasInterrupt = false
            loop: while let line = readChatLine(reader, lastWasInterrupt: &lastWasInterrupt) {
                switch Command(line) {
                case .empty: continue loop
                case .quit: break loop
                case .help: print(Self.help)
                case .usage(let u): print(u)
                case .reset: history = []; pending = []; print("(history cleared)")
                case .image(let p):
                    do {
                        try Runner.checkImage(p)
                        pending.append(p); lastImage = p; print("(image \(pending.count) attached: \(p))")
                    } catch { printError(userMessage(error)) }
                case .draw(let out):
                    guard let img = lastImage else { print("no image yet: :image PATH first"); continue loop }
                    do {
                        try Runner.drawBoxes(lastBoxes, imagePath: img, output: out, overwrite: true)
                        print("(drew \(lastBoxes.count) boxes into \(out))")
                    } catch { printError(userMessage(error)) }
                case .question(let text):
                    let query = QwenTokenizer.fromListFormat(pending.map { .image($0) } + [.text(text)])
                    pending = []
                    interruptFlag = 0
                    let quiet = Terminal.QuietInput()
                    do {
                        let r = try Runner.answer(m, query: query, history: history, maxNewTokens: generation.maxNewTokens,
                                                  sampling: generation.sampling(m.generation),
                                                  onToken: { print($0, terminator: ""); fflush(stdout) },
                                                  shouldStop: { interruptFlag != 0 })
                        quiet.restore()
                        let stopped = interruptFlag != 0
                        interruptFlag = 0
                        let n = r.generatedIds.count
                        print("")
                        print(String(format: "[%@%d tokens, %.1f tok/s; prompt %d tokens, prefill %.2f s]", stopped ? "stopped: " : "",
                                     n, Double(n) / max(r.decodeSeconds, 1e-9), r.promptTokens, r.visionSeconds + r.prefillSeconds))
                        lastWasInterrupt = stopped
                        // A stopped answer still joins the history (as the official chat would have it so far).
                        history.append(ChatTurn(query: query, response: r.response))
                        lastBoxes = r.boxes
                    } catch {
                        quiet.restore()
                        print("")
                        printError(userMessage(error))
                    }
                }
            }
        }
    }
}
