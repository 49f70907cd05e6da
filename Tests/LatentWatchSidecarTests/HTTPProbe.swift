import Foundation

/// A minimal HTTP/1.1 client over a loopback socket (one request per connection).
enum HTTPProbe {
    static func request(
        port: Int,
        _ method: String,
        _ path: String,
        body: String = "",
        headers: [String: String] = [:]
    ) throws -> (status: Int, body: String) {
        let c = try RawConnection(port: port, timeout: 20)
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        let b = Array(body.utf8)
        text += "Content-Length: \(b.count)\r\n\r\n"
        c.write(Array(text.utf8) + b)
        let data = c.readToEnd()
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
