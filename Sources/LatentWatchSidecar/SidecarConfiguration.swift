import LatentWatch
import LatentWatchWire

/// What a full queue does with a new frame (Docs/WireProtocol.md, "Queues, backpressure and limits").
public enum QueueFullPolicy: String, Sendable, Codable, CaseIterable {
    /// Refuse the frame with a non-fatal `overloaded` ERROR (default).
    case reject
    /// Drop it silently and count it.
    case drop
    /// Queue it and stop reading from that connection until its share drains.
    case wait
}

/// A loopback TCP address.
public struct LoopbackAddress: Sendable, Equatable, CustomStringConvertible {
    /// Host (a loopback address).
    public var host: String
    /// Port (0: any free port).
    public var port: Int

    /// Parses `HOST:PORT`; only loopback hosts are allowed.
    public init(parsing text: String) throws(LatentWatchError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65_535).contains(port)
        else {
            throw LatentWatchError(.invalidConfiguration, "'\(text)' is not HOST:PORT (for example 127.0.0.1:7070)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { host = "127.0.0.1" }
        guard host.hasPrefix("127.") || host == "::1" else {
            throw LatentWatchError(
                .invalidConfiguration,
                "'\(host)' is not a loopback address: the sidecar listens on 127.0.0.0/8 or ::1 only"
            )
        }
        self.host = host
        self.port = port
    }

    /// Creates an address without checks.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything the sidecar needs besides its monitor.
public struct SidecarConfiguration: Sendable {
    /// Unix domain socket path (nil: none).
    public var socketPath: String?
    /// Loopback TCP address for the binary protocol (nil: none).
    public var tcp: LoopbackAddress?
    /// Loopback HTTP address (nil: none).
    public var http: LoopbackAddress?
    /// Bearer token required in HELLO and HTTP requests (nil: none).
    public var token: String?
    /// Largest frame body after the handshake.
    public var maxFrameBytes: Int
    /// Largest number of inputs per OBSERVE.
    public var maxRows: Int
    /// ACK period in handled OBSERVE frames.
    public var ackEvery: Int
    /// Bound of the shared queue, bytes of float32 payload.
    public var queueBytes: Int
    /// Share of the queue one connection may hold.
    public var connectionQueueBytes: Int
    /// What a full queue does.
    public var whenFull: QueueFullPolicy
    /// Outbound bytes a connection may leave unread before it is closed.
    public var maxReplyBytes: Int
    /// Open connections at most.
    public var maxConnections: Int
    /// Alerts kept for `GET /v1/alerts`.
    public var recentAlerts: Int
    /// Largest `POST /v1/observe` body.
    public var maxHTTPBodyBytes: Int
    /// Seconds a new connection has to send its HELLO before it is closed.
    public var handshakeTimeoutSeconds: Double

    /// Defaults from Docs/WireProtocol.md.
    public init(
        socketPath: String? = "latentwatch.sock",
        tcp: LoopbackAddress? = nil,
        http: LoopbackAddress? = nil,
        token: String? = nil,
        maxFrameBytes: Int = 16 << 20,
        maxRows: Int = 4096,
        ackEvery: Int = 64,
        queueBytes: Int = 64 << 20,
        connectionQueueBytes: Int = 8 << 20,
        whenFull: QueueFullPolicy = .reject,
        maxReplyBytes: Int = 4 << 20,
        maxConnections: Int = 64,
        recentAlerts: Int = 1000,
        maxHTTPBodyBytes: Int = 16 << 20,
        handshakeTimeoutSeconds: Double = 10
    ) {
        self.socketPath = socketPath
        self.tcp = tcp
        self.http = http
        self.token = token
        self.maxFrameBytes = maxFrameBytes
        self.maxRows = maxRows
        self.ackEvery = ackEvery
        self.queueBytes = queueBytes
        self.connectionQueueBytes = connectionQueueBytes
        self.whenFull = whenFull
        self.maxReplyBytes = maxReplyBytes
        self.maxConnections = maxConnections
        self.recentAlerts = recentAlerts
        self.maxHTTPBodyBytes = maxHTTPBodyBytes
        self.handshakeTimeoutSeconds = handshakeTimeoutSeconds
    }

    /// Checks the values against each other.
    public func validate() throws(LatentWatchError) {
        guard socketPath != nil || tcp != nil || http != nil else {
            throw LatentWatchError(
                .invalidConfiguration,
                "nothing to listen on: give a socket path, a TCP address or an HTTP address"
            )
        }
        guard maxFrameBytes >= WireFormat.handshakeLimit else {
            throw LatentWatchError(
                .invalidConfiguration,
                "max frame bytes must be at least \(WireFormat.handshakeLimit)"
            )
        }
        guard maxRows >= 1, ackEvery >= 1, maxConnections >= 1, recentAlerts >= 0 else {
            throw LatentWatchError(.invalidConfiguration, "max rows, ack period and max connections must be at least 1")
        }
        guard connectionQueueBytes >= 1, queueBytes >= connectionQueueBytes else {
            throw LatentWatchError(
                .invalidConfiguration,
                "the queue (\(queueBytes) B) must hold at least one connection's share (\(connectionQueueBytes) B)"
            )
        }
        guard handshakeTimeoutSeconds > 0 else {
            throw LatentWatchError(.invalidConfiguration, "the handshake timeout must be positive")
        }
        guard maxReplyBytes >= 1 << 16 else {
            throw LatentWatchError(.invalidConfiguration, "max reply bytes must be at least 65536")
        }
    }
}
