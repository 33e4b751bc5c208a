import ArgumentParser
import Foundation
import SquintPipeline
import SquintTensor

/// `run` and `chat` on text models (a GGUF file or a Hugging Face folder of Qwen2 / Llama): the same
/// commands, the conversation in the file's chat format (ChatML), no images.
func loadTextModel(_ path: String, _ generation: GenerationOptions) throws -> TextModel {
    generation.threading.applyForInference()
    let bar = ProgressBar(label: "load", unit: .items("tensors"))
    let m = try TextModel.open(path) { done, total in bar.update(done, total) }
    try m.checkChatFormat()
    m.model.useInt8Activations(generation.int8Activations)
    return m
}

func speedLine(_ a: TextModel.Answer) -> String {
    let n = a.generatedIds.count
    return String(format: "[%@%d prompt tokens, prefill %.2f s (%.1f tok/s); %d tokens in %.2f s (%.1f tok/s)]",
                  a.stopped ? "stopped: " : "", a.promptTokens, a.prefillSeconds, Double(a.promptTokens) / max(a.prefillSeconds, 1e-9),
                  n, a.decodeSeconds, Double(max(n - 1, 0)) / max(a.decodeSeconds, 1e-9))
}

extension Run {
    func runText() throws {
        guard images.isEmpty, dump == nil, draw == nil else {
            throw ValidationErrorExit(message: "\(model) is a text model: --image, --dump and --draw are for Qwen-VL models")
        }
        let m = try loadTextModel(model, generation)
        let prompt = m.chatPrompt(history: [], user: self.prompt, system: nil)
        let a = try m.answer(prompt: prompt, maxNewTokens: generation.maxNewTokens,
                             sampling: generation.sampling(try m.samplingDefaults),
                             onText: json ? nil : { print($0, terminator: ""); fflush(stdout) })
        if json {
            print(try jsonString(a))
        } else {
            print("")
            FileHandle.standardError.write(Data((speedLine(a) + "\n").utf8))
        }
    }
}

extension Chat {
    func runText() throws {
        let m = try loadTextModel(model, generation)
        var history: [(user: String, assistant: String)] = []
        print("squint chat: \(model) [\(m.source)]. :help for commands; Ctrl-C stops an answer.")
        Terminal.catchInterrupts()
        let reader = Terminal.LineReader()
        var lastWasInterrupt = false
        loop: while let line = readChatLine(reader, lastWasInterrupt: &lastWasInterrupt) {
            switch Command(line) {
            case .empty: continue loop
            case .quit: break loop
            case .help: print(":reset        forget the conversation\n:help         this list\n:quit         leave (also Ctrl-D, or Ctrl-C twice)\nCtrl-C stops an answer being generated.")
            case .usage(let u): print(u)
            case .image, .draw: print("this is a text model: :image and :draw are for Qwen-VL models")
            case .reset: history = []; print("(history cleared)")
            case .question(let text):
                interruptFlag = 0
                let quiet = Terminal.QuietInput()
                do {
                    let a = try m.answer(prompt: m.chatPrompt(history: history, user: text, system: nil),
                                         maxNewTokens: generation.maxNewTokens,
                                         sampling: generation.sampling(try m.samplingDefaults),
                                         onText: { print($0, terminator: ""); fflush(stdout) },
                                         shouldStop: { interruptFlag != 0 })
                    quiet.restore()
                    interruptFlag = 0
                    print("")
                    print(speedLine(a))
                    lastWasInterrupt = a.stopped
                    history.append((text, a.text))
                } catch {
                    quiet.restore()
                    print("")
                    printError(userMessage(error))
                }
            }
        }
    }
}

/// The next line typed at the chat prompt, or nil to leave: end of input, or Ctrl-C at the prompt
/// right after another Ctrl-C (a first one only says how to leave).
func readChatLine(_ reader: Terminal.LineReader, lastWasInterrupt: inout Bool) -> String? {
    while true {
        switch reader.read(prompt: "> ") {
        case .end: print(""); return nil
        case .interrupt:
            interruptFlag = 0
            if lastWasInterrupt { return nil }
            print("(Ctrl-C again, Ctrl-D or :quit to leave)")
            lastWasInterrupt = true
        case .line(let l):
            lastWasInterrupt = false
            return l
        }
    }
}
