import ArgumentParser

/// The `latentwatch` command line.
public struct LatentWatchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "latentwatch",
        abstract: "Runtime uncertainty monitoring for neural-network activations.",
        subcommands: [DemoCommand.self, InspectCommand.self],
        defaultSubcommand: DemoCommand.self
    )

    public init() {}
}
