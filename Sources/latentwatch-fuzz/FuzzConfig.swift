import ArgumentParser
import Foundation
import LatentWatchCLI

/// `latentwatch serve --config FILE`: the file's JSON turned into arguments, parsed and validated by the serve
/// command's options (ArgumentParser), then the alert policy and the sidecar's settings built from them (addresses
/// parsed, sizes checked): everything `serve` does with the file after reading it and before it opens models and
/// sockets.
enum FuzzConfig {
    static func run(_ bytes: [UInt8]) {
        guard let arguments = try? ServeCommand.arguments(fromConfigData: Data(bytes), path: "fuzz.json") else {
            return
        }
        guard let command = try? ServeCommand.parse(arguments) else { return }
        _ = try? command.alertPolicy()
        _ = try? command.sidecarConfiguration()
    }
}
