import Foundation
import LatentWatch
import LatentWatchClient
import LatentWatchTestSupport
import LatentWatchWire

#if canImport(Glibc)
import Glibc
#endif

/// The shared runner of the real executable (LatentWatchTestSupport).
typealias Binary = LatentWatchBinary

/// The digits models (h1, h2) fitted once per test process with `latentwatch fit`.
enum DigitsModels {
    static let directory = fitted(family: "gda")

    /// A new directory holding h1.lwm and h2.lwm fitted with `family` by `latentwatch fit`.
    static func fitted(family: String) -> URL {
        let d = Binary.temporaryDirectory()
        for layer in ["h1", "h2"] {
            let r = try? Binary.run([
                "fit", "--activations", Binary.data.appendingPathComponent("train_\(layer).npy").path,
                "--labels", Binary.data.appendingPathComponent("train_labels.npy").path,
                "--calibration", Binary.data.appendingPathComponent("calibration_\(layer).npy").path,
                "--family", family, "--layer", layer, "--output", d.appendingPathComponent("\(layer).lwm").path,
            ])
            precondition(r?.status == 0, "fit failed: \(r?.err ?? "no process")")
        }
        return d
    }

    static var paths: [String] { ["h1", "h2"].map { directory.appendingPathComponent("\($0).lwm").path } }

    /// Rows of a bundled array.
    static func rows(_ name: String) throws -> (values: [Float], rows: Int, columns: Int) {
        let f = try TensorFile(path: Binary.data.appendingPathComponent(name).path)
        let t = try f.tensor(nil)
        return (try f.floats(t.name), t.rows, t.rowElements)
    }
}

/// A running `latentwatch serve`.
final class Daemon {
    let process = Process()
    let directory: URL
    let stdoutPath: URL
    let stderrPath: URL
    var listening: [String: String] = [:]

    /// Starts `latentwatch serve` with the digits models and `extra` arguments; waits for every listener.
    init(_ extra: [String] = [], models: [String] = DigitsModels.paths, expect: Set<String> = ["unix"]) throws {
        directory = Binary.temporaryDirectory()
        stdoutPath = directory.appendingPathComponent("serve.out")
        stderrPath = directory.appendingPathComponent("serve.err")
        FileManager.default.createFile(atPath: stdoutPath.path, contents: nil)
        FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: Binary.executable)
        var args = ["serve"]
        for m in models { args += ["--model", m] }
        if !extra.contains("--socket") && !extra.contains("--no-socket") { args += ["--socket", socketPath] }
        process.arguments = args + extra
        process.standardOutput = try FileHandle(forWritingTo: stdoutPath)
        process.standardError = try FileHandle(forWritingTo: stderrPath)
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = (try? String(contentsOf: stdoutPath, encoding: .utf8)) ?? ""
            // Complete lines only: the server may be in the middle of writing the last one.
            let complete = text.lastIndex(of: "\n").map { text[...$0] } ?? ""
            for line in complete.split(separator: "\n") where line.hasPrefix("listening ") {
                let address = line.dropFirst("listening ".count)
                let kind = String(address.prefix { $0 != ":" })
                listening[kind] = String(address.dropFirst(kind.count + 1))
            }
            if expect.isSubset(of: Set(listening.keys)) { return }
            if !process.isRunning { break }
            usleep(20_000)
        }
        throw DaemonError("serve did not start: \(stderr)")
    }

    var socketPath: String { directory.appendingPathComponent("s.sock").path }
    var stderr: String { (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? "" }
    var tcpPort: Int { Int(listening["tcp"]?.split(separator: ":").last ?? "") ?? -1 }
    var httpPort: Int { Int(listening["http"]?.split(separator: ":").last ?? "") ?? -1 }

    func client(token: String = "") throws -> SidecarClient { try SidecarClient(unixSocket: socketPath, token: token) }

    /// Sends SIGTERM and waits for the exit status.
    @discardableResult
    func terminate(timeout: TimeInterval = 60) -> Int32? {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        return wait(timeout: timeout)
    }

    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A raw socket for sending arbitrary bytes.
final class RawConnection {
    let fd: Int32

    init(unixSocket path: String) throws {
        fd = try LocalSocket.connect(unixPath: path)
        setTimeout(10)
    }

    /// A loopback TCP connection.
    init(port: Int, timeout: Int = 10) throws {
        fd = try LocalSocket.connect(host: "127.0.0.1", port: port)
        setTimeout(timeout)
    }

    func setTimeout(_ seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the peer closes (or the timeout passes).
    func readToEnd() -> [UInt8] {
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        return data
    }

    /// Reads frames until the server closes (or the timeout passes); returns them.
    func readUntilClosed() -> [(FrameHeader, [UInt8])] { Self.frames(readToEnd()) }

    /// Reads exactly one frame.
    func readFrame() -> (FrameHeader, [UInt8])? {
        guard let head = readExactly(WireFormat.headerSize) else { return nil }
        let h = head.withUnsafeBytes { FrameHeader.parse($0) }
        guard let body = readExactly(h.length) else { return nil }
        return (h, body)
    }

    func readExactly(_ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let k = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, n - got, 0) }
            if k <= 0 { return nil }
            got += k
        }
        return out
    }

    static func frames(_ data: [UInt8]) -> [(FrameHeader, [UInt8])] {
        var out: [(FrameHeader, [UInt8])] = []
        var at = 0
        while data.count - at >= WireFormat.headerSize {
            let h = data[at..<(at + 8)].withUnsafeBytes { FrameHeader.parse($0) }
            guard data.count - at - 8 >= h.length else { break }
            out.append((h, Array(data[(at + 8)..<(at + 8 + h.length)])))
            at += 8 + h.length
        }
        return out
    }

    /// The error codes among `frames`.
    static func errors(_ frames: [(FrameHeader, [UInt8])]) -> [WireError] {
        frames.filter { $0.0.type == FrameType.error.rawValue }.compactMap { f in
            try? f.1.withUnsafeBytes { b throws(WireError) in try WireError.decode(b) }
        }
    }
}
