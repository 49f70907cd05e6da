// Measures what the monitor's alerts deliver on real activations (issue 3's acceptance):
//  1. the realised per-input alert rate at alpha on held-out in-distribution data, per layer and fused;
//  2. false alarms of the stream detectors on resampled in-distribution streams: anytime mode (the chance of any
//     alarm per stream must stay <= delta) and change detection (the mean run length between false alarms must be
//     at least the one asked for); also the window-rate test;
//  3. detection delay on streams where out-of-distribution inputs gradually replace in-distribution ones.
// Everything goes through a real `Monitor` with a callback sink (the code hosts run).
//
// Usage: swift run -c release latentwatch-streams --data DIR --layers fc[,conv3_gap] [--raw] [--streams 100]
//        [--length 10000] [--alpha 0.01] [--delta 0.01] [--arl 1000] [--ood name,...]
// DIR holds <layer>_<split>.npy and labels_<split>.npy for splits train, cal, test, ood_<name>
// (Tests/Evaluation/README.md makes them).
import Foundation
import LatentWatch
import LatentWatchNumerics

func option(_ name: String) -> String? {
    guard let i = CommandLine.arguments.firstIndex(of: "--\(name)"), i + 1 < CommandLine.arguments.count else {
        return nil
    }
    return CommandLine.arguments[i + 1]
}
guard let dataDir = option("data") else {
    print("usage: latentwatch-streams --data DIR --layers a[,b] [--raw] [--streams N] [--length N] [--ood x,y]")
    exit(2)
}
let layerNames = (option("layers") ?? "fc").split(separator: ",").map(String.init)
// L2 normalisation is the fitting default; --raw turns it off (--l2 is accepted and changes nothing).
let l2 = !CommandLine.arguments.contains("--raw")
let streamCount = Int(option("streams") ?? "100")!
let streamLength = Int(option("length") ?? "10000")!
let alpha = Double(option("alpha") ?? "0.01")!
let delta = Double(option("delta") ?? "0.01")!
let arl = Double(option("arl") ?? "1000")!
let oodRuns = Int(option("ood-runs") ?? "20")!

func path(_ layer: String, _ split: String) -> String { "\(dataDir)/\(layer)_\(split).npy" }
/// One split's activations, held in stable memory so row views stay valid while a monitor reads them.
final class Activations {
    let values: UnsafeMutableBufferPointer<Float>
    let rows: Int
    let dim: Int
    init(_ p: String) throws {
        let f = try TensorFile(path: p)
        let t = try f.tensor(nil)
        let v = try f.floats(t.name)
        values = .allocate(capacity: v.count)
        _ = values.initialize(from: v)
        rows = t.rows
        dim = t.rowElements
    }
    deinit { values.deallocate() }
    func row(_ r: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: values[(r * dim)..<((r + 1) * dim)])
    }
}
func load(_ p: String) throws -> Activations { try Activations(p) }
let oodNames: [String] =
    option("ood")?.split(separator: ",").map(String.init)
    ?? ((try? FileManager.default.contentsOfDirectory(atPath: dataDir)) ?? []).filter {
        $0.hasPrefix("\(layerNames[0])_ood_") && $0.hasSuffix(".npy")
    }.map { String($0.dropFirst(layerNames[0].count + 5).dropLast(4)) }.sorted()
// Every file the run reads is checked first, so a missing or damaged one is named instead of crashing.
for f in ["labels_train"]
    + layerNames.flatMap({ l in ["train", "cal", "test"].map { "\(l)_\($0)" } + oodNames.map { "\(l)_ood_\($0)" } })
{
    do {
        _ = try TensorFile(path: "\(dataDir)/\(f).npy").tensor(nil)
    } catch {
        print("latentwatch-streams: \(error)")
        exit(2)
    }
}

// Fit one GDA per layer on train, calibrated on cal.
let trainLabels = try TensorFile(path: "\(dataDir)/labels_train.npy").ints()
var models: [LatentModel] = []
for layer in layerNames {
    let start = Date()
    let cal = try load(path(layer, "cal"))
    let model = try LatentModelFitter.fit(
        FileActivations(path: path(layer, "train"), labels: trainLabels),
        calibration: InMemoryActivations(values: Array(cal.values), shape: [cal.dim]),
        configuration: FitConfiguration(
            family: .gda,
            preparation: PreparationOptions(l2Normalize: l2),
            layerName: layer
        )
    )
    print(
        String(
            format: "fitted %@: GDA, %d classes, %d-d, %d train, %d calibration, %.1f s",
            layer,
            model.density.componentCount,
            model.density.dimension,
            model.metadata.fitSamples,
            cal.rows,
            Date().timeIntervalSince(start)
        )
    )
    models.append(model)
}
let test = try layerNames.map { try load(path($0, "test")) }
let ood = try Dictionary(
    uniqueKeysWithValues: oodNames.map { n in (n, try layerNames.map { try load(path($0, "ood_\(n)")) }) }
)

/// Runs `rows` (pairs of set and row index) through a fresh monitor; returns its assessments' fused p-values
/// and the alerts delivered to its sink.
@MainActor func runStream(
    _ rows: [(set: [Activations], row: Int)],
    policy: AlertPolicy
) async throws
    -> (fused: [Double], alerts: [Alert])
{
    let collected = CollectingSink()
    let monitor = try Monitor(
        configuration: MonitorConfiguration(
            layers: models.map { MonitoredLayer(model: $0) },
            policy: policy,
            sinkBufferCapacity: rows.count * 3 + 16
        ),
        sinks: [collected]
    )
    let service = Task { try await monitor.run() }
    var result = Assessment()
    var fused: [Double] = []
    fused.reserveCapacity(rows.count)
    var buffers = [UnsafeBufferPointer<Float>](
        repeating: UnsafeBufferPointer(start: nil, count: 0),
        count: models.count
    )
    for (set, r) in rows {
        for l in 0..<models.count { buffers[l] = set[l].row(r) }
        try monitor.assess(.float32(buffers), into: &result)
        fused.append(result.fusedPValue)
    }
    monitor.shutDown()
    try await service.value
    return (fused, collected.alerts)
}

let quiet = AlertPolicy(inputAlpha: alpha, aleatoricAlpha: nil, window: nil, shift: nil)

// 1. Realised per-input alert rate on held-out ID data.
print("")
print(
    "1. realised per-input alert rate at alpha = \(alpha) on held-out in-distribution test inputs (target [0.005, 0.015] at 0.01)"
)
let idRows = (0..<test[0].rows).map { (set: test, row: $0) }
let idRun = try await runStream(idRows, policy: quiet)
for (l, m) in models.enumerated() {
    var flagged = 0
    let ws = m.makeWorkspace()
    for r in 0..<test[l].rows {
        let s = try m.score(test[l].row(r), workspace: ws)
        if (m.calibration.pValue(.surprise, s.surprise) ?? 1) <= alpha { flagged += 1 }
    }
    print(
        String(
            format: "   layer %-10@ %5d of %5d = %.4f",
            layerNames[l],
            flagged,
            test[l].rows,
            Double(flagged) / Double(test[l].rows)
        )
    )
}
let fusedRate = Double(idRun.fused.filter { $0 <= alpha }.count) / Double(idRun.fused.count)
let inputAlerts = idRun.alerts.filter { $0.kind == .input }.count
print(
    String(
        format: "   fused (Bonferroni over %d layers): %d input alerts of %d = %.4f",
        models.count,
        inputAlerts,
        idRun.fused.count,
        fusedRate
    )
)

// 2. False alarms on resampled ID streams.
print("")
print(
    "2. \(streamCount) resampled in-distribution streams of \(streamLength) inputs (drawn with replacement from the test split)"
)
for (name, mode) in [
    ("anytime, delta = \(delta)", ShiftDetector.Mode.anytime(delta: delta)),
    ("change detection, ARL \(Int(arl))", .changeDetection(meanRunLength: arl)),
] {
    let policy = AlertPolicy(inputAlpha: alpha, aleatoricAlpha: nil, window: .init(), shift: mode)
    var streamsWithShiftAlarm = 0
    var streamsWithWindowAlarm = 0
    var shiftAlarms = 0
    var inputAlertsTotal = 0
    var firstAlarms: [Int] = []
    let started = Date()
    for s in 0..<streamCount {
        var rng = SeededRandom(seed: UInt64(1000 + s))
        let rows = (0..<streamLength).map { _ in (set: test, row: Int(rng.next() % UInt64(test[0].rows))) }
        let run = try await runStream(rows, policy: policy)
        let shifts = run.alerts.filter { $0.kind == .shift }
        shiftAlarms += shifts.count
        if let f = shifts.first { firstAlarms.append(f.index) }
        if !shifts.isEmpty { streamsWithShiftAlarm += 1 }
        if run.alerts.contains(where: { $0.kind == .window }) { streamsWithWindowAlarm += 1 }
        inputAlertsTotal += run.alerts.filter { $0.kind == .input }.count
    }
    let total = Double(streamCount * streamLength)
    print("   \(name): \(String(format: "%.0f", Date().timeIntervalSince(started))) s")
    print(
        String(
            format:
                "     streams with a shift alarm: %d of %d (%.1f%%); shift alarms in all: %d; mean run length between them: %@",
            streamsWithShiftAlarm,
            streamCount,
            100 * Double(streamsWithShiftAlarm) / Double(streamCount),
            shiftAlarms,
            shiftAlarms > 0 ? String(format: "%.0f", total / Double(shiftAlarms)) : "> \(Int(total)) (no alarm)"
        )
    )
    print(
        String(
            format:
                "     streams with a window alarm (200 inputs, level 1e-4): %d; per-input alert rate over all streams: %.4f",
            streamsWithWindowAlarm,
            Double(inputAlertsTotal) / total
        )
    )
}

// 3. Detection delay when OOD inputs gradually replace ID ones.
print("")
print(
    "3. streams of 1000 in-distribution inputs, then out-of-distribution inputs replacing them linearly over 500 inputs (\(oodRuns) streams per set)"
)
for n in oodNames {
    let o = ood[n]!
    for (name, mode) in [
        ("anytime", ShiftDetector.Mode.anytime(delta: delta)), ("change", .changeDetection(meanRunLength: arl)),
    ] {
        var delays: [Int] = []
        var early = 0
        var missed = 0
        var windowDelays: [Int] = []
        for s in 0..<oodRuns {
            var rng = SeededRandom(seed: UInt64(5000 + s))
            let rows = (0..<2500).map { t -> (set: [Activations], row: Int) in
                let share = t < 1000 ? 0 : min(1, Double(t - 1000) / 500)
                if rng.uniform() < share { return (o, Int(rng.next() % UInt64(o[0].rows))) }
                return (test, Int(rng.next() % UInt64(test[0].rows)))
            }
            let run = try await runStream(
                rows,
                policy: AlertPolicy(inputAlpha: alpha, aleatoricAlpha: nil, window: .init(), shift: mode)
            )
            if let f = run.alerts.first(where: { $0.kind == .shift }) {
                if f.index < 1000 { early += 1 } else { delays.append(f.index - 1000) }
            } else {
                missed += 1
            }
            if let w = run.alerts.first(where: { $0.kind == .window && $0.index >= 1000 }) {
                windowDelays.append(w.index - 1000)
            }
        }
        delays.sort()
        windowDelays.sort()
        print(
            String(
                format:
                    "   %-16@ %-8@ shift alarm delay median %@ (min %@, max %@); missed %d, before the change %d; window alarm delay median %@",
                n,
                name,
                delays.isEmpty ? "-" : "\(delays[delays.count / 2])",
                delays.first.map { "\($0)" } ?? "-",
                delays.last.map { "\($0)" } ?? "-",
                missed,
                early,
                windowDelays.isEmpty ? "-" : "\(windowDelays[windowDelays.count / 2])"
            )
        )
    }
}
