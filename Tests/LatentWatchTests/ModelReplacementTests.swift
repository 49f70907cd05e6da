import Dispatch
import Foundation
import MetricsTestKit
import Synchronization
import Testing

@testable import LatentWatch

/// `Monitor.replaceModels` while inputs arrive: every input is assessed by exactly one model set (both layers'
/// surprise and p-values from the same set), none is lost or counted twice, and the stream detectors restart.
@Suite struct ModelReplacementTests {
    /// Set A: the class Gaussians of MonitorTests. Set B: tied covariance on the same data, so every input's
    /// scores differ between the two.
    static let setA = MonitorTests.models
    static let setB = MonitorTests.digitsModels(family: .tied)

    /// Which set produced `a` for test row `row`: 0 for A, 1 for B, nil when its layers are neither all A nor all B.
    /// `tolerance` is relative (0: bit for bit).
    static func origin(_ a: Assessment, row: Int, rows: [[[Float]]], tolerance: Double) throws -> Int? {
        var matches: [Int] = []
        for (s, set) in [setA, setB].enumerated() {
            var all = true
            for l in 0..<2 {
                let expected = try set[l].model.score(rows[l][row]).surprise
                let got = a.layers[l].surprise
                let close =
                    tolerance == 0 ? got == expected : abs(got - expected) <= tolerance * max(1, abs(expected))
                // The p-value comes from the same set's calibration as the surprise it was computed from.
                let p = set[l].model.calibration.pValue(.surprise, got) ?? 1
                all = all && close && a.layers[l].pValue == p
            }
            if all { matches.append(s) }
        }
        return matches.count == 1 ? matches[0] : nil
    }

    /// Four threads assess inline while a fifth replaces the models, alternating B and A.
    @Test func inlineAssessmentsUseExactlyOneModelSet() async throws {
        let metrics = TestMetrics()
        let monitor = try Monitor(
            configuration: MonitorConfiguration(layers: Self.setA),
            metricsFactory: metrics
        )
        let rows = try [MonitorTests.rows("test", "h1"), MonitorTests.rows("test", "h2")]
        let perThread = 1_500
        let total = 4 * perThread
        let done = Atomic<Int>(0)
        let results = LockedValue<[(Assessment, Int)]>([])
        // The replacer is a thread of its own (not one of concurrentPerform's iterations, which a 2-core machine may
        // run one after another): whenever another 250 inputs are done, it swaps, alternating B and A.
        let replacer = Thread {
            var next = 250
            var swaps = 0
            while swaps < 20 && done.load(ordering: .acquiring) < total {
                if done.load(ordering: .acquiring) >= next {
                    try! monitor.replaceModels(swaps % 2 == 0 ? Self.setB : Self.setA)
                    swaps += 1
                    next = done.load(ordering: .acquiring) + 250
                } else {
                    usleep(50)
                }
            }
        }
        replacer.start()
        await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                DispatchQueue.concurrentPerform(iterations: 4) { t in
                    var mine: [(Assessment, Int)] = []
                    var a = Assessment()
                    for i in 0..<perThread {
                        let r = (t * perThread + i) % rows[0].count
                        rows[0][r].withUnsafeBufferPointer { b1 in
                            rows[1][r].withUnsafeBufferPointer { b2 in
                                try! monitor.assess(.float32([b1, b2]), requestID: "\(r)", into: &a)
                            }
                        }
                        mine.append((a, r))
                        done.add(1, ordering: .releasing)
                    }
                    results.withLock { $0 += mine }
                }
                finished.resume()
            }
        }
        let all = results.withLock { $0 }
        var bySet = [0, 0]
        for (a, r) in all {
            let s = try #require(try Self.origin(a, row: r, rows: rows, tolerance: 0), "input \(a.index) mixes sets")
            bySet[s] += 1
        }
        let generation = monitor.modelGeneration
        print("inline: \(bySet[0]) inputs by set A, \(bySet[1]) by set B, \(generation) replacements")
        #expect(all.count == total)
        #expect(Set(all.map(\.0.index)) == Set(0..<total), "indices are contiguous, none twice")
        #expect(generation >= 2)
        #expect(bySet[0] > 0 && bySet[1] > 0)
        #expect(try metrics.expectCounter("latentwatch_inputs_total").totalValue == Int64(total))
        #expect(try metrics.expectCounter("latentwatch_model_replacements_total").totalValue == Int64(generation))
    }

    /// Background mode: two threads submit while the models are replaced; every queued input is assessed once, by one
    /// set (batch scoring: 1e-4 relative, as in BatchScoringTests).
    @Test func backgroundAssessmentsUseExactlyOneModelSet() async throws {
        let seen = LockedValue<[(Assessment, Int)]>([])
        let monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: Self.setA,
                mode: .background(capacity: 20_000, batchSize: 16)
            ),
            onAssessment: { a in seen.withLock { $0.append((a, Int(a.requestID!)!)) } }
        )
        let service = Task { try await monitor.run() }
        let rows = try [MonitorTests.rows("test", "h1"), MonitorTests.rows("test", "h2")]
        let perThread = 4_000
        let queued = Atomic<Int>(0)
        await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                DispatchQueue.concurrentPerform(iterations: 3) { t in
                    if t == 2 {
                        var swaps = 0
                        var next = 500
                        while swaps < 12 && monitor.backgroundCompleted < 2 * perThread {
                            if monitor.backgroundCompleted >= next {
                                try! monitor.replaceModels(swaps % 2 == 0 ? Self.setB : Self.setA)
                                swaps += 1
                                next = monitor.backgroundCompleted + 500
                            } else {
                                usleep(100)
                            }
                        }
                        return
                    }
                    for i in 0..<perThread {
                        let r = (t * perThread + i) % rows[0].count
                        rows[0][r].withUnsafeBufferPointer { b1 in
                            rows[1][r].withUnsafeBufferPointer { b2 in
                                if try! monitor.submit(.float32([b1, b2]), requestID: "\(r)") {
                                    queued.add(1, ordering: .relaxed)
                                }
                            }
                        }
                    }
                }
                finished.resume()
            }
        }
        monitor.shutDown()
        try await service.value
        let all = seen.withLock { $0 }
        var bySet = [0, 0]
        for (a, r) in all {
            let s = try #require(try Self.origin(a, row: r, rows: rows, tolerance: 1e-4), "input \(a.index) mixes sets")
            bySet[s] += 1
        }
        print("background: \(bySet[0]) inputs by set A, \(bySet[1]) by set B, \(monitor.modelGeneration) replacements")
        #expect(queued.load(ordering: .relaxed) == 2 * perThread, "nothing dropped (the queue holds them all)")
        #expect(all.count == 2 * perThread)
        #expect(Set(all.map(\.0.index)) == Set(0..<all.count), "indices are contiguous, none twice")
        #expect(bySet[0] > 0 && bySet[1] > 0)
    }

    /// A shift episode open when the models are replaced is resolved, and the restarted detector starts from no
    /// evidence: in-distribution inputs after the swap raise no alarm.
    @Test func streamDetectorsRestartOnTheNewCalibration() async throws {
        let log = CollectingSink()
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: Self.setA), sinks: [log])
        let service = Task { try await monitor.run() }
        let stream = try [MonitorTests.rows("stream", "h1"), MonitorTests.rows("stream", "h2")]
        let test = try [MonitorTests.rows("test", "h1"), MonitorTests.rows("test", "h2")]
        func feed(_ rows: [[[Float]]]) throws -> Assessment {
            var last = Assessment()
            for i in 0..<rows[0].count {
                last = try rows[0][i].withUnsafeBufferPointer { b1 in
                    try rows[1][i].withUnsafeBufferPointer { b2 in try monitor.assess(.float32([b1, b2])) }
                }
            }
            return last
        }
        let before = try feed(stream)
        #expect(before.flags.contains(.shiftAlarm), "the stream's unseen digits open a shift episode")
        try monitor.replaceModels(Self.setB)
        let after = try feed(Array(test.map { Array($0.prefix(200)) }))
        monitor.shutDown()
        try await service.value
        let alerts = log.alerts
        let resolved = alerts.filter { $0.kind == .resolved && $0.episode == .shift }
        #expect(resolved.count == 1)
        #expect(resolved.first?.index == stream[0].count - 1)
        #expect(resolved.first?.detail.contains("replaced") == true)
        #expect(!after.flags.contains(.shiftAlarm))
        #expect(after.index == stream[0].count + 199, "the stream index continues")
        #expect(!alerts.contains { $0.kind == .shift && $0.index >= stream[0].count })
        #expect((after.shiftLogEvidence ?? 0) < (before.shiftLogEvidence ?? 0))
    }

    /// A replacement that does not fit the monitored layers is refused with its reason; the old models keep serving.
    @Test func unfitReplacementIsRefusedAndChangesNothing() throws {
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: Self.setA))
        let rows = try [MonitorTests.rows("test", "h1"), MonitorTests.rows("test", "h2")]
        func assess(_ r: Int) throws -> Assessment {
            try rows[0][r].withUnsafeBufferPointer { b1 in
                try rows[1][r].withUnsafeBufferPointer { b2 in try monitor.assess(.float32([b1, b2])) }
            }
        }
        let first = try assess(3)
        let renamed = [MonitoredLayer(name: "other", model: Self.setB[0].model), Self.setB[1]]
        // h2's model in h1's place: a different activation size (128 against 64).
        let resized = [MonitoredLayer(name: "h1", model: Self.setB[1].model), Self.setB[1]]
        for (bad, says) in [([Self.setB[0]], "1 layers"), (renamed, "'other'"), (resized, "takes 64 values")] {
            let e = #expect(throws: LatentWatchError.self) { try monitor.replaceModels(bad) }
            #expect(e?.code == .invalidConfiguration)
            #expect(e?.message.contains(says) == true, "\(e?.message ?? "")")
        }
        #expect(monitor.modelGeneration == 0)
        let again = try assess(3)
        #expect(again.layers.map(\.surprise) == first.layers.map(\.surprise))
        #expect(try Self.origin(again, row: 3, rows: rows, tolerance: 0) == 0)
    }
}
