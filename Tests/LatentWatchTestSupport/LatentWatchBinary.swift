public import Foundation

/// The real `latentwatch` executable, run as a child process by the CLI and sidecar tests.
public enum LatentWatchBinary {
    /// The package root.
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    /// The bundled digits-MLP activations.
    public static let data = root.appendingPathComponent("Samples/Data/digits-mlp")

    /// The executable beside the test bundle, else the debug build.
    public static var executable: String { product("latentwatch") }

    /// A product of this package: beside the test bundle, else in the debug build.
    public static func product(_ name: String) -> String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return root.appendingPathComponent(".build/debug/\(name)").path
    }

    /// A new directory with a short path (Unix socket paths are limited to 107 bytes).
    public static func temporaryDirectory() -> URL {
        let d = URL(fileURLWithPath: "/tmp/lwt-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Runs to completion in the package root; returns exit status, stdout, stderr.
    @discardableResult
    public static func run(
        _ arguments: [String],
        product name: String = "latentwatch",
        environment: [String: String] = [:]
    ) throws -> (
        status: Int32, out: String, err: String
    ) {
        try runTool(product(name), arguments, environment: environment)
    }

    /// Runs any executable to completion (in `directory`, by default the package root); returns exit status, stdout,
    /// stderr. `environment` is added to this process's; a key given an empty value is removed instead.
    @discardableResult
    public static func runTool(
        _ executable: String,
        _ arguments: [String],
        in directory: URL = root,
        environment: [String: String] = [:]
    ) throws -> (
        status: Int32, out: String, err: String
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }.filter { !$0.value.isEmpty }
        }
        p.currentDirectoryURL = directory
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain stderr on its own thread: a child that fills one pipe while we block on the other would hang.
        final class Box: @unchecked Sendable { var data = Data() }
        let e = Box()
        let errDone = DispatchSemaphore(value: 0)
        let reader = Thread {
            e.data = err.fileHandleForReading.readDataToEndOfFile()
            errDone.signal()
        }
        reader.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
    }
}
