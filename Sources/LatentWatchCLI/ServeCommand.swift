import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchSidecar
import Logging
import ServiceLifecycle
import UnixSignals

/// `latentwatch serve`: the sidecar (Docs/WireProtocol.md).
package struct ServeCommand: AsyncParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract:
            "Run the monitor as a sidecar: activations in over a Unix socket or loopback TCP, alerts and metrics out.",
        discussion: """
            One --model per monitored layer, in the order clients send them. The binary protocol is in \
            Docs/WireProtocol.md; --http adds GET /metrics (Prometheus), GET /healthz, GET /v1/alerts and \
            POST /v1/observe. SIGTERM or SIGINT drains: every frame already read is assessed and acknowledged, \
            sinks and the recorder are flushed, and the exit status is 0. SIGHUP (or POST /v1/reload) reads the \
            --model files again and swaps them in without dropping an input; a file that cannot be read or does \
            not fit its layer leaves the old models serving and is logged, counted and shown in /healthz.
            A --config file is a JSON object whose keys are these long option names (without dashes) and \
            whose values are strings, numbers, booleans or arrays (for repeatable options); the command line \
            wins over the file for single options, and repeatable options add up.
            Prints one "listening unix:PATH", "listening tcp:HOST:PORT" or "listening http:HOST:PORT" line per \
            listener on stdout once it accepts connections.
            Example: latentwatch serve --model h1.lwm --model h2.lwm --socket /run/lw.sock --http 127.0.0.1:9464
            """
    )

    @Option(help: "Model file of a monitored layer (repeat, in the order clients send the layers).")
    var model: [String] = []

    @Option(help: "Name of each layer (repeat; default: the layer name stored in each model).")
    var layer: [String] = []

    @Option(help: "Unix domain socket path (mode 0600; a stale socket file is replaced).")
    var socket: String = "latentwatch.sock"

    @Flag(help: "Do not listen on a Unix socket.")
    var noSocket = false

    @Option(help: "Also listen for the binary protocol on loopback TCP HOST:PORT (port 0 picks a free one).")
    var tcp: String?

    @Option(help: "Serve HTTP on loopback HOST:PORT: /metrics, /healthz, /v1/alerts, POST /v1/observe.")
    var http: String?

    @Option(help: "File holding the bearer token every client must present (HELLO and HTTP).")
    var tokenFile: String?

    @Option(help: "JSON file with these options (see the discussion).")
    var config: String?

    @OptionGroup var alerts: AlertOptions

    @Option(name: .customLong("alerts"), help: "Append alerts as JSON lines to this file (- for stdout).")
    var alertsPath: String?

    @Flag(help: "Log every alert through swift-log (stderr).")
    var logAlerts = false

    @Option(help: "Record every assessed input's activations to this LatentWatch recording.")
    var record: String?

    @Option(help: "Largest frame body in bytes.")
    var maxFrameBytes: Int = 16 << 20

    @Option(help: "Largest number of inputs in one OBSERVE frame.")
    var maxRows: Int = 4096

    @Option(help: "Send an ACK after this many handled OBSERVE frames.")
    var ackEvery: Int = 64

    @Option(help: "Bound of the shared input queue, bytes of float32 payload.")
    var queueBytes: Int = 64 << 20

    @Option(help: "Share of the queue one connection may hold, bytes.")
    var connectionQueueBytes: Int = 8 << 20

    @Option(help: "When a queue is full: reject (error frame, default), drop (count only) or wait (stop reading).")
    var whenFull: QueueFullPolicy = .reject

    @Option(help: "Unread outbound bytes after which a client that does not read is disconnected.")
    var maxReplyBytes: Int = 4 << 20

    @Option(help: "Open connections at most.")
    var maxConnections: Int = 64

    @Option(help: "Seconds a new connection has to send its HELLO before it is closed.")
    var handshakeTimeout: Double = 10

    @Flag(help: "Log at debug level.")
    var verbose = false

    package func run() async throws {
        if let config {
            var merged = try ServeCommand.parse(try Self.arguments(fromConfig: config) + Self.commandLineArguments())
            merged.config = nil
            try await merged.run()
            return
        }
        guard !model.isEmpty else { throw ValidationError("give at least one --model") }
        guard layer.isEmpty || layer.count == model.count else {
            throw ValidationError("give one --layer per --model, or none")
        }
        // SIGHUP is trapped first, so that a reload asked for while the models load does not end the process (its
        // default action); it is served once the sidecar runs.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let policy = try alerts.policy()
        let load: @Sendable () throws -> [Sidecar.Layer] = { [model, layer] in
            try model.enumerated().map { i, path in
                let m = try Files.readModel(path)
                // The model id is the whole-file CRC-32 the file's trailer stores (Docs/ModelFormat.md).
                return Sidecar.Layer(name: layer.isEmpty ? m.layer : layer[i], model: m, modelID: m.fingerprint ?? 0)
            }
        }
        let layers = try load()
        guard Set(layers.map(\.name)).count == layers.count else {
            throw ValidationError("layer names must differ: \(layers.map(\.name)); name them with --layer")
        }
        var token: String?
        if let tokenFile {
            token = try userFacing("token file \(tokenFile)") {
                try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard token?.isEmpty == false else { throw ValidationError("the token file \(tokenFile) is empty") }
        }
        let configuration = try sidecarConfiguration(token: token)
        var logger = Logger(label: "latentwatch.serve")
        logger.logLevel = verbose ? .debug : .info
        var sinks: [any AlertSink] = []
        if let alertsPath { sinks.append(alertsPath == "-" ? JSONLinesSink() : JSONLinesSink(path: alertsPath)) }
        if logAlerts { sinks.append(LoggerSink(logger: logger)) }
        let recorder = try record.map { path in
            try userFacing("recorder \(path)") {
                try ActivationRecorder(
                    configuration: .init(
                        path: path,
                        layers: layers.map {
                            RecordedLayer(name: $0.name, shape: [$0.model.inputCount], dtype: .float32)
                        }
                    )
                )
            }
        }
        let sidecar = try userFacing("serve") {
            try Sidecar(
                layers: layers,
                policy: policy,
                sinks: sinks,
                recorder: recorder,
                configuration: configuration,
                logger: logger,
                onListening: { address in
                    FileHandle.standardOutput.write(Data("listening \(address)\n".utf8))
                },
                loadModels: load
            )
        }
        // SIGHUP reloads the model files (the sidecar logs and counts the outcome).
        let reloader = Task.detached {
            for await _ in hangups { _ = await sidecar.reloadOnOwnThread() }
        }
        defer { reloader.cancel() }
        // Signals belong to the executable: the sidecar is a Service in this process's ServiceGroup.
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: sidecar)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("stopped")
    }

    /// The arguments after the subcommand on this process's command line. `serve` is a subcommand of the root
    /// command, which takes no options before it, so it is always the first argument; a later argument that
    /// happens to read "serve" (a path, a layer name) is a value, not the subcommand. Empty when this command
    /// was not started as `latentwatch serve ...` (for example parsed from code).
    static func commandLineArguments(_ all: [String] = CommandLine.arguments) -> [String] {
        guard all.count >= 2, all[1] == "serve" else { return [] }
        return Array(all[2...])
    }

    /// The sidecar's settings from these options (addresses parsed, sizes checked), without touching files or
    /// sockets: what `run()` starts the server with, and what the `config` fuzz target checks.
    package func sidecarConfiguration(token: String? = nil) throws -> SidecarConfiguration {
        let configuration = SidecarConfiguration(
            socketPath: noSocket ? nil : socket,
            tcp: try tcp.map { t in try userFacing("--tcp") { try LoopbackAddress(parsing: t) } },
            http: try http.map { h in try userFacing("--http") { try LoopbackAddress(parsing: h) } },
            token: token,
            maxFrameBytes: maxFrameBytes,
            maxRows: maxRows,
            ackEvery: ackEvery,
            queueBytes: queueBytes,
            connectionQueueBytes: connectionQueueBytes,
            whenFull: whenFull,
            maxReplyBytes: maxReplyBytes,
            maxConnections: maxConnections,
            handshakeTimeoutSeconds: handshakeTimeout
        )
        try userFacing("serve") { try configuration.validate() }
        return configuration
    }

    /// The alert policy these options set.
    package func alertPolicy() throws -> AlertPolicy { try alerts.policy() }

    /// Turns a JSON config file into command-line arguments.
    package static func arguments(fromConfig path: String) throws -> [String] {
        let data = try userFacing("config \(path)") { try Data(contentsOf: URL(fileURLWithPath: path)) }
        return try arguments(fromConfigData: data, path: path)
    }

    /// The arguments a configuration file's bytes stand for (`path` names it in messages).
    package static func arguments(fromConfigData data: Data, path: String) throws -> [String] {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CLIError("config \(path): not a JSON object")
        }
        var args: [String] = []
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            guard key != "config" else { throw CLIError("config \(path): a config file cannot name another config") }
            let flag = "--" + key
            switch value {
            case let b as Bool where type(of: value) == type(of: true as NSNumber) || value is Bool:
                if b { args.append(flag) }
            case let n as NSNumber:
                args += [flag, n.stringValue]
            case let s as String:
                args += [flag, s]
            case let a as [Any]:
                for v in a { args += [flag, "\(v)"] }
            default:
                throw CLIError("config \(path): the value of '\(key)' must be a string, number, boolean or array")
            }
        }
        return args
    }
}
