import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 client over a loopback socket (one request per connection).
enum HTTPProbe {
    static func request(
        port: Int,
        _ method: String,
        _ path: String,
        body: String = "",
        headers: [String: String] = [:]
    ) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw DaemonError("HTTP connect to \(port) failed") }
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        let b = Array(body.utf8)
        text += "Content-Length: \(b.count)\r\n\r\n"
        let bytes = Array(text.utf8) + b
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        let response = String(decoding: data, as: UTF8.self)
        let status = Int(response.split(separator: " ").dropFirst().first ?? "") ?? -1
        let parts = response.components(separatedBy: "\r\n\r\n")
        var payload = parts.dropFirst().joined(separator: "\r\n\r\n")
        if response.lowercased().contains("transfer-encoding: chunked") { payload = dechunk(payload) }
        return (status, payload)
    }

    static func dechunk(_ s: String) -> String {
        var out = ""
        var rest = Substring(s)
        while let r = rest.range(of: "\r\n"), let n = Int(rest[..<r.lowerBound], radix: 16), n > 0 {
            let start = r.upperBound
            let bytes = Array(rest[start...].utf8)
            out += String(decoding: bytes.prefix(n), as: UTF8.self)
            rest = Substring(String(decoding: bytes.dropFirst(n + 2), as: UTF8.self))
        }
        return out
    }
}
