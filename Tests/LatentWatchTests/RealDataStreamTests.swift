import Foundation
import LatentWatch
import LatentWatchLab
import LatentWatchNumerics
import Testing

/// The streaming alarms on real activations (Docs/Statistics.md): the penultimate layer (`fc`, 128-d) of a CNN trained on
/// Fashion-MNIST (7 classes), GDA fitted on 35,000 training inputs and calibrated on 7,000 held-out ones
/// (Tests/Fixtures/fmnist, made by Tests/Evaluation/README.md). Test and OOD activations are stored as
/// float16 to keep the fixture small.
@Suite(.serialized) struct RealDataStreamTests {
    static let dir = Fixtures.root.appendingPathComponent("Tests/Fixtures/fmnist")
    static func rows(_ name: String) throws -> (values: [Float], count: Int) {
        let f = try TensorFile(path: dir.appendingPathComponent(name).path)
        return (try f.floats(), f.tensors[0].rows)
    }
    static let model: LatentModel = try! ModelFile.read(contentsOf: dir.appendingPathComponent("fc-gda.lwm").path)

    /// Runs rows through a monitor (inline, callback sink) and returns the alerts.
    static func stream(_ picks: [(values: [Float], row: Int)], policy: AlertPolicy) async throws -> [Alert] {
        let alerts = CollectingSink()
        let monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: [MonitoredLayer(model: model)],
                policy: policy,
                sinkBufferCapacity: picks.count * 3 + 16
            ),
            sinks: [alerts]
        )
        let service = Task { try await monitor.run() }
        var result = Assessment()
        for (values, r) in picks {
            try values.withUnsafeBufferPointer { v in
                try monitor.assess(
                    .float32([UnsafeBufferPointer(rebasing: v[(r * 128)..<((r + 1) * 128)])]),
                    into: &result
                )
            }
        }
        monitor.shutDown()
        try await service.value
        return alerts.alerts
    }

    @Test func realisedAlertRateAtOnePercent() throws {
        let test = try Self.rows("fc_test_f16.npy")
        #expect(test.count == 7000)
        #expect(Self.model.calibration.distributions[.surprise]?.count == 7000)
        var flagged = 0
        let ws = Self.model.makeWorkspace()
        for r in 0..<test.count {
            let s = try test.values.withUnsafeBufferPointer {
                try Self.model.score(UnsafeBufferPointer(rebasing: $0[(r * 128)..<((r + 1) * 128)]), workspace: ws)
            }
            if (Self.model.calibration.pValue(.surprise, s.surprise) ?? 1) <= 0.01 { flagged += 1 }
        }
        let rate = Double(flagged) / Double(test.count)
        print(
            "real data (Fashion-MNIST fc): realised per-input alert rate at alpha 0.01 = \(flagged)/\(test.count) = \(rate)"
        )
        #expect(rate >= 0.005 && rate <= 0.015)
    }

    /// 100 streams of 10,000 in-distribution inputs resampled from the test split: anytime mode at delta 0.01
    /// alarms on at most 2 % of them; change detection asked for a mean run length of 1,000 runs at least that
    /// long between false alarms. Each test input is scored once through the model (the stream only reorders
    /// them) and the p-values drive the detectors a one-layer monitor with the default policy builds (anytime
    /// against calibration set and stream; change detection against the corrected calibration set); raw
    /// detector alarms are counted (not de-duplicated alert episodes). The full Monitor path over the
    /// same streams is `latentwatch-streams` (Docs/Statistics.md); a debug build takes minutes for it.
    @Test func resampledStreamsFalseAlarms() throws {
        let test = try Self.rows("fc_test_f16.npy")
        let ws = Self.model.makeWorkspace()
        let p = try (0..<test.count).map { r in
            let s = try test.values.withUnsafeBufferPointer {
                try Self.model.score(UnsafeBufferPointer(rebasing: $0[(r * 128)..<((r + 1) * 128)]), workspace: ws)
            }
            return Self.model.calibration.pValue(.surprise, s.surprise) ?? 1
        }
        // What a one-layer Monitor builds with the default policy (AlertPolicy.shiftDetector).
        let m = Self.model.calibration.distributions[.surprise]!.count
        var anytimeStreams = 0
        var changeAlarms = 0
        for s in 0..<100 {
            var rng = SeededRandom(seed: UInt64(1000 + s))
            var anytime = ShiftDetector.exchangeable(mode: .anytime(delta: 0.01), calibrationCount: m)
            var change = ShiftDetector.calibrated(mode: .changeDetection(meanRunLength: 1000), calibrationCount: m)
            var fired = false
            for _ in 0..<10_000 {
                let v = p[Int(rng.next() % UInt64(test.count))]
                if anytime.update(v) { fired = true }
                if change.update(v) { changeAlarms += 1 }
            }
            if fired { anytimeStreams += 1 }
        }
        let runLength = changeAlarms == 0 ? Double.infinity : 1_000_000 / Double(changeAlarms)
        print(
            "real data: anytime mode alarmed on \(anytimeStreams) of 100 ID streams of 10,000; change detection (ARL 1000) raised \(changeAlarms) raw false alarms in 1,000,000 inputs: mean run length \(runLength)"
        )
        #expect(anytimeStreams <= 2)
        #expect(runLength >= 1000)
    }

    /// In-distribution inputs until index 1,000, then real OOD inputs replace them linearly over 500 inputs
    /// (``OODRamp``):
    /// the alarm fires after the change, and the test states the delay.
    @Test(arguments: ["digits", "heldout", "noise"])
    func alarmAfterOutOfDistributionInputsArrive(set: String) async throws {
        let test = try Self.rows("fc_test_f16.npy")
        let ood = try Self.rows("fc_ood_\(set)_f16.npy")
        // The evaluation's ramp (OODRamp), run 0, continued to 3,000 inputs.
        var ramp = OODRamp()
        ramp.length = 3000
        let picks = ramp.picks(idCount: test.count, oodCount: ood.count, run: 0).map {
            (values: $0.ood ? ood.values : test.values, row: $0.row)
        }
        for (name, mode) in [
            ("anytime", ShiftDetector.Mode.anytime(delta: 0.01)), ("change", .changeDetection(meanRunLength: 1000)),
        ] {
            let alerts = try await Self.stream(picks, policy: AlertPolicy(aleatoricAlpha: nil, shift: mode))
            let shift = try #require(alerts.first { $0.kind == .shift }, "\(set) \(name): no shift alarm")
            let window = alerts.first { $0.kind == .window }
            print(
                "real data: OOD '\(set)' replaces ID from index 1000 (linearly over 500 inputs): \(name) shift alarm at \(shift.index), delay \(shift.index - 1000); window alarm at \(window.map { "\($0.index)" } ?? "none")"
            )
            #expect(shift.index >= 1000, "\(set) \(name): alarm before the change")
        }
    }
}
