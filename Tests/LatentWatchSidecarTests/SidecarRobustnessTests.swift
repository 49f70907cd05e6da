import Foundation
import LatentWatch
import LatentWatchClient
import LatentWatchTestSupport
import LatentWatchWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Malformed traffic, clients that never read, and SIGTERM under load, against the real process.
@Suite(.serialized) struct SidecarRobustnessTests {
    static func observeFrame(
        sequence: UInt64 = 1,
        flags: UInt8 = 0,
        rows: Int = 1,
        layerCount: Int = 2,
        elements: [Int] = [128, 64],
        payloadBytes: [Int]? = nil
    ) -> [UInt8] {
        var w = WireWriter()
        FrameHeader(length: 0, type: FrameType.observe.rawValue, flags: flags).write(to: &w.buffer)
        w.u64(sequence)
        w.u32(UInt32(truncatingIfNeeded: rows))
        w.u16(UInt16(layerCount))
        for _ in 0..<max(0, min(rows, 10_000)) { w.string("") }
        for (i, e) in elements.enumerated() {
            w.u32(UInt32(e))
            w.buffer += [UInt8](repeating: 0, count: payloadBytes?[i] ?? (max(0, rows) * e * 4))
        }
        let length = UInt32(w.buffer.count - 8)
        withUnsafeBytes(of: length.littleEndian) { for k in 0..<4 { w.buffer[k] = $0[k] } }
        return w.buffer
    }

    static func handshaken(_ daemon: Daemon) throws -> RawConnection {
        let c = try RawConnection(unixSocket: daemon.socketPath)
        c.write(Hello(client: "raw").frame())
        guard let (h, _) = c.readFrame(), h.type == FrameType.welcome.rawValue else {
            throw DaemonError("no WELCOME")
        }
        return c
    }

    /// Every kind of bad traffic gets its error code (fatal ones close the connection), and a healthy client
    /// connected throughout keeps getting exactly the same scores for the same input.
    @Test func malformedTrafficIsRefusedAndOthersAreServed() throws {
        let daemon = try Daemon(["--http", "127.0.0.1:0", "--max-reply-bytes", "65536"], expect: ["unix", "http"])
        defer { daemon.terminate() }
        let h1 = try DigitsModels.rows("test_h1.npy")
        let h2 = try DigitsModels.rows("test_h2.npy")
        let x = [Array(h1.values[0..<h1.columns]), Array(h2.values[0..<h2.columns])]
        let healthy = try daemon.client()
        let reference = try healthy.observe(x, rows: 1)[0].surprise

        func expectFatal(_ bytes: [UInt8], _ code: WireError.Code, handshake: Bool = true) throws {
            let c = handshake ? try Self.handshaken(daemon) : try RawConnection(unixSocket: daemon.socketPath)
            c.write(bytes)
            let errors = RawConnection.errors(c.readUntilClosed())
            #expect(errors.map(\.code) == [code], "\(errors)")
            #expect(try healthy.observe(x, rows: 1)[0].surprise == reference)
        }
        // Before the handshake.
        var garbage = SeededGarbage(seed: 7)
        try expectFatal((0..<64).map { _ in garbage.next() }, .frameTooLarge, handshake: false)
        try expectFatal(Frame.make(.observe, body: [1, 2, 3]), .handshakeRequired, handshake: false)
        try expectFatal(
            Frame.make(.hello, body: Array("XXXX".utf8) + [1, 0, 0, 0, 0, 0, 0, 0]),
            .handshakeRequired,
            handshake: false
        )
        try expectFatal(Hello(major: 9).frame(), .unsupportedVersion, handshake: false)
        // After it: a lying length, an unknown type, a server-to-client type.
        try expectFatal([0xF0, 0xFF, 0xFF, 0x7F, 0x10, 0, 0, 0, 1, 2, 3], .frameTooLarge)
        try expectFatal(
            Frame.make(FrameType.sync, body: [0, 0, 0, 0, 0, 0, 0, 0]).enumerated().map {
                $0.offset == 4 ? 0x7F : $0.element
            },
            .unknownType
        )
        try expectFatal(Ack(through: 1, assessed: 0, dropped: 0, rejected: 0).frame(), .unknownType)

        // Non-fatal: each frame is refused with its code and the same connection then works.
        let c = try Self.handshaken(daemon)
        let cases: [([UInt8], WireError.Code)] = [
            (Self.observeFrame(sequence: 1, elements: [100, 64]), .shapeMismatch),
            (Self.observeFrame(sequence: 2, layerCount: 1, elements: [128]), .layerCountMismatch),
            (Self.observeFrame(sequence: 3, rows: 0), .tooManyRows),
            (Self.observeFrame(sequence: 4, rows: 5000, payloadBytes: [0, 0]), .tooManyRows),
            (Self.observeFrame(sequence: 5, flags: 2), .malformedFrame),  // f16 flag, f32-sized payload
            (Self.observeFrame(sequence: 6, flags: 0x80), .malformedFrame),  // undefined flag bit
            (Self.observeFrame(sequence: 7, payloadBytes: [512, 100]), .malformedFrame),  // short payload
            (Self.observeFrame(sequence: 8, rows: 1_000_000_000, payloadBytes: [0, 0]), .tooManyRows),
            (Frame.make(.sync, body: [1, 2, 3]), .malformedFrame),
        ]
        for (bytes, code) in cases {
            c.write(bytes)
            let f = c.readFrame()
            #expect(f?.0.type == FrameType.error.rawValue)
            let e = f.flatMap { try? $0.1.withUnsafeBytes { b throws(WireError) in try WireError.decode(b) } }
            #expect(e?.code == code, "\(String(describing: e))")
            #expect(e?.code.isFatal == false)
        }
        c.write(Self.observeFrame(sequence: 20, flags: 1))
        #expect(c.readFrame()?.0.type == FrameType.assessment.rawValue)
        c.write(Self.observeFrame(sequence: 20, flags: 1))
        let again = c.readFrame().flatMap {
            try? $0.1.withUnsafeBytes { b throws(WireError) in try WireError.decode(b) }
        }
        #expect(again?.code == .sequenceNotIncreasing)

        // Abrupt disconnects: mid-header, mid-body, right after a frame.
        for cut in [3, 40, 600] {
            let r = try Self.handshaken(daemon)
            r.write(Array(Self.observeFrame(sequence: 1, flags: 1).prefix(cut)))
        }
        // A client that sends reply frames and never reads is disconnected once 64 KiB pile up.
        let sink = try Self.handshaken(daemon)
        let frame = Self.observeFrame(sequence: 1, flags: 1, rows: 50, elements: [128, 64])
        var seq: UInt64 = 1
        var writes = 0
        var closedByServer = false
        let deadline = Date().addingTimeInterval(30)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(sink.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func disconnectCounted() throws -> Bool {
            let m = try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics")
            return m.body.contains("latentwatch_serve_slow_consumer_disconnects_total 1")
        }
        frames: while Date() < deadline {
            var f = frame
            withUnsafeBytes(of: seq.littleEndian) { for k in 0..<8 { f[8 + k] = $0[k] } }
            seq += 1
            // Whole frames only: a send that times out part-way is resumed, so the stream never desynchronises.
            var sent = 0
            while sent < f.count {
                let n = f.withUnsafeBytes {
                    send(sink.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    sent += n
                } else if n < 0 && (errno == EPIPE || errno == ECONNRESET) {
                    closedByServer = true
                    break frames
                } else if try disconnectCounted() || Date() >= deadline {
                    // Timed out: the server stopped reading from this client, or gave up on it.
                    closedByServer = try disconnectCounted()
                    break frames
                }
            }
            writes += 1
            if writes % 50 == 0, try disconnectCounted() {
                closedByServer = true
                break
            }
        }
        #expect(closedByServer, "after \(writes) unread frames")
        // Still serving, with the same scores.
        #expect(try healthy.observe(x, rows: 1)[0].surprise == reference)
        #expect(try daemon.client().observe(x, rows: 1)[0].surprise == reference)
        let health = try HTTPProbe.request(port: daemon.httpPort, "GET", "/healthz")
        #expect(health.status == 200)
        let metrics = try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics").body
        #expect(metrics.contains("latentwatch_serve_protocol_errors_total{code=\"shapeMismatch\"} 1"))
        #expect(metrics.contains("latentwatch_serve_protocol_errors_total{code=\"frameTooLarge\"} 2"))
        #expect(daemon.process.isRunning)
        #expect(daemon.terminate() == 0)
    }

    /// More connections than --max-connections are closed at once; the others keep working.
    @Test func connectionLimit() throws {
        let daemon = try Daemon(["--max-connections", "2"])
        defer { daemon.terminate() }
        let a = try daemon.client()
        let b = try daemon.client()
        #expect(throws: SidecarClientError.self) { _ = try daemon.client() }
        #expect(a.welcome.layers.count == 2 && b.welcome.layers.count == 2)
        a.close()
        // The slot is free once the server's event loop has seen the EOF: retry until then (bounded).
        #expect(Self.connectWithin(30, daemon)?.welcome.layers.count == 2)
    }

    /// A client once the server accepts one, retrying for up to `seconds`.
    static func connectWithin(_ seconds: Double, _ daemon: Daemon) -> SidecarClient? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let c = try? daemon.client() { return c }
            if Date() >= deadline { return nil }
            usleep(50_000)
        }
    }

    /// Connections that stall in the handshake (half a HELLO, or nothing) are closed after the handshake
    /// timeout with `handshakeRequired`, so they cannot hold the connection slots.
    @Test func silentConnectionsAreClosed() throws {
        let daemon = try Daemon(["--max-connections", "2", "--handshake-timeout", "0.5"])
        defer { daemon.terminate() }
        let half = try RawConnection(unixSocket: daemon.socketPath)
        half.write(Array(Hello().frame().prefix(10)))
        let silent = try RawConnection(unixSocket: daemon.socketPath)
        let started = Date()
        for c in [half, silent] {
            let errors = RawConnection.errors(c.readUntilClosed())
            #expect(errors.map(\.code) == [.handshakeRequired], "\(errors)")
        }
        // Closed by the 0.5 s timeout, not never (the bound is loose for a loaded machine).
        #expect(Date().timeIntervalSince(started) < 30)
        #expect(Self.connectWithin(30, daemon)?.welcome.layers.count == 2)
    }

    /// Under the reject policy a full queue refuses frames with `overloaded` (nothing of them assessed) and
    /// the ACK counts them; under drop they are counted as dropped.
    @Test(arguments: ["reject", "drop"]) func fullQueue(policy: String) throws {
        // A queue of one frame's size: a burst of frames overflows it while the worker scores.
        let daemon = try Daemon(["--queue-bytes", "60000", "--connection-queue-bytes", "60000", "--when-full", policy])
        defer { daemon.terminate() }
        let h1 = try DigitsModels.rows("test_h1.npy")
        let h2 = try DigitsModels.rows("test_h2.npy")
        let n = 60
        let layers = [Array(h1.values[0..<(n * h1.columns)]), Array(h2.values[0..<(n * h2.columns)])]
        let c = try daemon.client()
        for _ in 0..<200 { try c.send(layers, rows: n) }
        let ack = try c.sync()
        #expect(ack.through == 200)
        #expect(ack.assessed + ack.dropped + ack.rejected == UInt64(200 * n))
        if policy == "reject" {
            #expect(ack.rejected > 0 && ack.dropped == 0)
            #expect(c.errors.count == Int(ack.rejected) / n)
            #expect(c.errors.allSatisfy { $0.code == .overloaded && $0.sequence >= 1 })
        } else {
            #expect(ack.dropped > 0 && ack.rejected == 0 && c.errors.isEmpty)
        }
    }

    /// SIGTERM while 4 clients stream fire-and-forget frames: the server exits 0, and every input it
    /// acknowledged is in its recording with the values sent.
    @Test func sigtermLosesNoAcknowledgedInput() throws {
        let dir = Binary.temporaryDirectory()
        let recording = dir.appendingPathComponent("rec.lwr").path
        let daemon = try Daemon(["--record", recording, "--ack-every", "4"])
        let h1 = try DigitsModels.rows("test_h1.npy")
        let h2 = try DigitsModels.rows("test_h2.npy")
        let rowsPerFrame = 4
        final class Progress: @unchecked Sendable {
            let lock = NSLock()
            var acked: [Int: UInt64] = [:]
            var rejected: [Int: Set<UInt64>] = [:]
            var total = 0
        }
        let progress = Progress()
        let clients = 4
        let socketPath = daemon.socketPath
        let finished = DispatchSemaphore(value: 0)
        let threads = (0..<clients).map { k in
            Thread {
                defer { finished.signal() }
                guard let c = try? SidecarClient(unixSocket: socketPath, name: "load-\(k)") else { return }
                var f = 0
                while true {
                    let r = (f * rowsPerFrame + k * 17) % (h1.rows - rowsPerFrame)
                    let seq = UInt64(f + 1)
                    let ids = (0..<rowsPerFrame).map { "c\(k)-s\(seq)-r\($0)" as String? }
                    do {
                        try c.send(
                            [
                                Array(h1.values[(r * h1.columns)..<((r + rowsPerFrame) * h1.columns)]),
                                Array(h2.values[(r * h2.columns)..<((r + rowsPerFrame) * h2.columns)]),
                            ],
                            rows: rowsPerFrame,
                            requestIDs: ids
                        )
                        if f % 8 == 7 { _ = try c.sync() }
                    } catch {
                        break
                    }
                    progress.lock.lock()
                    progress.acked[k] = c.lastAck?.through ?? 0
                    progress.total = progress.acked.values.reduce(0) { $0 + Int($1) }
                    progress.lock.unlock()
                    f += 1
                }
                // Read what is left (the final ACK) until the server closes.
                while (try? c.readFrame()) != nil {}
                _ = try? c.sync()
                progress.lock.lock()
                progress.acked[k] = c.lastAck?.through ?? 0
                progress.rejected[k] = Set(c.errors.map(\.sequence))
                progress.lock.unlock()
            }
        }
        for t in threads { t.start() }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            progress.lock.lock()
            let total = progress.total
            progress.lock.unlock()
            if total >= 400 { break }
            usleep(10_000)
        }
        let status = daemon.terminate()
        #expect(status == 0, "\(daemon.stderr)")
        // Every client has read the server's final ACK and stored its refused frames before they are checked.
        for _ in 0..<clients {
            #expect(finished.wait(timeout: .now() + 60) == .success, "a client thread did not finish")
        }
        let file = try TensorFile(path: recording)
        let recorded = Set((try file.requestIDs() ?? []).compactMap { $0 })
        let values = try file.floats("h1")
        progress.lock.lock()
        defer { progress.lock.unlock() }
        var acknowledged = 0
        for k in 0..<clients {
            let through = progress.acked[k] ?? 0
            for s in 1...max(1, through) where through > 0 && !(progress.rejected[k] ?? []).contains(s) {
                for j in 0..<rowsPerFrame {
                    acknowledged += 1
                    #expect(recorded.contains("c\(k)-s\(s)-r\(j)"), "acknowledged input c\(k)-s\(s)-r\(j) is missing")
                }
            }
        }
        #expect(acknowledged >= 400, "acknowledged \(acknowledged)")
        print(
            "SIGTERM under load: \(acknowledged) inputs acknowledged, \(recorded.count) recorded, exit status \(status ?? -1)"
        )
        #expect(values.count == recorded.count * h1.columns)
        // The recorded activations are the ones sent (first input of client 0's first frame).
        let ids = try file.requestIDs() ?? []
        if let at = ids.firstIndex(of: "c0-s1-r0") {
            #expect(Array(values[(at * h1.columns)..<((at + 1) * h1.columns)]) == Array(h1.values[0..<h1.columns]))
        } else {
            Issue.record("c0-s1-r0 not recorded")
        }
    }
}

/// Reproducible garbage bytes.
struct SeededGarbage {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt8 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: (state >> 33) | 0x80)
    }
}
