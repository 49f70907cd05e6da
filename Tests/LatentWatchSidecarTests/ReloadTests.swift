import Foundation
import LatentWatch
import LatentWatchClient
import LatentWatchTestSupport
import LatentWatchWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Hot reload of `latentwatch serve` as a real process: SIGHUP and `POST /v1/reload` while clients stream, and bad
/// replacement files that must leave the service as it was.
@Suite(.serialized) struct ReloadTests {
    /// The digits models fitted as class Gaussians (DigitsModels) and as tied Gaussians, so every input's scores
    /// tell which set assessed it.
    static let tiedDirectory = DigitsModels.fitted(family: "tied")

    static var tiedPaths: [String] { ["h1", "h2"].map { tiedDirectory.appendingPathComponent("\($0).lwm").path } }

    /// Copies `sources` over the served files the way an operator should: write beside, then rename.
    static func install(_ sources: [String], as targets: [String]) throws {
        for (s, t) in zip(sources, targets) {
            let staged = t + ".new"
            try? FileManager.default.removeItem(atPath: staged)
            try FileManager.default.copyItem(atPath: s, toPath: staged)
            #expect(rename(staged, t) == 0)
        }
    }

    /// A directory holding copies of the class-Gaussian models, to serve and then overwrite.
    static func servedCopies() throws -> [String] {
        let d = Binary.temporaryDirectory()
        let targets = ["h1", "h2"].map { d.appendingPathComponent("\($0).lwm").path }
        try install(DigitsModels.paths, as: targets)
        return targets
    }

    static func healthz(_ daemon: Daemon) throws -> [String: Any] {
        let r = try HTTPProbe.request(port: daemon.httpPort, "GET", "/healthz")
        return try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as! [String: Any]
    }

    static func fingerprints(_ health: [String: Any]) -> [String] {
        (health["models"] as? [[String: Any]] ?? []).map { $0["fingerprint"] as? String ?? "" }
    }

    static func metric(_ daemon: Daemon, _ series: String) throws -> Double? {
        let body = try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics").body
        for line in body.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    /// Which set assessed `a` for rows `row` of the test arrays: 0 (class Gaussians), 1 (tied), or nil when its
    /// layers' surprise and p-values are not all from one set. Bit for bit: the sidecar scores one input at a time
    /// with the same code.
    static func origin(_ a: WireAssessment, row: Int, sets: [[LatentModel]], x: [[[Float]]]) throws -> Int? {
        var found: [Int] = []
        for (s, set) in sets.enumerated() {
            var all = true
            for l in 0..<2 {
                let expected = try set[l].score(x[l][row]).surprise
                let p = set[l].calibration.pValue(.surprise, expected) ?? 1
                all = all && a.surprise[l] == expected && a.pValues[l] == p
            }
            if all { found.append(s) }
        }
        return found.count == 1 ? found[0] : nil
    }

    static func testRows() throws -> [[[Float]]] {
        try ["test_h1.npy", "test_h2.npy"].map { name in
            let t = try DigitsModels.rows(name)
            return (0..<t.rows).map { Array(t.values[($0 * t.columns)..<(($0 + 1) * t.columns)]) }
        }
    }

    /// Two clients keep 16 frames of 8 inputs in flight each while the served files are swapped between the
    /// class-Gaussian and tied models six times, reloaded alternately by SIGHUP and POST /v1/reload. Every input is
    /// answered once, with a stream index of its own, and both layers' scores come from one model set.
    @Test func reloadWhileClientsStreamLosesAndDuplicatesNothing() throws {
        let served = try Self.servedCopies()
        let daemon = try Daemon(["--http", "127.0.0.1:0"], models: served, expect: ["unix", "http"])
        defer { daemon.terminate() }
        let sets = try [DigitsModels.paths, Self.tiedPaths].map { paths in
            try paths.map { try ModelFile.read(contentsOf: $0) }
        }
        let x = try Self.testRows()
        let rowCount = x[0].count
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var answers: [(WireAssessment, Int)] = []
            var stop = false
            var failure: String?
        }
        let shared = Shared()
        let socketPath = daemon.socketPath
        let done = DispatchSemaphore(value: 0)
        let perFrame = 8
        let threads = (0..<2).map { k in
            Thread {
                defer { done.signal() }
                do {
                    let c = try SidecarClient(unixSocket: socketPath, name: "stream-\(k)")
                    var firstRow: [UInt64: Int] = [:]
                    var mine: [(WireAssessment, Int)] = []
                    var f = 0
                    func receive() throws {
                        let (h, body) = try c.readFrame()
                        if h.type == FrameType.assessment.rawValue {
                            let frame = try body.withUnsafeBytes { try AssessmentFrame.decode($0) }
                            let r0 = firstRow.removeValue(forKey: frame.sequence)!
                            for (i, a) in frame.rows.enumerated() { mine.append((a, r0 + i)) }
                        } else if h.type != FrameType.ack.rawValue {
                            throw DaemonError("unexpected frame type \(h.type)")
                        }
                    }
                    while !(shared.lock.withLock { shared.stop }) || f < 50 {
                        let r = (f * perFrame + k * 331) % (rowCount - perFrame)
                        let seq = try c.send(
                            [Array(x[0][r..<(r + perFrame)].joined()), Array(x[1][r..<(r + perFrame)].joined())],
                            rows: perFrame,
                            reply: true
                        )
                        firstRow[seq] = r
                        f += 1
                        while firstRow.count >= 16 { try receive() }
                    }
                    while !firstRow.isEmpty { try receive() }
                    shared.lock.withLock { shared.answers += mine }
                } catch {
                    shared.lock.withLock { shared.failure = "client \(k): \(error)" }
                }
            }
        }
        for t in threads { t.start() }
        var reloads = 0
        for swap in 0..<6 {
            usleep(150_000)
            try Self.install(swap % 2 == 0 ? Self.tiedPaths : DigitsModels.paths, as: served)
            if swap % 2 == 0 {
                kill(daemon.process.processIdentifier, SIGHUP)
                let deadline = Date().addingTimeInterval(20)
                while (try Self.healthz(daemon)["generation"] as? Int ?? 0) <= reloads && Date() < deadline {
                    usleep(10_000)
                }
            } else {
                let r = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/reload")
                #expect(r.status == 200, "\(r.body)")
                #expect(r.body.contains("\"status\":\"reloaded\""))
            }
            reloads += 1
            #expect(try Self.healthz(daemon)["generation"] as? Int == reloads, "reload \(reloads) took effect")
        }
        shared.lock.withLock { shared.stop = true }
        for _ in threads { done.wait() }
        #expect(shared.failure == nil, "\(shared.failure ?? "")")
        let answers = shared.answers
        var bySet = [0, 0]
        for (a, row) in answers {
            #expect(a.status == 0)
            let s = try #require(try Self.origin(a, row: row, sets: sets, x: x), "input \(a.index) mixes model sets")
            bySet[s] += 1
        }
        let indices = answers.map { Int($0.0.index) }
        print("reload under load: \(answers.count) inputs, \(bySet[0]) by class Gaussians, \(bySet[1]) by tied")
        #expect(Set(indices).count == indices.count, "no input assessed twice")
        #expect(Set(indices) == Set(0..<answers.count), "no index skipped")
        #expect(bySet[0] > 0 && bySet[1] > 0)
        #expect(try Self.metric(daemon, "latentwatch_inputs_total") == Double(answers.count))
        #expect(try Self.metric(daemon, "latentwatch_serve_inputs_total") == Double(answers.count))
        #expect(try Self.metric(daemon, "latentwatch_serve_reloads_total{result=\"success\"}") == 6)
        #expect(try Self.metric(daemon, "latentwatch_model_replacements_total") == 6)
        #expect(daemon.stderr.contains("models reloaded"))
    }

    /// The sidecar fuses with the models' joint calibration: `/healthz` says Bonferroni for the plain models; after
    /// `calibrate-fusion` writes jointly calibrated copies over the served files and a reload, it names the joint
    /// calibration, and the fused p-values are the joint calibration's (multiples of 1 / 218).
    @Test func reloadToJointlyCalibratedModelsChangesTheFusion() throws {
        let served = try Self.servedCopies()
        let daemon = try Daemon(["--http", "127.0.0.1:0"], models: served, expect: ["unix", "http"])
        defer { daemon.terminate() }
        var health = try Self.healthz(daemon)
        #expect((health["fusion"] as? [String: String])?["method"] == "bonferroni", "\(health)")
        let r = try Binary.run(
            ["calibrate-fusion"]
                + ["h1", "h2"].flatMap {
                    [
                        "--model", served[$0 == "h1" ? 0 : 1], "--calibration",
                        Binary.data.appendingPathComponent("calibration_\($0).npy").path,
                    ]
                }
        )
        #expect(r.status == 0, "\(r.err)")
        let reload = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/reload")
        #expect(reload.status == 200, "\(reload.body)")
        health = try Self.healthz(daemon)
        let fusion = health["fusion"] as? [String: String]
        #expect(fusion?["method"] == "joint-calibration" && fusion?["calibration_inputs"] == "217", "\(health)")
        let models = health["models"] as? [[String: Any]] ?? []
        #expect(models.map { $0["joint_calibration_inputs"] as? Int } == [217, 217], "\(health)")
        let x = try Self.testRows()
        let answers = try daemon.client().observe(
            [Array(x[0][0..<20].joined()), Array(x[1][0..<20].joined())],
            rows: 20
        )
        #expect(answers.allSatisfy { abs(($0.fusedPValue * 218).rounded() - $0.fusedPValue * 218) < 1e-6 })
    }

    /// A truncated file, a damaged one and a model of the wrong activation size are each refused: 422 with the
    /// reason, a logged error, the failure counted and shown in /healthz; the old models keep answering exactly as
    /// before. A good file afterwards reloads.
    @Test func badReplacementLeavesServiceUnchanged() throws {
        let served = try Self.servedCopies()
        // Names given on the command line, so a model of the other layer reaches the size check.
        let daemon = try Daemon(
            ["--http", "127.0.0.1:0", "--layer", "h1", "--layer", "h2"],
            models: served,
            expect: ["unix", "http"]
        )
        defer { daemon.terminate() }
        let x = try Self.testRows()
        let client = try daemon.client()
        func observe() throws -> [WireAssessment] {
            try client.observe([Array(x[0][0..<10].joined()), Array(x[1][0..<10].joined())], rows: 10)
        }
        let before = try observe()
        let fingerprints = Self.fingerprints(try Self.healthz(daemon))
        // `inspect` prints the fingerprint /healthz and latentwatch_model_info show.
        let inspected = try Binary.run(["inspect", served[0]])
        #expect(inspected.out.contains("fingerprint: \(fingerprints[0]) "), "\(inspected.out)")
        let good = try Data(contentsOf: URL(fileURLWithPath: DigitsModels.paths[1]))
        var damaged = good
        damaged[good.count / 2] ^= 0x5A
        let h1Model = try Data(contentsOf: URL(fileURLWithPath: DigitsModels.paths[0]))
        let cases: [(String, Data, String)] = [
            ("truncated", good.prefix(112), "cut short"),
            ("damaged", damaged, "checksum"),
            ("wrong size", h1Model, "takes 128 values"),
        ]
        for (n, (name, bytes, says)) in cases.enumerated() {
            try bytes.write(to: URL(fileURLWithPath: served[1]))
            let r = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/reload")
            #expect(r.status == 422, "\(name): \(r.body)")
            let body = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as! [String: Any]
            #expect(body["status"] as? String == "failed")
            #expect((body["error"] as? String)?.contains(says) == true, "\(name): \(r.body)")
            let health = try Self.healthz(daemon)
            #expect(Self.fingerprints(health) == fingerprints, "\(name): the old models are still listed")
            #expect(health["generation"] as? Int == 0)
            #expect((health["last_reload"] as? [String: Any])?["successful"] as? Bool == false)
            #expect(try Self.metric(daemon, "latentwatch_serve_reloads_total{result=\"failure\"}") == Double(n + 1))
            #expect(try Self.metric(daemon, "latentwatch_serve_last_reload_successful") == 0)
        }
        // SIGHUP with the bad file still in place: refused the same way.
        kill(daemon.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while try Self.metric(daemon, "latentwatch_serve_reloads_total{result=\"failure\"}") != 4 && Date() < deadline {
            usleep(10_000)
        }
        #expect(try Self.metric(daemon, "latentwatch_serve_reloads_total{result=\"failure\"}") == 4)
        #expect(daemon.stderr.contains("reloading the models failed; the previous models keep serving"))
        let after = try observe()
        #expect(after.map(\.surprise) == before.map(\.surprise), "scores unchanged")
        #expect(after.map(\.pValues) == before.map(\.pValues))
        #expect(after.map(\.index) == before.map { $0.index + 10 }, "the stream goes on")
        try Self.install([DigitsModels.paths[1]], as: [served[1]])
        let fixed = try HTTPProbe.request(port: daemon.httpPort, "POST", "/v1/reload")
        #expect(fixed.status == 200, "\(fixed.body)")
        #expect(try Self.metric(daemon, "latentwatch_serve_last_reload_successful") == 1)
        #expect(try Self.healthz(daemon)["generation"] as? Int == 1)
    }
}
