import ArgumentParser

@main
struct Squint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squint",
        abstract: "Inspect checkpoints, convert Qwen-VL-Chat BF16 to GPTQ Int4 on a CPU, and measure the drift.",
        version: "0.1.0",
        subcommands: [Inspect.self, Export.self, Synth.self, Convert.self, Validate.self, Run.self, Chat.self, PerplexityCommand.self, Tokenize.self, Bench.self]
    )
}
