#if canImport(Glibc)
package import Glibc
#elseif canImport(Musl)
package import Musl
#endif

/// Blocking connects to the sidecar's transports, a Unix domain socket or loopback TCP: shared by the
/// Swift client, the server's stale-socket check and the tests.
public enum LocalSocket {
    /// A socket call that failed: which call, and its `errno`.
    public struct Failure: Error, Sendable, Equatable {
        /// The call, with its argument (for example `connect(/run/lw.sock)`).
        public var call: String
        /// `errno`.
        public var code: Int32
    }

    /// The `sockaddr_un` of `path`, or nil when the path does not fit (107 bytes on Linux).
    package static func unixAddress(_ path: String) -> sockaddr_un? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        return addr
    }

    /// Connects a stream socket to the Unix domain socket at `path`; returns its descriptor.
    public static func connect(unixPath path: String) throws(Failure) -> Int32 {
        guard var addr = unixAddress(path) else { throw Failure(call: "socket path \(path)", code: ENAMETOOLONG) }
        return try connect(to: &addr, family: AF_UNIX, what: path)
    }

    /// Connects to TCP `host:port` (an IPv4 dotted quad) with TCP_NODELAY; returns the descriptor.
    public static func connect(host: String, port: Int) throws(Failure) -> Int32 {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            throw Failure(call: "inet_pton(\(host))", code: EINVAL)
        }
        let fd = try connect(to: &addr, family: AF_INET, what: "\(host):\(port)")
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    static func connect<Address>(to addr: inout Address, family: Int32, what: String) throws(Failure) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw Failure(call: "connect(\(what))", code: e)
        }
        return fd
    }
}
