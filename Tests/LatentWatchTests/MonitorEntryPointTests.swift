import Foundation
import ServiceLifecycle
import Testing

@testable import LatentWatch

/// The monitor's orthogonal entry points: one input or a batch, float32 or float16, with or without a reused
/// assessment, give the same decisions; refusals name the right code and leave the stream untouched.
@Suite struct MonitorEntryPointTests {
    static func monitor() throws -> Monitor {
        try Monitor(configuration: MonitorConfiguration(layers: MonitorTests.models))
    }

    static func rows(_ n: Int) throws -> (h1: [Float], h2: [Float]) {
        let h1 = try MonitorTests.rows("test", "h1").prefix(n).flatMap { $0 }
        let h2 = try MonitorTests.rows("test", "h2").prefix(n).flatMap { $0 }
        return (h1, h2)
    }

    @Test func batchEqualsOneInputAtATime() throws {
        let n = 40
        let (h1, h2) = try Self.rows(n)
        let d1 = h1.count / n
        let d2 = h2.count / n
        let one = try Self.monitor()
        let batch = try Self.monitor()
        var singles: [Assessment] = []
        var reused = Assessment()
        try h1.withUnsafeBufferPointer { b1 in
            try h2.withUnsafeBufferPointer { b2 in
                for r in 0..<n {
                    try one.assess(
                        .float32([
                            UnsafeBufferPointer(rebasing: b1[(r * d1)..<((r + 1) * d1)]),
                            UnsafeBufferPointer(rebasing: b2[(r * d2)..<((r + 1) * d2)]),
                        ]),
                        requestID: "r\(r)",
                        into: &reused
                    )
                    singles.append(reused)
                }
                var results: [Assessment] = []
                try batch.assessBatch(
                    .float32([b1, b2]),
                    count: n,
                    requestIDs: (0..<n).map { "r\($0)" },
                    into: &results
                )
                #expect(results == singles)
            }
        }
    }

    @Test func batchWithOneBadRowAssessesNothing() throws {
        let n = 10
        var (h1, h2) = try Self.rows(n)
        let d2 = h2.count / n
        h2[7 * d2 + 3] = .infinity
        let m = try Self.monitor()
        var results: [Assessment] = []
        do throws(LatentWatchError) {
            try h1.withUnsafeBufferPointer { (b1) throws(LatentWatchError) in
                try h2.withUnsafeBufferPointer { (b2) throws(LatentWatchError) in
                    try m.assessBatch(.float32([b1, b2]), count: n, into: &results)
                }
            }
            Issue.record("a batch with a non-finite row was accepted")
        } catch {
            #expect(error.code == .invalidActivation)
            #expect(error.message.contains("h2"))
        }
        #expect(results.isEmpty)
        // The stream did not advance: the next input is input 0.
        let a = try h1.withUnsafeBufferPointer { b1 in
            try h2.withUnsafeBufferPointer { b2 in
                try m.assess(
                    .float32([
                        UnsafeBufferPointer(rebasing: b1[0..<(h1.count / n)]),
                        UnsafeBufferPointer(rebasing: b2[0..<d2]),
                    ])
                )
            }
        }
        #expect(a.index == 0)
    }

    @Test func float16EqualsFloat32OfTheSameValues() throws {
        let (h1, h2) = try Self.rows(1)
        let half1 = h1.map { Float16($0) }
        let half2 = h2.map { Float16($0) }
        let a = try half1.withUnsafeBufferPointer { b1 in
            try half2.withUnsafeBufferPointer { b2 in try Self.monitor().assess(.float16([b1, b2])) }
        }
        let b = try half1.map { Float($0) }.withUnsafeBufferPointer { b1 in
            try half2.map { Float($0) }.withUnsafeBufferPointer { b2 in try Self.monitor().assess(.float32([b1, b2])) }
        }
        #expect(a == b)
    }

    @Test func refusalsNameWhatIsWrong() throws {
        let m = try Self.monitor()
        let (h1, h2) = try Self.rows(1)
        func code(_ body: () throws -> Void) -> LatentWatchError.Code? {
            do { try body() } catch let e as LatentWatchError { return e.code } catch { return nil }
            return nil
        }
        // submit on an inline monitor: not a full queue.
        #expect(
            code {
                try h1.withUnsafeBufferPointer { b1 in
                    try h2.withUnsafeBufferPointer { b2 in _ = try m.submit(.float32([b1, b2])) }
                }
            } == .notInBackgroundMode
        )
        #expect(code { try h1.withUnsafeBufferPointer { _ = try m.assess(.float32([$0])) } } == .layerCountMismatch)
        #expect(
            code { _ = try Monitor(configuration: MonitorConfiguration(layers: MonitorTests.models, primaryLayer: 2)) }
                == .invalidConfiguration
        )
        #expect(code { _ = try Monitor(configuration: MonitorConfiguration(layers: [])) } == .invalidConfiguration)
    }

    @Test func inlineRunReturnsPromptlyOnShutdown() async throws {
        let m = try Self.monitor()
        let running = Task { try await m.run() }
        try await Task.sleep(for: .milliseconds(50))
        let start = ContinuousClock.now
        m.shutDown()
        try await running.value
        // It waits on a signal rather than polling; the bound only guards against hanging. It is loose because
        // on 2 cores the suite's blocking tests (processes, clusters) can hold the cooperative threads that resume
        // this task for seconds (11 s measured once).
        #expect(ContinuousClock.now - start < .seconds(60))
    }
}
