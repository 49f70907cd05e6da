// Measures what the monitor's alerts deliver on real activations (Docs/Statistics.md):
//  1. the realised per-input alert rate at alpha on held-out in-distribution data, per layer and fused;
//  2. false alarms of the stream detectors on resampled in-distribution streams: anytime mode (the chance of any
//     alarm per stream must stay <= delta) and change detection (the mean run length between false alarms must be
//     at least the one asked for); also the window-rate test;
//  3. detection delay on streams where out-of-distribution inputs gradually replace in-distribution ones;
//  4. (with --guarantee, instead of 1-3) the shift detectors' false alarms with a fresh calibration set per stream.
// Everything goes through a real `Monitor` with a callback sink (the code hosts run).
//
// Usage: swift run -c release latentwatch-streams --data DIR --layers fc[,conv3_gap] [--raw] [--streams 100]
//        [--length 10000] [--alpha 0.01] [--delta 0.01] [--arl 1000] [--ood-runs 20] [--ood name,...]
//        [--guarantee [--guarantee-streams 400] [--guarantee-calibration 200,500,2000]]
// DIR holds <layer>_<split>.npy and labels_<split>.npy for splits train, cal, test, ood_<name>
// (Tests/Evaluation/README.md makes them).
import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchLab
import LatentWatchNumerics

struct StreamsOptions: ParsableArguments {

    @Option(help: "Directory of evaluation arrays (Tests/Evaluation/README.md).")
    var data: String

    @Option(help: "Layers, comma-separated: one GDA each, their p-values fused with Bonferroni.")
    var layers = CommaList("fc")!

    @Flag(help: "Fit on raw activations (L2 normalisation is the fitting default).")
    var raw = false

    @Flag(help: .hidden)
    var l2 = false

    @Option(help: "Resampled in-distribution streams (section 2).")
    var streams = 100

    @Option(help: "Length of each in-distribution stream.")
    var length = 10_000

    @Option(help: "Per-input alert level.")
    var alpha = 0.01

    @Option(help: "Anytime mode: bound on the probability of any false alarm.")
    var delta = 0.01

    @Option(help: "Change mode: mean run length between false alarms.")
    var arl = 1_000.0

    @Option(help: "Change streams per OOD set (section 3).")
    var oodRuns = 20

    @Option(help: "OOD sets, comma-separated (default: every <first layer>_ood_<name>.npy).")
    var ood: CommaList?

    @Flag(
        help: "Run section 4 instead of 1-3: the shift detectors' false alarms with a fresh calibration set per stream."
    )
    var guarantee = false

    @Option(help: "Section 4: streams per calibration size and score source.")
    var guaranteeStreams = 400

    @Option(help: "Section 4: calibration set sizes, comma-separated.")
    var guaranteeCalibration = CommaList("200,500,2000")!

    @Option(
        help:
            "Section 5 (with --guarantee): calibration sets per size whose own false-alarm rate is measured, each over --conditional-streams streams (0: skip)."
    )
    var conditionalSets = 0

    @Option(help: "Section 5: streams per calibration set.")
    var conditionalStreams = 200

    func validate() throws {
        guard conditionalSets >= 0, conditionalStreams >= 1 else {
            throw ValidationError("--conditional-sets must be at least 0 and --conditional-streams at least 1")
        }
        guard guaranteeStreams >= 1, guaranteeCalibration.items.allSatisfy({ (Int($0) ?? 0) >= 1 }) else {
            throw ValidationError("--guarantee-streams and every --guarantee-calibration size must be at least 1")
        }
        guard streams >= 1, length >= 1, oodRuns >= 1 else {
            throw ValidationError("--streams, --length and --ood-runs must be at least 1")
        }
        guard alpha > 0, alpha < 1, delta > 0, delta < 1 else {
            throw ValidationError("--alpha and --delta must be in (0, 1)")
        }
        guard arl >= 1, arl < 1e15 else { throw ValidationError("--arl must be a finite number of at least 1") }
        guard Set(ood?.items ?? []).count == (ood?.items.count ?? 0) else {
            throw ValidationError("--ood names a set twice")
        }
    }
}

let options = parseOptions(StreamsOptions.self)
await runTool("latentwatch-streams") { try await measure(options) }

func measure(_ options: StreamsOptions) async throws {
    let data = try EvaluationData(options.data)
    let layerNames = options.layers.items
    // L2 normalisation is the fitting default; --raw turns it off (--l2 is accepted and changes nothing).
    let l2 = !options.raw
    let streamCount = options.streams
    let streamLength = options.length
    let alpha = options.alpha
    let delta = options.delta
    let arl = options.arl
    let oodRuns = options.oodRuns
    let oodNames = options.ood?.items ?? data.oodSets(ofLayer: layerNames[0])
    // Every file the run reads is checked first, so a missing or damaged one is named instead of failing part-way.
    try data.requireReadable(
        ["labels_train"]
            + layerNames.flatMap { l in
                ["train", "cal", "test"].map { "\(l)_\($0)" } + oodNames.map { "\(l)_ood_\($0)" }
            }
    )
    func path(_ layer: String, _ split: String) -> String { data.path(layer, split) }
    func load(_ p: String) throws -> ActivationMatrix { try ActivationMatrix(path: p) }

    // Fit one GDA per layer on train, calibrated on cal.
    let trainLabels = try data.labels("labels_train")
    var models: [LatentModel] = []
    for layer in layerNames {
        let start = Date()
        let cal = try load(path(layer, "cal"))
        let model = try LatentModelFitter.fit(
            FileActivations(path: path(layer, "train"), labels: trainLabels),
            calibration: InMemoryActivations(values: cal.array, shape: [cal.dim]),
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
                model.componentCount,
                model.latentDimension,
                model.fitSamples,
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
    func runStream(
        _ rows: [(set: [ActivationMatrix], row: Int)],
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
    if options.guarantee {
        try guarantee(options, model: models[0], pool: [try load(path(layerNames[0], "cal")), test[0]])
        if options.conditionalSets > 0 { conditionalGuarantee(options) }
        return
    }

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
            if (m.pValue(.surprise, s.surprise) ?? 1) <= alpha { flagged += 1 }
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
        ("anytime, delta = \(delta)", ShiftDetection.anytime(delta: delta)),
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
            let rows = resampledRows(length: streamLength, from: test[0].rows, run: s).map { (set: test, row: $0) }
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

    // 3. Detection delay when OOD inputs gradually replace ID ones (the evaluation's ramp).
    let ramp = OODRamp()
    print("")
    print(
        "3. streams of \(ramp.changeAt) in-distribution inputs, then out-of-distribution inputs replacing them linearly over \(ramp.rampLength) inputs (\(oodRuns) streams per set)"
    )
    for n in oodNames {
        let o = ood[n]!
        for (name, mode) in [
            ("anytime", ShiftDetection.anytime(delta: delta)), ("change", .changeDetection(meanRunLength: arl)),
        ] {
            var delays: [Int] = []
            var early = 0
            var missed = 0
            var windowDelays: [Int] = []
            for s in 0..<oodRuns {
                let rows = ramp.picks(idCount: test[0].rows, oodCount: o[0].rows, run: s).map {
                    (set: $0.ood ? o : test, row: $0.row)
                }
                let run = try await runStream(
                    rows,
                    policy: AlertPolicy(inputAlpha: alpha, aleatoricAlpha: nil, window: .init(), shift: mode)
                )
                if let f = run.alerts.first(where: { $0.kind == .shift }) {
                    if f.index < ramp.changeAt { early += 1 } else { delays.append(f.index - ramp.changeAt) }
                } else {
                    missed += 1
                }
                if let w = run.alerts.first(where: { $0.kind == .window && $0.index >= ramp.changeAt }) {
                    windowDelays.append(w.index - ramp.changeAt)
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
}

/// 4. The anytime guarantee given one calibration set, by simulation: for each calibration size m, streams that
/// each draw a fresh calibration set of m scores and then `length` in-distribution scores, their conformal
/// p-values fed to the shift detectors. Two score sources: continuous i.i.d. scores (standard normal: p-values
/// exactly as uniform as conformal p-values get) and the first layer's real surprise scores (calibration and test
/// splits pooled; each stream shuffles the pool, takes m as its calibration set and draws its stream with
/// replacement from the rest). Reports the share of streams with any alarm and its 95 % Clopper-Pearson interval,
/// which must stay below delta, and for change detection the realised mean run length.
func guarantee(_ options: StreamsOptions, model: LatentModel, pool sets: [ActivationMatrix]) throws {
    let delta = options.delta
    let length = options.length
    let count = options.guaranteeStreams
    let sizes = options.guaranteeCalibration.items.compactMap { Int($0) }
    let ws = model.makeWorkspace()
    var real: [Double] = []
    for set in sets {
        for r in 0..<set.rows { real.append(try model.score(set.row(r), workspace: ws).surprise) }
    }
    print(
        "4. the shift detectors' false alarms given the calibration set: \(count) streams of \(length) inputs per cell, a fresh calibration set of m scores per stream; anytime delta = \(delta), change mode mean run length \(Int(options.arl))"
    )
    print("   real scores: \(real.count) surprise scores of \(options.layers.items[0]) (calibration and test splits)")
    let policy = AlertPolicy()
    // Method nil: against the calibration set and the stream so far (ConformalUrn), no correction.
    let detectors: [(String, ShiftDetection, ShiftBetting, Double, CalibrationCorrection.Method?)] = [
        ("anytime, mixture, calibration and stream (default)", .anytime(delta: delta), .mixture, policy.jumpRate, nil),
        ("anytime, power, calibration and stream", .anytime(delta: delta), .power, policy.jumpRate, nil),
        ("anytime, mixture, conditional", .anytime(delta: delta), .mixture, policy.jumpRate, .conditional),
        ("anytime, power, conditional", .anytime(delta: delta), .power, policy.jumpRate, .conditional),
        ("anytime, linear, DKW, jump rate 0.01", .anytime(delta: delta), .linear, 0.01, .dkw),
        (
            "anytime, mixture, uncorrected", .anytime(delta: delta), .mixture, policy.jumpRate,
            CalibrationCorrection.Method.none
        ),
        (
            "change, mixture, conditional", .changeDetection(meanRunLength: options.arl), .mixture, policy.jumpRate,
            .conditional
        ),
    ]
    print("   | scores | m | detector | streams with an alarm | share (95 % interval) | alarms | mean run length |")
    print("   |---|---|---|---|---|---|---|")
    for source in ["continuous", "real"] {
        for m in sizes {
            guard source == "continuous" || m < real.count else { continue }
            // Every detector sees the same streams: each stream's p-values are computed once and fed to all of them.
            var alarmed = [Int](repeating: 0, count: detectors.count)
            var alarms = [Int](repeating: 0, count: detectors.count)
            for s in 0..<count {
                var g = SeededRandom(seed: UInt64(1_000_003 &* m &+ s))
                var calibration: [Double]
                var rest: [Double] = []
                if source == "continuous" {
                    calibration = (0..<m).map { _ in g.normal() }
                } else {
                    var shuffled = real
                    for i in stride(from: shuffled.count - 1, to: 0, by: -1) {
                        shuffled.swapAt(i, Int(g.next() % UInt64(i + 1)))
                    }
                    calibration = Array(shuffled[0..<m])
                    rest = Array(shuffled[m...])
                }
                // The conformal p-values a Monitor computes against this calibration set.
                let distribution = EmpiricalDistribution(scores: calibration)
                var running = detectors.map { _, mode, betting, jumpRate, method in
                    method.map {
                        ShiftDetector.calibrated(
                            mode: mode,
                            calibrationCount: m,
                            betting: betting,
                            method: $0,
                            jumpRate: jumpRate
                        )
                    }
                        ?? ShiftDetector.exchangeable(
                            mode: mode,
                            calibrationCount: m,
                            betting: betting,
                            jumpRate: jumpRate,
                            seed: UInt64(s)
                        )
                }
                var stopped = [Bool](repeating: false, count: detectors.count)
                var any = [Bool](repeating: false, count: detectors.count)
                for _ in 0..<length where stopped.contains(false) {
                    let score = source == "continuous" ? g.normal() : rest[Int(g.next() % UInt64(rest.count))]
                    let p = distribution.pValue(score)
                    for d in running.indices where !stopped[d] && running[d].update(p) {
                        alarms[d] += 1
                        any[d] = true
                        // Anytime mode alarms once; change mode keeps counting.
                        if case .anytime = detectors[d].1 { stopped[d] = true }
                    }
                }
                for d in detectors.indices where any[d] { alarmed[d] += 1 }
            }
            for (d, (name, mode, _, _, _)) in detectors.enumerated() {
                let (lo, hi) = ClopperPearson.interval(successes: alarmed[d], trials: count, confidence: 0.95)
                let runLength: String
                if case .changeDetection = mode {
                    runLength =
                        alarms[d] > 0
                        ? String(format: "%.0f", Double(count * length) / Double(alarms[d])) : "> \(count * length)"
                } else {
                    runLength = ""
                }
                print(
                    String(
                        format: "   | %@ | %d | %@ | %d of %d | %.4f (%.4f-%.4f) | %d | %@ |",
                        source,
                        m,
                        name,
                        alarmed[d],
                        count,
                        Double(alarmed[d]) / Double(count),
                        lo,
                        hi,
                        alarms[d],
                        runLength
                    )
                )
            }
        }
    }
}

/// 5. The anytime false-alarm rate given one calibration set: for each size m, `conditionalSets` calibration sets of
/// m standard normal scores, each followed by `conditionalStreams` streams of `length` standard normal scores. The
/// per-set share of streams with an alarm estimates P(false alarm | calibration set); reported are its mean over
/// sets (the average guarantee) and how many sets exceed delta and 2 delta, for the detector against calibration set
/// and stream and for the one against the corrected calibration set alone.
func conditionalGuarantee(_ options: StreamsOptions) {
    let delta = options.delta
    let sizes = options.guaranteeCalibration.items.compactMap { Int($0) }
    let sets = options.conditionalSets
    let streams = options.conditionalStreams
    print(
        "5. the anytime false-alarm rate given the calibration set: per m, \(sets) calibration sets of normal scores, \(streams) streams of \(options.length) per set, delta = \(delta)"
    )
    print("   | m | reference | mean rate over sets | sets above delta | sets above 2 delta | largest |")
    print("   |---|---|---|---|---|---|")
    for m in sizes {
        var rates: [[Double]] = [[], []]
        for set in 0..<sets {
            var g = SeededRandom(seed: UInt64(7_000_003 &* m &+ set))
            let distribution = EmpiricalDistribution(scores: (0..<m).map { _ in g.normal() })
            var alarmed = [0, 0]
            for s in 0..<streams {
                var running = [
                    ShiftDetector.exchangeable(mode: .anytime(delta: delta), calibrationCount: m, seed: UInt64(s)),
                    ShiftDetector.calibrated(mode: .anytime(delta: delta), calibrationCount: m),
                ]
                var stopped = [false, false]
                for _ in 0..<options.length where stopped.contains(false) {
                    let p = distribution.pValue(g.normal())
                    for d in 0..<2 where !stopped[d] && running[d].update(p) { stopped[d] = true }
                }
                for d in 0..<2 where stopped[d] { alarmed[d] += 1 }
            }
            for d in 0..<2 { rates[d].append(Double(alarmed[d]) / Double(streams)) }
        }
        for (d, name) in ["calibration and stream (default)", "calibration set, conditional correction"].enumerated() {
            let r = rates[d]
            print(
                String(
                    format: "   | %d | %@ | %.4f | %d of %d | %d of %d | %.4f |",
                    m,
                    name,
                    r.reduce(0, +) / Double(r.count),
                    r.filter { $0 > delta }.count,
                    r.count,
                    r.filter { $0 > 2 * delta }.count,
                    r.count,
                    r.max() ?? 0
                )
            )
        }
    }
}

/// Exact (Clopper-Pearson) confidence interval of a binomial proportion, from the Beta quantiles
/// ``WindowRateDetector/calibratedRate(threshold:calibrationCount:failureProbability:)`` computes.
enum ClopperPearson {
    static func interval(successes k: Int, trials n: Int, confidence: Double) -> (Double, Double) {
        let a = (1 - confidence) / 2
        let nn = Double(n + 1)
        // Upper: the p with P(Binomial(n, p) <= k) = a; lower: the p with P(Binomial(n, p) <= k - 1) = 1 - a.
        let upper =
            k >= n
            ? 1
            : WindowRateDetector.calibratedRate(
                threshold: Double(k + 1) / nn,
                calibrationCount: n,
                failureProbability: a
            )
        let lower =
            k <= 0
            ? 0
            : WindowRateDetector.calibratedRate(
                threshold: Double(k) / nn,
                calibrationCount: n,
                failureProbability: 1 - a
            )
        return (lower, upper)
    }
}
