import LatentWatchWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Why a client call failed.
public enum SidecarClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The socket could not be created, connected, written or read (`errno` and the call).
    case io(String, Int32)
    /// The server closed the connection.
    case closed
    /// The server answered with an error (fatal ones also close the connection).
    case server(WireError)
    /// The server sent something this client does not understand.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .io(let what, let e): return "\(what) failed: \(String(cString: strerror(e)))"
        case .closed: return "the server closed the connection"
        case .server(let e): return "server error: \(e)"
        case .protocolViolation(let m): return "protocol violation: \(m)"
        }
    }
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
    /// Assessments received while waiting for something else (fire-and-forget callers ignore them).
    var nextSequence: UInt64 = 1
    var syncToken: UInt64 = 0
    var open = true

    /// Connects to a Unix domain socket and shakes hands.
    public convenience init(
        unixSocket path: String,
        token: String = "",
        name: String = "swift"
    ) throws(SidecarClientError) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .io("socket", errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            Glibc.close(fd)
            throw .io("socket path too long", ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw .io("connect(\(path))", e)
        }
        try self.init(fd: fd, token: token, name: name)
    }

    /// Connects to TCP `host:port` (IPv4 dotted quad, normally 127.0.0.1) and shakes hands.
    public convenience init(
        host: String = "127.0.0.1",
        port: Int,
        token: String = "",
        name: String = "swift"
    ) throws(SidecarClientError) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .io("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            Glibc.close(fd)
            throw .io("inet_pton(\(host))", EINVAL)
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw .io("connect(\(host):\(port))", e)
        }
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

    /// Sends `rows` inputs and waits for their assessments. `layers[i]` holds `rows × elements[i]` floats.
    public func observe(
        _ layers: [[Float]],
        rows: Int,
        requestIDs: [String?] = []
    ) throws(SidecarClientError)
        -> [WireAssessment]
    {
        let seq = try send(layers, rows: rows, requestIDs: requestIDs, reply: true)
        while true {
            let (h, body) = try readFrame()
            switch FrameType(rawValue: h.type) {
            case .assessment:
                let f = try decode(body) { b throws(WireError) in try AssessmentFrame.decode(b) }
                if f.sequence == seq { return f.rows }
            case .ack:
                lastAck = try decode(body) { b throws(WireError) in try Ack.decode(b, flags: h.flags) }
            case .error:
                let e = try decode(body) { b throws(WireError) in try WireError.decode(b) }
                if e.code.isFatal {
                    close()
                    throw .server(e)
                }
                if e.sequence == seq { throw .server(e) }
                errors.append(e)
            default:
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
        reply: Bool = false
    ) throws(SidecarClientError)
        -> UInt64
    {
        let seq = nextSequence
        nextSequence += 1
        let frame = withBuffers(layers) {
            ObserveLayout.frame(sequence: seq, reply: reply, rows: rows, requestIDs: requestIDs, layers: $0)
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
            switch FrameType(rawValue: h.type) {
            case .ack:
                let a = try decode(body) { b throws(WireError) in try Ack.decode(b, flags: h.flags) }
                lastAck = a
                if a.sync == token { return a }
            case .error:
                let e = try decode(body) { b throws(WireError) in try WireError.decode(b) }
                if e.code.isFatal {
                    close()
                    throw .server(e)
                }
                errors.append(e)
            case .assessment:
                continue
            default:
                throw .protocolViolation("unexpected frame type \(h.type)")
            }
        }
    }

    /// Says BYE and waits for the final ACK and the close.
    public func bye() throws(SidecarClientError) -> Ack? {
        try writeAll(Control.bye())
        while true {
            let frame: (FrameHeader, [UInt8])
            do { frame = try readFrame() } catch .closed {
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
