// The stream part of the evaluation (Docs/Evaluation.md, finding 5): p-value streams made from the default configuration's real
// p-values, written as .npy files with a manifest.json that Tests/Evaluation/stream_baselines.py reads, and our
// own stream detectors (the library's LayerMixtureShiftDetector and WindowRateDetector, set up as a Monitor sets
// them up) run on exactly the same values. The result has the layout of stream_baselines.py's "results", so
// Tests/Evaluation/compare.py can put both in one table.
import Foundation
import LatentWatch
import LatentWatchLab
import LatentWatchNumerics

enum StreamComparison {
    /// The change streams' design, shared with latentwatch-streams.
    static let ramp = OODRamp()
    static var changeAt: Int { ramp.changeAt }

    /// One stream: its p-values and where the change starts (nil: in-distribution throughout).
    struct Stream {
        var file: String
        /// The OOD set replacing ID inputs, or "none".
        var ood: String
        var run: Int
        var changeAt: Int?
        /// The stream's p-values: one layer's, or the layers' Bonferroni fusion (what the files hold).
        var p: [Double]
        /// Per layer, the same inputs' own p-values (what a monitor's shift detector bets on).
        var layers: [[Double]]
    }

    /// Makes the streams, writes them and the manifest into `directory`, runs our detectors on them and
    /// returns the summary (JSON-ready).
    static func run(
        layerPValues: [[String: [Double]]],
        oodSets: [String],
        calibrationCounts ms: [Int],
        alpha: Double,
        scenario: String,
        layer: String,
        configuration: String,
        directory: String,
        idStreams: Int,
        idLength: Int,
        changeRuns: Int
    ) throws -> [String: Any] {
        // The stream p-value of an input: its one layer's p-value, or the Bonferroni fusion of its layers'.
        let fusedP = layerPValues[0].keys.reduce(into: [String: [Double]]()) {
            $0[$1] = fuse(layerPValues, split: $1, rule: .bonferroni)
        }
        func stream(_ file: String, _ ood: String, _ run: Int, _ changeAt: Int?, _ picks: [(String, Int)]) -> Stream {
            Stream(
                file: file,
                ood: ood,
                run: run,
                changeAt: changeAt,
                p: picks.map { fusedP[$0.0]![$0.1] },
                layers: layerPValues.map { lp in picks.map { lp[$0.0]![$0.1] } }
            )
        }
        let nTest = fusedP["test"]!.count
        for split in ["test"] + oodSets.map({ "ood_\($0)" }) where fusedP[split]!.isEmpty {
            throw LabError("the split \(split) has no rows to draw streams from", status: 2)
        }
        var streams: [Stream] = []
        // In-distribution: inputs drawn with replacement from the held-out test split.
        for r in 0..<idStreams {
            let picks = resampledRows(length: idLength, from: nTest, run: r).map { ("test", $0) }
            streams.append(stream(String(format: "id_%03d.npy", r), "none", r, nil, picks))
        }
        // Gradual replacement (OODRamp): in distribution until changeAt, then each input is out of distribution
        // with a probability rising linearly to 1 over the ramp.
        for o in oodSets {
            let nOOD = fusedP["ood_\(o)"]!.count
            for r in 0..<changeRuns {
                let picks = ramp.picks(idCount: nTest, oodCount: nOOD, run: r).map {
                    $0.ood ? ("ood_\(o)", $0.row) : ("test", $0.row)
                }
                streams.append(stream(String(format: "%@_%03d.npy", o, r), o, r, changeAt, picks))
            }
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for s in streams { try NumpyArray.write(s.p, shape: [s.p.count], to: "\(directory)/\(s.file)") }
        let manifest: [String: Any] = [
            "alpha": alpha, "scenario": scenario, "layer": layer, "configuration": configuration,
            "calibration_count": ms[0], "calibration_counts": ms,
            "generator": "latentwatch-eval \(LatentWatchVersion.string)",
            "p_value": "(1 + #{calibration surprise >= s}) / (m + 1), not smoothed",
            "streams": streams.map {
                [
                    "file": $0.file, "change_at": $0.changeAt.map { $0 as Any } ?? NSNull(), "scenario": scenario,
                    "ood": $0.ood, "run": $0.run,
                ] as [String: Any]
            },
        ]
        try writeJSON(manifest, to: "\(directory)/manifest.json")

        // Our detectors, each a function from a stream to its alarm indices, with the corrections a Monitor
        // with the default policy makes for these calibration sets. The shift detectors bet on each layer's own
        // p-values and average the layers' capital, as a Monitor does (LayerMixtureShiftDetector; with one layer
        // that is ShiftDetector). The windows watch the stream's (fused) p-values.
        let delta = 0.01
        let policy = AlertPolicy(inputAlpha: alpha, shift: .anytime(delta: delta))
        let corrections = policy.calibrationCorrections(calibrationCounts: ms)
        let conditional = corrections.shift
        let dkw = policy.calibrationCorrections(calibrationCounts: ms, method: .dkw).shift
        let slack = dkw.map(\.slack)
        let uncorrected = ms.map { CalibrationCorrection.uncorrected(calibrationCount: $0) }
        // lw_window_dkw: the uniform bound alpha + DKW slack, kept for comparison.
        let dkwWindowRate = alpha + slack.reduce(0, +)
        /// An anytime detector; `c` nil bets against the calibration sets and the stream (``ConformalUrn``).
        func anytime(
            _ name: String,
            betting: ShiftBetting,
            jump: Double,
            _ c: [CalibrationCorrection]?
        ) -> (String, [String: Any], (Stream) -> [Int]) {
            (
                name,
                [
                    "mode": "anytime", "delta": delta, "betting": betting.rawValue, "jump_rate": jump,
                    "reference": c == nil ? "calibration-and-stream" : "calibration-set",
                    "correction": c?.first?.method.rawValue ?? "none",
                    "failure_probability": c?.map(\.failureProbability) ?? [],
                ],
                {
                    // Built as a Monitor builds it (AlertPolicy.shiftDetector).
                    let detector = AlertPolicy(
                        shift: .anytime(delta: delta),
                        jumpRate: jump,
                        shiftBetting: betting,
                        shiftReference: c == nil ? .calibrationAndStream : .calibrationSet
                    ).shiftDetector(calibrationCounts: ms, corrections: c ?? [])!
                    return shiftAlarms($0.layers, detector)
                }
            )
        }
        // The default anytime detector (mixture betting, jump rate 0.001, against the calibration set and the
        // stream so far), the same at other jump rates and with other betting functions; against the calibration
        // set alone with the conditional correction (lw_anytime_calibration_set), the DKW slack or no correction;
        // lw_anytime_linear_dkw is the simple jumper at jump rate 0.01 with the DKW slack (the first shift
        // detector).
        var detectors: [(String, [String: Any], (Stream) -> [Int])] = [
            anytime("lw_anytime", betting: policy.shiftBetting, jump: policy.jumpRate, nil),
            anytime("lw_anytime_jump0.01", betting: policy.shiftBetting, jump: 0.01, nil),
            anytime("lw_anytime_jump0.0001", betting: policy.shiftBetting, jump: 0.0001, nil),
            anytime("lw_anytime_power", betting: .power, jump: policy.jumpRate, nil),
            anytime("lw_anytime_linear", betting: .linear, jump: policy.jumpRate, nil),
            anytime("lw_anytime_calibration_set", betting: policy.shiftBetting, jump: policy.jumpRate, conditional),
            anytime("lw_anytime_dkw", betting: policy.shiftBetting, jump: policy.jumpRate, dkw),
            anytime("lw_anytime_linear_dkw", betting: .linear, jump: 0.01, dkw),
            anytime("lw_anytime_uncorrected", betting: policy.shiftBetting, jump: policy.jumpRate, uncorrected),
        ]
        for (name, betting, jump, c) in [
            ("lw_change_arl1000", policy.shiftBetting, policy.jumpRate, conditional),
            ("lw_change_arl1000_linear_dkw", .linear, 0.01, dkw),
        ] {
            detectors.append(
                (
                    name,
                    [
                        "mode": "change", "mean_run_length": 1000, "betting": betting.rawValue, "jump_rate": jump,
                        "correction": c.first?.method.rawValue ?? "none",
                    ],
                    {
                        shiftAlarms(
                            $0.layers,
                            LayerMixtureShiftDetector(
                                mode: .changeDetection(meanRunLength: 1000),
                                betting: betting,
                                jumpRate: jump,
                                corrections: c
                            )
                        )
                    }
                )
            )
        }
        detectors += [
            (
                "lw_window",
                ["window": 200, "alpha": alpha, "window_level": 1e-4, "null_rate": corrections.windowNullRate],
                { windowAlarms($0.p, alpha: alpha, nullRate: corrections.windowNullRate) }
            ),
            (
                "lw_window_dkw", ["window": 200, "alpha": alpha, "window_level": 1e-4, "null_rate": dkwWindowRate],
                { windowAlarms($0.p, alpha: alpha, nullRate: dkwWindowRate) }
            ),
        ]
        if ms.count > 1 {
            // lw_anytime_bonferroni, kept for comparison: one martingale on the Bonferroni-fused p-values,
            // which are min(1, L min_l (p_l + s)) = the fused p plus L s when every layer's slack s is equal
            // (equal calibration counts, as here; otherwise L max s is an upper bound).
            let fusedSlack = Double(ms.count) * (slack.max() ?? 0)
            detectors.append(
                (
                    "lw_anytime_bonferroni",
                    ["mode": "anytime", "delta": delta, "betting": "linear", "calibration_slack": fusedSlack],
                    {
                        shiftAlarms(
                            [$0.p],
                            LayerMixtureShiftDetector(
                                mode: .anytime(delta: delta),
                                betting: .linear,
                                jumpRate: 0.01,
                                pValueSlack: [fusedSlack]
                            )
                        )
                    }
                )
            )
        }
        var results: [String: Any] = [:]
        var parameters: [String: Any] = [:]
        for (name, params, alarmsOf) in detectors {
            parameters[name] = params
            let records = streams.map { Record(alarms: alarmsOf($0), length: $0.p.count, changeAt: $0.changeAt) }
            // Groups keyed as stream_baselines.py keys them; "_all" in stream order, so the output is reproducible.
            var summary: [String: Any] = ["_all": summarise(records)]
            for (g, recs) in Dictionary(grouping: zip(streams, records), by: { "\(scenario)/\($0.0.ood)" }) {
                summary[g] = summarise(recs.map(\.1))
            }
            results[name] = summary
        }
        return [
            "directory": directory, "layer": layer, "configuration": configuration, "calibration_count": ms[0],
            "calibration_counts": ms,
            "id_streams": idStreams, "id_length": idLength, "change_runs": changeRuns, "change_at": changeAt,
            "ramp": ramp.rampLength, "change_length": ramp.length, "detectors": parameters, "results": results,
        ]
    }

    /// Per input, the `rule` fusion of the layers' p-values in `split` (also the fusion AUROC's input).
    static func fuse(_ layerPValues: [[String: [Double]]], split: String, rule: PValueFusion) -> [Double] {
        if layerPValues.count == 1 { return layerPValues[0][split]! }
        return layerPValues[0][split]!.indices.map { i in
            layerPValues.map { $0[split]![i] }.withUnsafeBufferPointer { rule.fuse($0) }
        }
    }

    /// Alarm indices of a shift detector over one stream's per-layer p-values (anytime mode: at most one).
    static func shiftAlarms(_ layers: [[Double]], _ detector: LayerMixtureShiftDetector) -> [Int] {
        var d = detector
        var alarms: [Int] = []
        var row = [Double](repeating: 1, count: layers.count)
        for t in 0..<(layers.first?.count ?? 0) {
            for l in 0..<layers.count { row[l] = layers[l][t] }
            if row.withUnsafeBufferPointer({ d.update($0) }) { alarms.append(t) }
        }
        return alarms
    }

    /// Alarm indices of the sliding-window rate detector (W = 200, level 1e-4) with the given null rate.
    static func windowAlarms(_ p: [Double], alpha: Double, nullRate: Double) -> [Int] {
        var w = WindowRateDetector(window: 200, alpha: alpha, windowLevel: 1e-4, nullRate: nullRate)
        var alarms: [Int] = []
        for (t, x) in p.enumerated() {
            if case .fired = w.update(x) { alarms.append(t) }
        }
        return alarms
    }

    struct Record {
        var alarms: [Int]
        var length: Int
        var changeAt: Int?
    }

    /// The same summary as stream_baselines.py's `summarise` (median as numpy's: mean of the middle two).
    static func summarise(_ recs: [Record]) -> [String: Any] {
        var out: [String: Any] = [:]
        let id = recs.filter { $0.changeAt == nil }
        let ch = recs.filter { $0.changeAt != nil }
        if !id.isEmpty {
            let inputs = id.reduce(0) { $0 + $1.length }
            let alarms = id.reduce(0) { $0 + $1.alarms.count }
            out["id"] = [
                "streams": id.count, "streams_with_alarm": id.filter { !$0.alarms.isEmpty }.count, "alarms": alarms,
                "inputs": inputs, "alarms_per_1e4": 1e4 * Double(alarms) / Double(inputs),
            ]
        }
        if !ch.isEmpty {
            var delays: [Int] = []
            var falseAlarms = 0
            for r in ch {
                let c = r.changeAt!
                if r.alarms.contains(where: { $0 < c }) { falseAlarms += 1 }
                if let a = r.alarms.first(where: { $0 >= c }) { delays.append(a - c) }
            }
            let sorted = delays.sorted()
            let median: Any =
                sorted.isEmpty
                ? NSNull()
                : (sorted.count % 2 == 1
                    ? Double(sorted[sorted.count / 2])
                    : Double(sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2)
            out["change"] = [
                "streams": ch.count, "false_alarm_streams": falseAlarms, "detected": delays.count,
                "missed": ch.count - delays.count, "median_delay": median,
                "mean_delay": delays.isEmpty
                    ? NSNull() as Any : Double(delays.reduce(0, +)) / Double(delays.count) as Any,
                "delays": delays,
            ]
        }
        return out
    }
}
