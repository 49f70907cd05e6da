// Bounded load test of `latentwatch serve` (Docs/Performance.md): loopback only, fixed duration per phase.
//
//   swift build -c release --product latentwatch --product latentwatch-loadtest
//   .build/release/latentwatch-loadtest [--seconds 5] [--quick]
//
// Fits a synthetic GDA (D = 512, K = 10, full covariance), starts the real `latentwatch serve` beside this
// executable on a Unix socket, and measures: request/reply latency (1 input per frame) from 1 and 8 clients;
// fire-and-forget throughput (32 inputs per frame, acknowledged); the server's memory while clients offer
// twice the sustainable rate. The in-process `Monitor.assess` rate is printed beside it as the ceiling.
import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchClient
import LatentWatchLab
import LatentWatchNumerics
import LatentWatchWire

#if canImport(Glibc)
import Glibc
#endif

struct LoadTestOptions: ParsableArguments {
    @Option(help: "Seconds per phase (default 5, or 2 with --quick).")
    var seconds: Double?

    @Flag(help: "Shorter phases.")
    var quick = false

    func validate() throws {
        if let seconds, !(seconds > 0 && seconds <= 3600) {
            throw ValidationError("--seconds must be in (0, 3600]")
        }
    }
}

/// The single-layer argument every timed call reuses.
nonisolated(unsafe) let one = OneLayer()

@Sendable func now() -> Double { monotonicSeconds() }

func runLoadTest(_ options: LoadTestOptions) throws {
    let phaseSeconds = options.seconds ?? (options.quick ? 2 : 5)
    let d = 512
    let k = 10
    let perClass = 600

    // MARK: Synthetic model
    let queryCount = 4096
    let synthetic = Synthetic.isotropicClasses(
        seed: 42,
        dimension: d,
        classes: k,
        perClass: perClass,
        queries: queryCount
    )
    let train = synthetic.train
    let labels = synthetic.labels
    let queries = synthetic.queries
    let model = try LatentModelFitter.fit(
        InMemoryActivations(values: train, shape: [d], labels: labels),
        configuration: FitConfiguration(family: .gda, calibrationFraction: 0.2, fitBackground: false, layerName: "z")
    )
    let dir = URL(fileURLWithPath: "/tmp/lw-load-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let modelPath = dir.appendingPathComponent("z.lwm").path
    try ModelFile.write(model, to: modelPath)

    func percentile(_ v: [Double], _ p: Double) -> Double { Quantile.lowerRank(v, p) ?? .nan }

    // MARK: In-process ceiling
    let inline = try Monitor(configuration: MonitorConfiguration(layers: [MonitoredLayer(model: model)]))
    var scratch = Assessment()
    let inlineStart = now()
    var inlineCount = 0
    let querySnapshot = queries
    try querySnapshot.withUnsafeBufferPointer { q in
        while now() - inlineStart < min(2, phaseSeconds) {
            let r = inlineCount % queryCount
            try inline.assess(one(UnsafeBufferPointer(rebasing: q[(r * d)..<((r + 1) * d)])), into: &scratch)
            inlineCount += 1
        }
    }
    let inlineRate = Double(inlineCount) / (now() - inlineStart)

    // MARK: The daemon
    let serveBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("latentwatch").path
    guard FileManager.default.isExecutableFile(atPath: serveBinary) else {
        throw LabError(
            "\(serveBinary) is missing: build it with swift build -c release --product latentwatch",
            status: 2
        )
    }
    let socketPath = dir.appendingPathComponent("s.sock").path
    let server = Process()
    // With taskset and 2+ cores: the server gets core 0, this process (the clients) core 1, so the clients
    // can offer more than the server scores, and the server's own figures are not diluted by client work.
    let pin =
        FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        && ProcessInfo.processInfo.activeProcessorCount >= 2
    let serveArguments = ["serve", "--model", modelPath, "--socket", socketPath, "--shift", "off", "--window", "0"]
    if pin {
        let me = Process()
        me.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        me.arguments = ["-a", "-p", "-c", "1", "\(getpid())"]
        me.standardOutput = FileHandle.nullDevice
        try me.run()
        me.waitUntilExit()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        server.arguments = ["-c", "0", serveBinary] + serveArguments
    } else {
        server.executableURL = URL(fileURLWithPath: serveBinary)
        server.arguments = serveArguments
    }
    let outPath = dir.appendingPathComponent("serve.out")
    FileManager.default.createFile(atPath: outPath.path, contents: nil)
    server.standardOutput = try FileHandle(forWritingTo: outPath)
    server.standardError = FileHandle.nullDevice
    try server.run()
    defer {
        if server.isRunning {
            kill(server.processIdentifier, SIGTERM)
            server.waitUntilExit()
        }
    }
    for _ in 0..<3000 where !((try? String(contentsOf: outPath, encoding: .utf8)) ?? "").contains("listening") {
        usleep(10_000)
    }

    let serverPID = server.processIdentifier
    let rss: @Sendable (String) -> Int = { field in
        let text = (try? String(contentsOfFile: "/proc/\(serverPID)/status", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    /// Runs `clients` threads for `seconds`; each gets a connected client and returns its samples.
    final class Results: @unchecked Sendable {
        let lock = NSLock()
        var latencies: [Double] = []
        var inputs = 0
        var rejected = 0
        var assessed = 0
        var errors: [String] = []
    }

    func runClients(
        _ clients: Int,
        seconds: Double,
        _ body: @escaping @Sendable (SidecarClient, Int, Double, Results) throws -> Void
    )
        -> (Results, Double)
    {
        let results = Results()
        let group = DispatchGroup()
        let start = now()
        for c in 0..<clients {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let client = try SidecarClient(unixSocket: socketPath, name: "load-\(c)")
                    try body(client, c, start + seconds, results)
                    _ = try client.bye()
                } catch {
                    results.lock.lock()
                    results.errors.append("\(error)")
                    results.lock.unlock()
                }
            }.start()
        }
        group.wait()
        return (results, now() - start)
    }

    let rowsOf: @Sendable (Int, Int) -> [Float] = { start, n in
        var out = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            let r = (start + i) % queryCount
            for j in 0..<d { out[i * d + j] = querySnapshot[r * d + j] }
        }
        return out
    }

    struct Row {
        var name: String
        var rate: Double
        var p50: Double = .nan
        var p99: Double = .nan
        var note: String = ""
    }
    var table: [Row] = []

    // Request/reply latency, one input per frame.
    for clients in [1, 8] {
        let (r, elapsed) = runClients(clients, seconds: phaseSeconds) { client, c, end, results in
            var lat: [Double] = []
            var i = c * 97
            let frames = (0..<64).map { rowsOf(c * 64 + $0, 1) }
            while now() < end {
                let t0 = now()
                _ = try client.observe([frames[i % 64]], rows: 1)
                lat.append(now() - t0)
                i += 1
            }
            results.lock.lock()
            results.latencies += lat
            results.inputs += lat.count
            results.lock.unlock()
        }
        table.append(
            Row(
                name: "reply, 1 input/frame, \(clients) client\(clients > 1 ? "s" : "")",
                rate: Double(r.inputs) / elapsed,
                p50: percentile(r.latencies, 0.5) * 1e6,
                p99: percentile(r.latencies, 0.99) * 1e6,
                note: r.errors.isEmpty ? "" : "errors: \(r.errors.prefix(2))"
            )
        )
    }

    // Fire-and-forget throughput, 32 inputs per frame, SYNC every 16 frames (its round trip is the latency).
    var sustainable = 0.0
    for clients in [1, 8] {
        let (r, elapsed) = runClients(clients, seconds: phaseSeconds) { client, c, end, results in
            let frames = (0..<16).map { rowsOf(c * 512 + $0 * 32, 32) }
            var f = 0
            var syncLat: [Double] = []
            while now() < end {
                try client.send([frames[f % 16]], rows: 32)
                f += 1
                if f % 16 == 0 {
                    let t0 = now()
                    _ = try client.sync()
                    syncLat.append(now() - t0)
                }
            }
            let ack = try client.sync()
            results.lock.lock()
            results.inputs += Int(ack.assessed)
            results.rejected += Int(ack.rejected)
            results.latencies += syncLat
            results.lock.unlock()
        }
        let rate = Double(r.inputs) / elapsed
        sustainable = max(sustainable, rate)
        table.append(
            Row(
                name: "fire-and-forget, 32 inputs/frame, \(clients) client\(clients > 1 ? "s" : "")",
                rate: rate,
                p50: percentile(r.latencies, 0.5) * 1e6,
                p99: percentile(r.latencies, 0.99) * 1e6,
                note: "latency = SYNC round trip behind 16 frames; rejected \(r.rejected)"
            )
        )
    }

    // Twice the sustainable rate, offered open-loop by one client that cannot be the bottleneck: its frames are
    // encoded once (32 inputs each, fire-and-forget) and only their sequence numbers are patched before each
    // write, so it spends its core on send(2). A second thread reads the server's replies (ERROR frames for
    // refused frames, the final ACK) as they come, so the server never holds replies for a client that does
    // not read. The server's memory is sampled every 50 ms.
    let target = 2 * sustainable
    let rssBefore = rss("VmRSS:")
    final class Peak: @unchecked Sendable {
        let lock = NSLock()
        var kb = 0
        var running = true
    }
    let peak = Peak()
    let sampler = Thread {
        while true {
            peak.lock.lock()
            let go = peak.running
            peak.lock.unlock()
            if !go { break }
            let v = rss("VmRSS:")
            peak.lock.lock()
            peak.kb = max(peak.kb, v)
            peak.lock.unlock()
            usleep(50_000)
        }
    }
    sampler.start()
    final class Flood: @unchecked Sendable {
        let lock = NSLock()
        var offered = 0
        var sendSeconds = 0.0
        var refusedFrames = 0
        var refusedCodes: [String: Int] = [:]
        var assessed = 0
        var rejected = 0
        var dropped = 0
        var acks = 0
        var error: String?
    }
    let flood = Flood()
    let floodConnections = 8
    let floodStart = now()
    do {
        let clients = try (0..<floodConnections).map { try SidecarClient(unixSocket: socketPath, name: "flood-\($0)") }
        let rowsPerFrame = 32
        var frames: [[UInt8]] = (0..<16).map { f in
            rowsOf(f * rowsPerFrame, rowsPerFrame).withUnsafeBufferPointer {
                ObserveLayout.frame(sequence: 0, reply: false, rows: rowsPerFrame, layers: [$0])
            }
        }
        let syncToken: UInt64 = 0x5EED
        let done = DispatchGroup()
        for client in clients {
            // The reader thread only reads (readFrame) and the writer only writes (writeAll): the two paths share
            // the socket, not state.
            nonisolated(unsafe) let replies = client
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    while true {
                        let (h, body) = try replies.readFrame()
                        if h.type == FrameType.error.rawValue {
                            let e = try body.withUnsafeBytes { try WireError.decode($0) }
                            flood.lock.lock()
                            flood.refusedFrames += 1
                            flood.refusedCodes["\(e.code)", default: 0] += 1
                            flood.lock.unlock()
                        } else if h.type == FrameType.ack.rawValue {
                            let a = try body.withUnsafeBytes { try Ack.decode($0, flags: h.flags) }
                            if a.sync == syncToken {
                                flood.lock.lock()
                                flood.assessed += Int(a.assessed)
                                flood.rejected += Int(a.rejected)
                                flood.dropped += Int(a.dropped)
                                flood.acks += 1
                                flood.lock.unlock()
                                return
                            }
                        }
                    }
                } catch {
                    flood.lock.lock()
                    flood.error = "reader: \(error)"
                    flood.lock.unlock()
                }
            }.start()
        }
        let end = floodStart + phaseSeconds
        let interval = Double(rowsPerFrame) / target
        var next = now()
        var sequences = [UInt64](repeating: 1, count: floodConnections)
        var offered = 0
        var k = 0
        while now() < end {
            let c = k % floodConnections
            var f = frames[k % 16]
            withUnsafeBytes(of: sequences[c].littleEndian) { s in
                for i in 0..<8 { f[WireFormat.headerSize + i] = s[i] }
            }
            frames[k % 16] = f
            try clients[c].writeAll(f)
            sequences[c] += 1
            offered += rowsPerFrame
            k += 1
            next += interval
            let wait = next - now()
            if wait > 0 { usleep(UInt32(min(wait, max(0, end - now())) * 1e6)) }
        }
        let sendSeconds = now() - floodStart
        for client in clients { try client.writeAll(Control.sync(syncToken)) }
        done.wait()
        flood.lock.lock()
        flood.offered = offered
        flood.sendSeconds = sendSeconds
        flood.lock.unlock()
        for client in clients { _ = try? client.bye() }
    } catch {
        flood.lock.lock()
        flood.error = "\(error)"
        flood.lock.unlock()
    }
    let floodElapsed = now() - floodStart
    peak.lock.lock()
    peak.running = false
    peak.lock.unlock()
    let hwm = rss("VmHWM:")

    // MARK: Report
    print(
        "latentwatch serve load test: D=\(d), K=\(k) GDA full covariance, Unix socket, \(phaseSeconds) s per phase, "
            + (pin
                ? "server pinned to core 0, clients to core 1"
                : "\(ProcessInfo.processInfo.activeProcessorCount) cores shared by server and clients")
    )
    print("in-process Monitor.assess (1 thread, the ceiling): \(String(format: "%.0f", inlineRate)) inputs/s")
    print("| phase | inputs/s | vs in-process | p50 µs | p99 µs | note |")
    print("|---|---|---|---|---|---|")
    for r in table {
        print(
            "| \(r.name) | \(String(format: "%.0f", r.rate)) | \(String(format: "%.2f", r.rate / inlineRate)) | "
                + "\(String(format: "%.0f", r.p50)) | \(String(format: "%.0f", r.p99)) | \(r.note) |"
        )
    }
    let refused = flood.rejected + flood.dropped
    print(
        "| overload: \(floodConnections) connections of pre-built frames from one thread, paced at 2 × "
            + "\(String(format: "%.0f", sustainable))/s: offered \(String(format: "%.0f", Double(flood.offered) / flood.sendSeconds))/s "
            + "(\(String(format: "%.2f", Double(flood.offered) / flood.sendSeconds / sustainable)) × sustainable) | "
            + "\(String(format: "%.0f", Double(flood.assessed) / floodElapsed)) assessed/s | | | | "
            + "offered \(flood.offered) = assessed \(flood.assessed) + rejected \(flood.rejected) + dropped "
            + "\(flood.dropped): \(flood.offered == flood.assessed + refused && flood.acks == floodConnections ? "adds up" : "DOES NOT ADD UP"); "
            + "\(flood.refusedFrames) ERROR frames \(flood.refusedCodes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }); "
            + "server RSS \(rssBefore / 1024) MiB before, peak \(peak.kb / 1024) MiB while overloaded, "
            + "high-water \(hwm / 1024) MiB (queue bound 64 MiB, 8 MiB per connection) |"
    )
    if let e = flood.error { print("overload error: \(e)") }

}

let options = parseOptions(LoadTestOptions.self)
runTool("latentwatch-loadtest") { try runLoadTest(options) }
