public import LatentWatchWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Why a client call failed: a ``Code`` to branch on (it can grow without breaking callers), a message, and
/// the server's ``WireError`` or the failed call's `errno` when there is one.
public struct SidecarClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure. New codes may be added: a `switch` over codes needs a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The code's name.
        public var description: String { name }
        /// The socket could not be created, connected, written or read.
        public static let io = Code(name: "io")
        /// The server closed the connection.
        public static let closed = Code(name: "closed")
        /// The server answered with an error (fatal ones also close the connection): see ``serverError``.
        public static let server = Code(name: "server")
        /// The server sent something this client does not understand.
        public static let protocolViolation = Code(name: "protocolViolation")
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong.
    public let message: String
    /// The server's error, for ``Code/server``.
    public let serverError: WireError?
    /// The failed call's `errno`, for ``Code/io``.
    public let errno: Int32?

    /// A failed socket call.
    static func io(_ call: String, _ e: Int32) -> SidecarClientError {
        SidecarClientError(
            code: .io,
            message: "\(call) failed: \(String(cString: strerror(e)))",
            serverError: nil,
            errno: e
        )
    }
    /// The server closed the connection.
    static let closed = SidecarClientError(
        code: .closed,
        message: "the server closed the connection",
        serverError: nil,
        errno: nil
    )
    /// The server's ERROR frame.
    static func server(_ e: WireError) -> SidecarClientError {
        SidecarClientError(code: .server, message: "server error: \(e)", serverError: e, errno: nil)
    }
    /// An unexpected frame.
    static func protocolViolation(_ m: String) -> SidecarClientError {
        SidecarClientError(code: .protocolViolation, message: "protocol violation: \(m)", serverError: nil, errno: nil)
    }

    /// The message.
    public var description: String { message }
}

/// A blocking client of `latentwatch serve` (Docs/WireProtocol.md) over a Unix socket or loopback TCP.
/// One client is one connection; use it from one thread at a time (it is not `Sendable`).
public final class SidecarClient {
    let fd: Int32
    /// What the server announced.
    public private(set) var welcome: Welcome
    /// The latest ACK received.
    public private(set) var lastAck: Ack?
    /// Non-fatal ERROR frames received so far (for example `overloaded` for a refused frame).
    public private(set) var errors: [WireError] = []
    /// Sequence number of the next OBSERVE.
    var nextSequence: UInt64 = 1
    var syncToken: UInt64 = 0
    var open = true

    /// Connects to a Unix domain socket and shakes hands.
    public convenience init(
        unixSocket path: String,
        token: String = "",
        name: String = "swift"
    ) throws(SidecarClientError) {
        let fd: Int32
        do { fd = try LocalSocket.connect(unixPath: path) } catch { throw .io(error.call, error.code) }
        try self.init(fd: fd, token: token, name: name)
    }

    /// Connects to TCP `host:port` (IPv4 dotted quad, normally 127.0.0.1) and shakes hands.
    public convenience init(
        host: String = "127.0.0.1",
        port: Int,
        token: String = "",
        name: String = "swift"
    ) throws(SidecarClientError) {
        let fd: Int32
        do { fd = try LocalSocket.connect(host: host, port: port) } catch { throw .io(error.call, error.code) }
        try self.init(fd: fd, token: token, name: name)
    }

    init(fd: Int32, token: String, name: String) throws(SidecarClientError) {
        self.fd = fd
        self.welcome = Welcome(maxFrame: 0, maxRows: 0, ackEvery: 0, layers: [])
        do throws(SidecarClientError) {
            try writeAll(Hello(token: token, client: name).frame())
            let (h, body) = try readFrame()
            if h.type == FrameType.error.rawValue {
                throw .server(try decode(body) { b throws(WireError) in try WireError.decode(b) })
            }
            guard h.type == FrameType.welcome.rawValue else {
                throw .protocolViolation("expected WELCOME, got frame type \(h.type)")
            }
            welcome = try decode(body) { b throws(WireError) in try Welcome.decode(b) }
        } catch {
            Glibc.close(fd)
            open = false
            throw error
        }
    }

    deinit { if open { Glibc.close(fd) } }

    /// Closes the connection without a BYE.
    public func close() {
        if open { Glibc.close(fd) }
        open = false
    }

    /// Sends `rows` inputs and waits for their assessments. `layers[i]` holds `rows × elements[i]` floats;
    /// `predictions`, when given, the host model's prediction of each input (protocol 1.2; a server of a regression
    /// model then reports each one's disagreement with the latent density's prediction).
    public func observe(
        _ layers: [[Float]],
        rows: Int,
        requestIDs: [String?] = [],
        predictions: [Float]? = nil
    ) throws(SidecarClientError)
        -> [WireAssessment]
    {
        let seq = try send(layers, rows: rows, requestIDs: requestIDs, reply: true, predictions: predictions)
        while true {
            let (h, body) = try readFrame()
            if h.type == FrameType.assessment.rawValue {
                let f = try decode(body) { b throws(WireError) in try AssessmentFrame.decode(b, flags: h.flags) }
                if f.sequence == seq { return f.rows }
            } else if try !absorb(h, body, failing: seq) {
                throw .protocolViolation("unexpected frame type \(h.type)")
            }
        }
    }

    /// Sends `rows` inputs without waiting; returns the frame's sequence. Reply `true` makes the server
    /// send an ASSESSMENT that a later ``observe`` or ``sync()`` reads past.
    @discardableResult
    public func send(
        _ layers: [[Float]],
        rows: Int,
        requestIDs: [String?] = [],
        reply: Bool = false,
        predictions: [Float]? = nil
    ) throws(SidecarClientError)
        -> UInt64
    {
        if let predictions {
            guard welcome.minor >= 2 else {
                throw .protocolViolation(
                    "the server speaks protocol \(welcome.major).\(welcome.minor); host predictions need 1.2"
                )
            }
            guard predictions.count == rows else {
                throw .protocolViolation("\(predictions.count) host predictions for \(rows) inputs")
            }
        }
        let seq = nextSequence
        nextSequence += 1
        let frame = withBuffers(layers) { l in
            if let predictions {
                return predictions.withUnsafeBufferPointer {
                    ObserveLayout.frame(
                        sequence: seq,
                        reply: reply,
                        rows: rows,
                        requestIDs: requestIDs,
                        layers: l,
                        predictions: $0
                    )
                }
            }
            return ObserveLayout.frame(sequence: seq, reply: reply, rows: rows, requestIDs: requestIDs, layers: l)
        }
        try writeAll(frame)
        return seq
    }

    /// Asks the server to acknowledge everything sent so far and waits for that ACK.
    public func sync() throws(SidecarClientError) -> Ack {
        syncToken += 1
        let token = syncToken
        try writeAll(Control.sync(token))
        while true {
            let (h, body) = try readFrame()
            if h.type == FrameType.assessment.rawValue { continue }
            guard try absorb(h, body) else { throw .protocolViolation("unexpected frame type \(h.type)") }
            if h.type == FrameType.ack.rawValue, let a = lastAck, a.sync == token { return a }
        }
    }

    /// Takes an ACK (into ``lastAck``) or an ERROR that arrives while waiting for something else; false for
    /// other frames. A fatal error closes the connection and throws, as does an error naming `sequence`;
    /// other errors are kept in ``errors``.
    func absorb(_ h: FrameHeader, _ body: [UInt8], failing sequence: UInt64? = nil) throws(SidecarClientError) -> Bool {
        switch FrameType(rawValue: h.type) {
        case .ack:
            lastAck = try decode(body) { b throws(WireError) in try Ack.decode(b, flags: h.flags) }
            return true
        case .error:
            let e = try decode(body) { b throws(WireError) in try WireError.decode(b) }
            if e.code.isFatal {
                close()
                throw .server(e)
            }
            if let sequence, e.sequence == sequence { throw .server(e) }
            errors.append(e)
            return true
        default:
            return false
        }
    }

    /// Says BYE and waits for the final ACK and the close.
    public func bye() throws(SidecarClientError) -> Ack? {
        try writeAll(Control.bye())
        while true {
            let frame: (FrameHeader, [UInt8])
            do { frame = try readFrame() } catch  where error.code == .closed {
                close()
                return lastAck
            }
            let (h, body) = frame
            if h.type == FrameType.ack.rawValue {
                lastAck = try decode(body) { b throws(WireError) in try Ack.decode(b, flags: h.flags) }
            } else if h.type == FrameType.error.rawValue {
                errors.append(try decode(body) { b throws(WireError) in try WireError.decode(b) })
            }
        }
    }

    // MARK: Raw access (tests, tools)

    /// Writes raw bytes to the socket.
    public func writeAll(_ bytes: [UInt8]) throws(SidecarClientError) {
        guard open else { throw .closed }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { b in
                Glibc.send(fd, b.baseAddress! + sent, b.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                if e == EPIPE || e == ECONNRESET { throw .closed }
                throw .io("send", e)
            }
            sent += n
        }
    }

    /// Reads one whole frame.
    public func readFrame() throws(SidecarClientError) -> (FrameHeader, [UInt8]) {
        var head = [UInt8](repeating: 0, count: WireFormat.headerSize)
        try readExactly(&head)
        let h = head.withUnsafeBytes { FrameHeader.parse($0) }
        guard h.length <= 1 << 30 else { throw .protocolViolation("a frame of \(h.length) bytes") }
        var body = [UInt8](repeating: 0, count: h.length)
        try readExactly(&body)
        return (h, body)
    }

    func readExactly(_ buf: inout [UInt8]) throws(SidecarClientError) {
        guard open else { throw .closed }
        var got = 0
        while got < buf.count {
            let n = buf.withUnsafeMutableBytes { b in recv(fd, b.baseAddress! + got, b.count - got, 0) }
            if n == 0 { throw .closed }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                if e == ECONNRESET { throw .closed }
                throw .io("recv", e)
            }
            got += n
        }
    }

    func decode<T>(
        _ body: [UInt8],
        _ parse: (UnsafeRawBufferPointer) throws(WireError) -> T
    ) throws(SidecarClientError) -> T {
        let result: Result<T, WireError> = body.withUnsafeBytes { b in
            Result { () throws(WireError) -> T in try parse(b) }
        }
        switch result {
        case .success(let v): return v
        case .failure(let e): throw .server(e)
        }
    }
}

/// Runs `body` with stable pointers to every array of `arrays`.
func withBuffers<R>(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) -> R) -> R {
    func go(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) -> R {
        if i == arrays.count { return body(acc) }
        return arrays[i].withUnsafeBufferPointer { go(i + 1, acc + [$0]) }
    }
    return go(0, [])
}
