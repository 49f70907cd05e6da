import Foundation
import LatentWatch
import LatentWatchClient
import LatentWatchTestSupport
import LatentWatchWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `latentwatch serve` as a real process over real sockets: assessments, acknowledgements, HTTP, tokens,
/// configuration and socket handling.
@Suite(.serialized) struct SidecarProtocolTests {
    static func sameDouble(_ a: Double, _ b: Double) -> Bool { a == b || (a.isNaN && b.isNaN) }

    static func expectSame(_ remote: WireAssessment, _ local: Assessment, _ note: String) {
        #expect(remote.status == 0, "\(note)")
        #expect(remote.index == UInt64(local.index), "\(note)")
        #expect(remote.flags == local.flags.rawValue, "\(note)")
        #expect(remote.predicted == Int32(local.predictedLabel ?? -1), "\(note)")
        #expect(sameDouble(remote.fusedPValue, local.fusedPValue), "\(note)")
        #expect(sameDouble(remote.entropy, local.entropy), "\(note)")
        #expect(sameDouble(remote.entropyPValue, local.entropyPValue ?? .nan), "\(note)")
        #expect(sameDouble(remote.shiftLogEvidence, local.shiftLogEvidence ?? .nan), "\(note)")
        #expect(remote.surprise == local.layers.map(\.surprise), "\(note)")
        #expect(remote.pValues == local.layers.map(\.pValue), "\(note)")
    }

    /// The digits-rotation data file `name` (Samples/Data/digits-rotation).
    static func rotation(_ name: String) -> String {
        Binary.root.appendingPathComponent("Samples/Data/digits-rotation/\(name)").path
    }

    /// A regression model of the digits-rotation MLP's h2, fitted by the real executable with calibration targets
    /// (and `extra` options) into a new directory; its path.
    static func fitRotationModel(_ extra: [String] = []) throws -> String {
        func d(_ n: String) -> String { rotation(n) }
        let path = Binary.temporaryDirectory().appendingPathComponent("h2.lwm").path
        let fit = try Binary.run(
            [
                "fit", "--activations", d("train_h2.npy"), "--targets", d("train_targets.npy"), "--calibration",
                d("calibration_h2.npy"), "--calibration-targets", d("calibration_targets.npy"), "--layer", "h2",
                "--output", path,
            ] + extra
        )
        #expect(fit.status == 0, "\(fit.err)")
        return path
    }

    /// The bundled stream (400 inputs, out-of-distribution from 200) sent in frames of 7 over the Unix socket
    /// and then TCP gets exactly the in-process monitor's assessments, in the same order: same index, flags,
    /// p-values, entropy, shift evidence and per-layer surprise.
    @Test func assessmentsEqualTheInProcessMonitor() throws {
        let daemon = try Daemon(["--tcp", "127.0.0.1:0"], expect: ["unix", "tcp"])
        defer { daemon.terminate() }
        let models = try DigitsModels.paths.map { try ModelFile.read(contentsOf: $0) }
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: models.map { MonitoredLayer(model: $0) }))
        let h1 = try DigitsModels.rows("stream_h1.npy")
        let h2 = try DigitsModels.rows("stream_h2.npy")
        #expect(h1.rows == h2.rows && h1.rows >= 400)
        let unix = try daemon.client()
        #expect(unix.welcome.layers.map(\.name) == ["h1", "h2"])
        #expect(unix.welcome.layers.map(\.elements) == [h1.columns, h2.columns])
        let tcp = try SidecarClient(port: daemon.tcpPort)
        var r = 0
        var compared = 0
        var flagged = 0
        while r < h1.rows {
            let n = min(7, h1.rows - r)
            let l1 = Array(h1.values[(r * h1.columns)..<((r + n) * h1.columns)])
            let l2 = Array(h2.values[(r * h2.columns)..<((r + n) * h2.columns)])
            let ids = (r..<(r + n)).map { "req-\($0)" as String? }
            let client = r < h1.rows / 2 ? unix : tcp
            let remote = try client.observe([l1, l2], rows: n, requestIDs: ids)
            #expect(remote.count == n)
            for k in 0..<n {
                let local = try l1.withUnsafeBufferPointer { b1 in
                    try l2.withUnsafeBufferPointer { b2 in
                        try monitor.assess(
                            .float32([
                                UnsafeBufferPointer(rebasing: b1[(k * h1.columns)..<((k + 1) * h1.columns)]),
                                UnsafeBufferPointer(rebasing: b2[(k * h2.columns)..<((k + 1) * h2.columns)]),
                            ]),
                            requestID: ids[k]
                        )
                    }
                }
                Self.expectSame(remote[k], local, "input \(r + k)")
                if local.flags.contains(.outOfDistribution) { flagged += 1 }
                compared += 1
            }
            r += n
        }
        #expect(compared == h1.rows)
        #expect(flagged > 10, "the stream's OOD half raises input alerts")
    }

    /// Fire-and-forget frames are acknowledged periodically and on SYNC; the counts add up.
    @Test func fireAndForgetIsAcknowledged() throws {
        let daemon = try Daemon(["--ack-every", "10"])
        defer { daemon.terminate() }
        let h1 = try DigitsModels.rows("test_h1.npy")
        let h2 = try DigitsModels.rows("test_h2.npy")
        let c = try daemon.client()
        var last: UInt64 = 0
        for f in 0..<50 {
            let r = (f * 3) % (h1.rows - 3)
            last = try c.send(
                [
                    Array(h1.values[(r * h1.columns)..<((r + 3) * h1.columns)]),
                    Array(h2.values[(r * h2.columns)..<((r + 3) * h2.columns)]),
                ],
                rows: 3
            )
        }
        let ack = try c.sync()
        #expect(ack.through == last)
        #expect(ack.assessed == 150)
        #expect(ack.dropped == 0 && ack.rejected == 0)
        let final = try c.bye()
        #expect(final?.through == last)
    }

    /// IEEE binary16 payloads are converted exactly: the assessment equals the in-process one of the
    /// half-rounded activations.
    @Test func halfPrecisionFrames() throws {
        let daemon = try Daemon()
        defer { daemon.terminate() }
        let models = try DigitsModels.paths.map { try ModelFile.read(contentsOf: $0) }
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: models.map { MonitoredLayer(model: $0) }))
        let h1 = try DigitsModels.rows("test_h1.npy")
        let h2 = try DigitsModels.rows("test_h2.npy")
        let n = 5
        let halves = [
            h1.values[0..<(n * h1.columns)].map { Float16($0) }, h2.values[0..<(n * h2.columns)].map { Float16($0) },
        ]
        var w = WireWriter()
        FrameHeader(length: 0, type: FrameType.observe.rawValue, flags: 3).write(to: &w.buffer)
        w.u64(1)
        w.u32(UInt32(n))
        w.u16(2)
        for _ in 0..<n { w.string("") }
        for (i, layer) in halves.enumerated() {
            w.u32(UInt32(i == 0 ? h1.columns : h2.columns))
            for v in layer { w.u16(v.bitPattern) }
        }
        let length = UInt32(w.buffer.count - 8)
        withUnsafeBytes(of: length.littleEndian) { for k in 0..<4 { w.buffer[k] = $0[k] } }
        let c = try daemon.client()
        try c.writeAll(w.buffer)
        let (h, body) = try c.readFrame()
        #expect(h.type == FrameType.assessment.rawValue)
        // A client of protocol 1.1 and a classifier's server: rows without prediction fields.
        #expect(
            h.flags == 0
                && body.count == 14 + n * (WireFormat.assessmentRowFixed + 2 * WireFormat.assessmentRowPerLayer)
        )
        let frame = try body.withUnsafeBytes { b throws(WireError) in try AssessmentFrame.decode(b) }
        let f1 = halves[0].map { Float($0) }
        let f2 = halves[1].map { Float($0) }
        for k in 0..<n {
            let local = try f1.withUnsafeBufferPointer { b1 in
                try f2.withUnsafeBufferPointer { b2 in
                    try monitor.assess(
                        .float32([
                            UnsafeBufferPointer(rebasing: b1[(k * h1.columns)..<((k + 1) * h1.columns)]),
                            UnsafeBufferPointer(rebasing: b2[(k * h2.columns)..<((k + 1) * h2.columns)]),
                        ])
                    )
                }
            }
            Self.expectSame(frame.rows[k], local, "half input \(k)")
        }
    }

    /// A regression model's replies: a protocol 1.1 client's rows carry the prediction, its spread, the spread's
    /// p-value and the 90 % prediction interval, equal to the in-process monitor's; a 1.0 client's rows keep the
    /// 1.0 layout (no flag, 56 + 16 bytes per row) with the same other fields; HTTP's JSON carries them too.
    @Test func regressionModelsReplyWithPredictions() throws {
        func d(_ n: String) -> String { Self.rotation(n) }
        let path = try Self.fitRotationModel()
        let daemon = try Daemon(["--http", "127.0.0.1:0"], models: [path], expect: ["unix", "http"])
        defer { daemon.terminate() }
        let model = try ModelFile.read(contentsOf: path)
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: [MonitoredLayer(model: model)]))
        let file = try TensorFile(path: d("test_h2.npy"))
        let columns = try file.tensor(nil).rowElements
        let n = 12
        let x = Array(try file.floats(nil)[0..<(n * columns)])
        let remote = try daemon.client().observe([x], rows: n)
        var locals: [Assessment] = []
        try x.withUnsafeBufferPointer { b in
            for k in 0..<n {
                locals.append(
                    try monitor.assess(
                        .float32([UnsafeBufferPointer(rebasing: b[(k * columns)..<((k + 1) * columns)])])
                    )
                )
            }
        }
        for k in 0..<n {
            let (r, l) = (remote[k], locals[k])
            Self.expectSame(r, l, "input \(k)")
            let interval = try #require(l.predictionInterval, "input \(k): the monitor gives a 90 % interval")
            #expect(r.prediction == l.prediction && r.predictiveSpread == l.predictiveSpread, "input \(k)")
            #expect(r.spreadPValue == l.spreadPValue, "input \(k)")
            #expect(r.intervalLow == interval.lowerBound && r.intervalHigh == interval.upperBound, "input \(k)")
            #expect(
                model.predictionInterval(prediction: r.prediction, spread: r.predictiveSpread, level: 0.9) == interval
            )
            #expect(interval.lowerBound < r.prediction && r.prediction < interval.upperBound, "input \(k)")
        }
        // A frame with an invalid row (NaN): that row carries no prediction, the others theirs.
        var bad = x
        bad[columns + 3] = .nan
        let mixed = try daemon.client().observe([bad], rows: n)
        #expect(mixed[1].status == 1 && mixed[1].prediction.isNaN && mixed[1].intervalLow.isNaN)
        #expect(mixed[0].status == 0 && !mixed[0].prediction.isNaN && !mixed[2].intervalHigh.isNaN)
        // A client of protocol 1.0 gets rows of the 1.0 layout.
        let old = try RawConnection(unixSocket: daemon.socketPath)
        old.write(Hello(client: "old", minor: 0).frame())
        let welcome = try #require(old.readFrame())
        #expect(welcome.0.type == FrameType.welcome.rawValue)
        let frame = x.withUnsafeBufferPointer { b in
            ObserveLayout.frame(sequence: 1, reply: true, rows: n, layers: [b])
        }
        old.write(frame)
        let (h, body) = try #require(old.readFrame())
        #expect(h.type == FrameType.assessment.rawValue && h.flags == 0)
        #expect(body.count == 14 + n * (WireFormat.assessmentRowFixed + WireFormat.assessmentRowPerLayer))
        let rows = try body.withUnsafeBytes { b throws(WireError) in try AssessmentFrame.decode(b, flags: h.flags) }
        for k in 0..<n {
            #expect(rows.rows[k].prediction.isNaN)
            #expect(rows.rows[k].surprise == remote[k].surprise && rows.rows[k].flags == remote[k].flags)
        }
        var undefined = WireWriter()
        undefined.u64(1)
        undefined.u32(0)
        undefined.u16(1)
        #expect(throws: WireError.self) {
            try undefined.buffer.withUnsafeBytes { b throws(WireError) in try AssessmentFrame.decode(b, flags: 2) }
        }
        // HTTP JSON.
        let json = "{\"layers\":{\"h2\":\(Array(x[0..<columns]))}}"
        let r = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/observe", body: json)
        #expect(r.status == 200, "\(r.body)")
        let o = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as! [String: Any]
        // The JSON request scores one row, the binary frame a batch of n: their log-densities may round apart in
        // the last bits (the batch path's matrix kernels), so the prediction and interval agree to 1e-12.
        func close(_ a: Double?, _ b: Double) -> Bool { a.map { abs($0 - b) <= 1e-12 * max(1, abs(b)) } ?? false }
        #expect(close(o["prediction"] as? Double, remote[0].prediction), "\(o) / \(remote[0])")
        #expect(o["spread_p_value"] as? Double == remote[0].spreadPValue)
        let interval = o["prediction_interval"] as? [Double] ?? []
        #expect(interval.count == 2, "\(o)")
        if interval.count == 2 {
            #expect(close(interval[0], remote[0].intervalLow) && close(interval[1], remote[0].intervalHigh))
        }
    }

    /// The host's own predictions (protocol 1.2): a regression model calibrated with the host's predictions of its
    /// calibration inputs; OBSERVEs carrying the test inputs' host predictions get rows with the host prediction,
    /// its disagreement and p-value and the disagreement flag, equal to the in-process monitor's given the same
    /// predictions; HTTP takes `host_prediction` too. A 1.1 client may not send them, a server of a classifier
    /// refuses them, and frames without them keep the 1.1 layout.
    @Test func hostPredictionsGetTheirDisagreement() throws {
        func d(_ n: String) -> String { Self.rotation(n) }
        let path = try Self.fitRotationModel(["--calibration-predictions", d("calibration_predictions.npy")])
        let daemon = try Daemon(
            ["--http", "127.0.0.1:0", "--disagreement-alpha", "0.05"],
            models: [path],
            expect: ["unix", "http"]
        )
        defer { daemon.terminate() }
        let model = try ModelFile.read(contentsOf: path)
        var policy = AlertPolicy()
        policy.disagreementAlpha = 0.05
        let monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: [MonitoredLayer(model: model)],
                policy: policy,
                outputs: (.prediction, 1)
            )
        )
        let file = try TensorFile(path: d("test_h2.npy"))
        let columns = try file.tensor(nil).rowElements
        let n = 120
        let x = Array(try file.floats(nil)[0..<(n * columns)])
        let host = try TensorFile(path: d("test_predictions.npy")).doubles(nil)[0..<n].map { Float($0) }
        let remote = try daemon.client().observe([x], rows: n, predictions: host)
        var flagged = 0
        try x.withUnsafeBufferPointer { b in
            for k in 0..<n {
                let l = try [host[k]].withUnsafeBufferPointer {
                    try monitor.assess(
                        .float32([UnsafeBufferPointer(rebasing: b[(k * columns)..<((k + 1) * columns)])]),
                        outputs: $0
                    )
                }
                let r = remote[k]
                Self.expectSame(r, l, "input \(k)")
                #expect(r.prediction == l.prediction && r.hostPrediction == l.hostPrediction, "input \(k)")
                #expect(r.disagreement == l.disagreement && r.disagreementPValue == l.disagreementPValue, "input \(k)")
                if r.flags & Assessment.Flags.disagreement.rawValue != 0 { flagged += 1 }
            }
        }
        #expect(flagged > 0, "no input of \(n) was flagged for disagreement at 0.05")
        // Without predictions, the rows keep the 1.1 layout and carry none.
        let plain = try daemon.client().observe([Array(x[0..<columns])], rows: 1)
        #expect(plain[0].hostPrediction.isNaN && !plain[0].prediction.isNaN)
        // A wrong count is the client's own error; a 1.1 client may not send them.
        #expect(throws: SidecarClientError.self) { try daemon.client().observe([x], rows: n, predictions: [1]) }
        let old = try RawConnection(unixSocket: daemon.socketPath)
        old.write(Hello(client: "old", minor: 1).frame())
        _ = try #require(old.readFrame())
        old.write(
            x.withUnsafeBufferPointer { b in
                host.withUnsafeBufferPointer {
                    ObserveLayout.frame(sequence: 1, reply: true, rows: n, layers: [b], predictions: $0)
                }
            }
        )
        let refused = try #require(old.readFrame())
        #expect(refused.0.type == FrameType.error.rawValue)
        let e = try refused.1.withUnsafeBytes { b throws(WireError) in try WireError.decode(b) }
        #expect(e.code == .malformedFrame && e.message.contains("1.2"), "\(e)")
        // HTTP JSON.
        let json = "{\"layers\":{\"h2\":\(Array(x[0..<columns]))},\"host_prediction\":\(host[0])}"
        let r = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/observe", body: json)
        #expect(r.status == 200, "\(r.body)")
        let o = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as! [String: Any]
        #expect(o["host_prediction"] as? Double == remote[0].hostPrediction)
        #expect(o["disagreement_p_value"] as? Double == remote[0].disagreementPValue)
        // A server of a classifier refuses them.
        let classifier = try Daemon([], expect: ["unix"])
        defer { classifier.terminate() }
        let h1 = try DigitsModels.rows("stream_h1.npy")
        let h2 = try DigitsModels.rows("stream_h2.npy")
        do {
            _ = try classifier.client().observe(
                [Array(h1.values[0..<h1.columns]), Array(h2.values[0..<h2.columns])],
                rows: 1,
                predictions: [1]
            )
            Issue.record("a classifier's server took host predictions")
        } catch {
            #expect("\(error)".contains("not a regression model"), "\(error)")
        }
    }

    /// HTTP: /v1/observe answers the same surprise as the binary protocol; /metrics is Prometheus text with
    /// the monitor's and the server's counters; /v1/alerts lists alerts; /healthz reports the layers.
    @Test func httpEndpoints() throws {
        let daemon = try Daemon(["--http", "127.0.0.1:0"], expect: ["unix", "http"])
        defer { daemon.terminate() }
        let h1 = try DigitsModels.rows("ood_noise_h1.npy")
        let h2 = try DigitsModels.rows("ood_noise_h2.npy")
        let x1 = Array(h1.values[0..<h1.columns])
        let x2 = Array(h2.values[0..<h2.columns])
        let remote = try daemon.client().observe([x1, x2], rows: 1)[0]
        let body = "{\"request_id\":\"http-1\",\"layers\":{\"h1\":\(x1),\"h2\":\(x2)}}"
        let r = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/observe", body: body)
        #expect(r.status == 200, "\(r.body)")
        let json = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as! [String: Any]
        let layers = json["layers"] as! [[String: Any]]
        #expect(layers.map { $0["name"] as! String } == ["h1", "h2"])
        #expect(layers.map { $0["surprise"] as! Double } == remote.surprise)
        #expect((json["flags"] as! [String]).contains("out_of_distribution"))
        let bad = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/observe", body: "{\"layers\":{\"h1\":[1]}}")
        #expect(bad.status == 400)
        #expect(bad.body.contains("h1") || bad.body.contains("h2"), "\(bad.body)")
        let garbage = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/observe", body: "not json")
        #expect(garbage.status == 400)
        let metrics = try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("latentwatch_inputs_total 2"), "\(metrics.body.prefix(2000))")
        #expect(metrics.body.contains("latentwatch_serve_connections_total 1"))
        #expect(metrics.body.contains("latentwatch_alerts_total{kind=\"input\"}"))
        let alerts = try HTTPProbe.request(port: daemon.httpPort, "GET", "/v1/alerts?limit=10")
        #expect(alerts.status == 200)
        let list = try JSONSerialization.jsonObject(with: Data(alerts.body.utf8)) as! [[String: Any]]
        #expect(
            list.contains { $0["kind"] as? String == "input" && $0["request_id"] as? String == "http-1" },
            "\(alerts.body)"
        )
        let health = try HTTPProbe.request(port: daemon.httpPort, "GET", "/healthz")
        #expect(health.status == 200 && health.body.contains("\"status\":\"ok\""))
        let models = (try JSONSerialization.jsonObject(with: Data(health.body.utf8)) as! [String: Any])["models"]
        #expect((models as? [[String: Any]])?.map { $0["layer"] as? String } == ["h1", "h2"], "\(health.body)")
    }

    /// /metrics by Prometheus' conventions: a HELP line for every family, the p-value histograms per layer with
    /// buckets down to 1e-4, the scoring time in seconds, per-layer shift capital, and the build and model info
    /// gauges; `promtool check metrics` (Debian's prometheus package, which `.ci/run` installs) accepts it. Where
    /// promtool is not installed that last check is skipped, with a line saying so.
    @Test func metricsFollowPrometheusConventions() throws {
        let daemon = try Daemon(["--http", "127.0.0.1:0"], expect: ["unix", "http"])
        defer { daemon.terminate() }
        let h1 = try DigitsModels.rows("ood_noise_h1.npy")
        let h2 = try DigitsModels.rows("ood_noise_h2.npy")
        _ = try daemon.client().observe(
            [Array(h1.values[0..<(3 * h1.columns)]), Array(h2.values[0..<(3 * h2.columns)])],
            rows: 3
        )
        let body = try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics").body
        let lines = body.split(separator: "\n").map(String.init)
        for (i, line) in lines.enumerated() where line.hasPrefix("# TYPE ") {
            let name = line.split(separator: " ")[2]
            #expect(i > 0 && lines[i - 1].hasPrefix("# HELP \(name) "), "no HELP before \(line)")
        }
        #expect(body.contains("latentwatch_p_value_bucket{layer=\"h1\",le=\"0.0001\"}"), "\(body.prefix(3000))")
        #expect(body.contains("latentwatch_p_value_count{layer=\"h2\"} 3"))
        #expect(body.contains("latentwatch_fused_p_value_count 3"))
        #expect(body.contains("latentwatch_scoring_duration_seconds_count 3"))
        #expect(body.contains("latentwatch_shift_layer_log_capital{layer=\"h1\"}"))
        #expect(body.contains("latentwatch_build_info{version=\"\(LatentWatchVersion.string)\"} 1"))
        #expect(body.contains("latentwatch_model_info{layer=\"h1\",fingerprint=\""))
        #expect(!body.contains("latentwatch_surprise"))
        let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let promtool else {
            print("promtool is not installed: `promtool check metrics` skipped (.ci/run installs it)")
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: promtool)
        p.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        input.fileHandleForWriting.write(Data(body.utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && said.isEmpty, "promtool check metrics: \(said)")
    }

    /// With a token, a HELLO without it is refused (unauthorized, fatal) on the Unix socket and TCP, and HTTP
    /// routes other than /healthz answer 401 without the bearer header.
    @Test func tokenIsRequired() throws {
        let dir = Binary.temporaryDirectory()
        let tokenFile = dir.appendingPathComponent("token").path
        try "s3cret-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let daemon = try Daemon(
            ["--token-file", tokenFile, "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
            expect: ["unix", "tcp", "http"]
        )
        defer { daemon.terminate() }
        #expect(throws: SidecarClientError.self) { _ = try daemon.client() }
        do {
            _ = try SidecarClient(port: daemon.tcpPort, token: "wrong")
            Issue.record("a wrong token was accepted")
        } catch {
            #expect(error.code == .server && error.serverError?.code == .unauthorized)
        }
        #expect(try SidecarClient(port: daemon.tcpPort, token: "s3cret-token").welcome.layers.count == 2)
        #expect(try daemon.client(token: "s3cret-token").welcome.layers.count == 2)
        #expect(try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics").status == 401)
        let ok = try HTTPProbe.request(
            port: daemon.httpPort,
            "GET",
            "/metrics",
            headers: ["Authorization": "Bearer s3cret-token"]
        )
        #expect(ok.status == 200)
        #expect(try HTTPProbe.request(port: daemon.httpPort, "GET", "/healthz").status == 200)
        // A reload is behind the token too.
        #expect(try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/reload").status == 401)
        let reload = try HTTPProbe.request(
            port: daemon.httpPort,
            "POST",
            "/v1/reload",
            headers: ["Authorization": "Bearer s3cret-token"]
        )
        #expect(reload.status == 200, "\(reload.body)")
    }

    /// A JSON config file sets options; the command line wins over it.
    @Test func configFile() throws {
        let dir = Binary.temporaryDirectory()
        let config = dir.appendingPathComponent("serve.json").path
        try #"{"max-rows": 3, "ack-every": 5, "when-full": "drop"}"#.write(
            toFile: config,
            atomically: true,
            encoding: .utf8
        )
        let daemon = try Daemon(["--config", config, "--ack-every", "7"])
        defer { daemon.terminate() }
        let c = try daemon.client()
        #expect(c.welcome.maxRows == 3)
        #expect(c.welcome.ackEvery == 7)
    }

    /// A stale socket file (its server gone) is replaced; a live server's socket and a regular file are not
    /// touched and the second server exits with a clear message; the socket is created with mode 0600.
    @Test func socketFileHandling() throws {
        let dir = Binary.temporaryDirectory()
        let path = dir.appendingPathComponent("stale.sock").path
        // A socket file whose server is gone: bind, then close without unlinking.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = try #require(LocalSocket.unixAddress(path))
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        close(fd)
        #expect(FileManager.default.fileExists(atPath: path))
        let daemon = try Daemon(["--socket", path])
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(try SidecarClient(unixSocket: path).welcome.layers.count == 2)
        let second = try Binary.run(["serve", "--model", DigitsModels.paths[0], "--socket", path])
        #expect(second.status != 0)
        #expect(second.err.contains("another server is listening"), "\(second.err)")
        #expect(daemon.terminate() == 0)
        #expect(!FileManager.default.fileExists(atPath: path), "the socket is removed on exit")
        let regular = dir.appendingPathComponent("file").path
        try "keep me".write(toFile: regular, atomically: true, encoding: .utf8)
        let third = try Binary.run(["serve", "--model", DigitsModels.paths[0], "--socket", regular])
        #expect(third.status != 0 && third.err.contains("is not a socket"), "\(third.err)")
        #expect(try String(contentsOfFile: regular, encoding: .utf8) == "keep me")
        let remote = try Binary.run(["serve", "--model", DigitsModels.paths[0], "--tcp", "0.0.0.0:7000"])
        #expect(remote.status != 0 && remote.err.contains("not a loopback address"), "\(remote.err)")
    }
}
