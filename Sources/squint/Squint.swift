import ArgumentParser
import Foundation
import SquintPipeline

@main
struct Squint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squint",
        abstract: "Inspect checkpoints, convert Qwen-VL-Chat BF16 to GPTQ Int4 on a CPU, and measure the drift.",
        discussion: """
        Exit codes: 0 success; 1 bad input (the message names the file and the problem); 3 `inspect \
        --diff` found differences; 4 `validate` gate failed; 64 bad command line.

        Example: squint inspect MODEL_DIR --summary
        """,
        version: squintVersion,
        subcommands: [Inspect.self, Export.self, Synth.self, Convert.self, Validate.self, Run.self, Chat.self, PerplexityCommand.self, Tokenize.self, Bench.self]
    )

    /// ArgumentParser's main, with one error prefix for every message, a suggestion for a mistyped
    /// subcommand, and a mistyped option named even when another problem (a missing required
    /// option) would be reported first.
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        let subcommands = configuration.subcommands
        let names = subcommands.map { $0._commandName }
        if let m = CommandLineHints.unknownSubcommand(args, names: names) {
            printError(m)
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        do {
            var command = try parseAsRoot(args)
            try command.run()
        } catch {
            let code = exitCode(for: error)
            var text = fullMessage(for: error)
            if code == .success {
                if !text.isEmpty { print(text) }
                Foundation.exit(0)
            }
            if code == .validationFailure, let first = args.first, let sub = subcommands.first(where: { $0._commandName == first }),
               let typo = CommandLineHints.unknownOption(Array(args.dropFirst()), command: sub) {
                var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                if !lines.isEmpty { lines[0] = "Error: " + typo }
                lines.removeAll { $0.hasPrefix("Help: ") }   // the help line of the other problem
                text = lines.joined(separator: "\n")
            }
            if !text.isEmpty {
                if text.hasPrefix("Error: ") { text = errorPrefix + text.dropFirst(7) }
                FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
            }
            Foundation.exit(code.rawValue)
        }
    }
}
