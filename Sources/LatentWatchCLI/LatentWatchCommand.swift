import ArgumentParser
import Foundation
import LatentWatchNumerics

/// The `latentwatch` command line.
@available(macOS 10.15, macCatalyst 13, iOS 13, tvOS 13, watchOS 6, *)
public struct LatentWatchCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "latentwatch",
        abstract: "Runtime uncertainty monitoring for neural-network activations.",
        discussion:
            "Files are recognised by content: .npy, .npz, safetensors, LatentWatch recordings (.lwr) and models (.lwm).",
        subcommands: [
            DemoCommand.self, FitCommand.self, ScoreCommand.self, ReplayCommand.self, EvaluateCommand.self,
            InspectCommand.self, RecordCommand.self, ServeCommand.self, MergeCommand.self, CalibrateFusionCommand.self,
        ],
        defaultSubcommand: DemoCommand.self
    )

    public init() {}
}

extension LatentWatchCommand {
    /// Parses the process arguments and runs the chosen subcommand, awaiting asynchronous ones. (A top-level
    /// `await LatentWatchCommand.main()` in another module binds to the synchronous `main()` on Linux.)
    public static func runMain() async {
        // Before anything uses BLAS: a generic fallback core on a capable CPU is replaced by relaunching.
        ComputeEnvironment.relaunchWithPreferredBLASCoreIfNeeded()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let e as CLIError {
            FileHandle.standardError.write(Data("Error: \(e)\n".utf8))
            Foundation.exit(e.status)
        } catch {
            // Help and version exit 0; a malformed option (ArgumentParser's usage error, 64) exits 2, like every
            // other refusal of bad input.
            let code = exitCode(for: error)
            guard code != .success else { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
