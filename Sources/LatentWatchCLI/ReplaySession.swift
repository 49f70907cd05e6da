import Foundation
import LatentWatch

/// One layer of a replay: its model and where its activations come from.
struct ReplayLayer {
    let model: LatentModel
    let file: TensorFile
    let key: String
}

/// What a replay produced: every assessment and every alert, in order.
struct ReplayResult {
    var layers: [ReplayLayer]
    var policy: AlertPolicy
    var assessments: [Assessment] = []
    var alerts: [Alert] = []
    var rejected: [(row: Int, reason: String)] = []
    var shiftLogThreshold: Double?
    var seconds: Double = 0

    /// The primary (last) layer's model is a regression model: assessments carry predictions.
    var isRegression: Bool { layers.last?.model.targetBinCount != nil }
    /// The host's predictions were replayed with the activations: assessments carry their disagreement.
    var hasHostPredictions = false
}

/// Streams the rows of the layers' files through a real inline `Monitor` (the code a host runs), with a
/// JSON-lines sink when asked, and collects assessments and alerts.
enum ReplaySession {
    static func run(
        layers: [ReplayLayer],
        policy: AlertPolicy,
        alertsPath: String?,
        requestIDs: [String?]?,
        hostPredictions: [Double]? = nil,
        progress: ProgressPrinter?
    ) async throws -> ReplayResult {
        let rows = try layers.map { try $0.file.tensor($0.key).rows }
        guard let n = rows.first, rows.allSatisfy({ $0 == n }) else {
            throw CLIError("the layers' inputs have different row counts: \(rows)")
        }
        if let hostPredictions, hostPredictions.count != n {
            throw CLIError("\(hostPredictions.count) host predictions for \(n) inputs")
        }
        for l in layers {
            let t = try l.file.tensor(l.key)
            guard t.rowElements == l.model.preparation.inputCount else {
                throw CLIError(
                    "\(l.file.path): '\(t.name)' rows have shape \(t.rowShape); the model of layer '\(l.model.metadata.layer)' expects \(l.model.preparation.inputShape)"
                )
            }
        }
        let collected = CollectingSink(name: "replay")
        var sinks: [any AlertSink] = [collected]
        if let alertsPath {
            _ = FileManager.default.createFile(atPath: alertsPath, contents: nil)
            sinks.append(JSONLinesSink(path: alertsPath, maxBytes: Int.max, keep: 1))
        }
        let monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: layers.map { MonitoredLayer(name: $0.model.metadata.layer, model: $0.model) },
                policy: policy,
                mode: .inline,
                sinkBufferCapacity: max(4096, n * 4 + 16),
                outputs: hostPredictions == nil ? nil : (.prediction, 1)
            ),
            sinks: sinks
        )
        let service = Task { try await monitor.run() }
        var result = ReplayResult(layers: layers, policy: policy, shiftLogThreshold: monitor.shiftLogThreshold)
        result.hasHostPredictions = hostPredictions != nil
        result.assessments.reserveCapacity(n)
        let start = Date()
        let sizes = layers.map { $0.model.preparation.inputCount }
        let block = 2048
        var buffers = [UnsafeBufferPointer<Float>](
            repeating: UnsafeBufferPointer(start: nil, count: 0),
            count: layers.count
        )
        // The host's prediction of the current row, handed to the monitor as its one output when replayed.
        var host: Float = 0
        var r0 = 0
        while r0 < n {
            let r1 = min(n, r0 + block)
            // One copy per layer and block, so the row views handed to the monitor stay valid.
            let blocks = try layers.map { l -> UnsafeMutableBufferPointer<Float> in
                let v = try l.file.rows(l.key, r0..<r1)
                let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count)
                _ = b.initialize(from: v)
                return b
            }
            defer { for b in blocks { b.deallocate() } }
            for r in r0..<r1 {
                for l in 0..<layers.count {
                    buffers[l] = UnsafeBufferPointer(
                        rebasing: blocks[l][((r - r0) * sizes[l])..<((r - r0 + 1) * sizes[l])]
                    )
                }
                do {
                    if let hostPredictions { host = Float(hostPredictions[r]) }
                    result.assessments.append(
                        try withUnsafePointer(to: &host) { h in
                            try monitor.assess(
                                .float32(buffers),
                                outputs: hostPredictions == nil ? nil : UnsafeBufferPointer(start: h, count: 1),
                                requestID: requestIDs?[r] ?? nil
                            )
                        }
                    )
                } catch {
                    result.rejected.append((r, "\(error)"))
                }
            }
            r0 = r1
            progress?.update("replayed \(r0) of \(n) inputs")
        }
        progress?.finish()
        result.seconds = Date().timeIntervalSince(start)
        monitor.shutDown()
        try await service.value
        result.alerts = collected.alerts.sorted { ($0.index, $0.kind.rawValue) < ($1.index, $1.kind.rawValue) }
        return result
    }

    /// Per-input scores as CSV or JSON lines (by extension).
    static func writeScores(_ result: ReplayResult, to path: String) throws {
        let jsonl = path.lowercased().hasSuffix(".jsonl") || path.lowercased().hasSuffix(".json")
        var out = ""
        let names = result.layers.map { $0.model.metadata.layer }
        // Regression models add their prediction, spread, spread p-value and prediction interval.
        let regression = result.isRegression
        func opt(_ x: Double?) -> String { x.map { "\($0)" } ?? "" }
        if !jsonl {
            out +=
                "index,request_id,"
                + names.map { "surprise_\($0),p_\($0)" }.joined(separator: ",")
                + ",fused_p,entropy,entropy_p,predicted,out_of_distribution,ambiguous,window_alarm,shift_alarm,shift_log_evidence"
                + (regression ? ",prediction,spread,spread_p,interval_low,interval_high" : "")
                + (result.hasHostPredictions ? ",host_prediction,disagreement,disagreement_p\n" : "\n")
        }
        for a in result.assessments {
            if jsonl {
                var o: [String: Any] = [
                    "index": a.index, "fused_p": a.fusedPValue, "entropy": a.entropy,
                    "flags": flagNames(a.flags),
                    "layers": a.layers.map { ["name": $0.name, "surprise": $0.surprise, "p": $0.pValue] },
                ]
                if let id = a.requestID { o["request_id"] = id }
                if let e = a.entropyPValue { o["entropy_p"] = e }
                if let p = a.predictedLabel { o["predicted"] = p }
                if let s = a.shiftLogEvidence, s.isFinite { o["shift_log_evidence"] = s }
                if let y = a.prediction { o["prediction"] = y }
                if let sd = a.predictiveSpread { o["spread"] = sd }
                if let sp = a.spreadPValue { o["spread_p"] = sp }
                // An unbounded end is written as null (JSON has no infinity).
                if let i = a.predictionInterval {
                    o["interval"] = [i.lowerBound, i.upperBound].map { $0.isFinite ? $0 as Any : NSNull() }
                }
                if let h = a.hostPrediction { o["host_prediction"] = h }
                if let d = a.disagreement { o["disagreement"] = d }
                if let dp = a.disagreementPValue { o["disagreement_p"] = dp }
                let d = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
                out += String(decoding: d, as: UTF8.self) + "\n"
            } else {
                let id = (a.requestID ?? "").replacingOccurrences(of: ",", with: ";")
                out += "\(a.index),\(id),"
                out += a.layers.map { "\($0.surprise),\($0.pValue)" }.joined(separator: ",")
                out +=
                    ",\(a.fusedPValue),\(a.entropy),\(a.entropyPValue.map { "\($0)" } ?? ""),\(a.predictedLabel.map { "\($0)" } ?? "")"
                out += ",\(a.flags.contains(.outOfDistribution) ? 1 : 0),\(a.flags.contains(.ambiguous) ? 1 : 0)"
                out += ",\(a.flags.contains(.windowAlarm) ? 1 : 0),\(a.flags.contains(.shiftAlarm) ? 1 : 0)"
                out += ",\(a.shiftLogEvidence.map { "\($0)" } ?? "")"
                if regression {
                    out += ",\(opt(a.prediction)),\(opt(a.predictiveSpread)),\(opt(a.spreadPValue))"
                    out += ",\(opt(a.predictionInterval?.lowerBound)),\(opt(a.predictionInterval?.upperBound))"
                }
                if result.hasHostPredictions {
                    out += ",\(opt(a.hostPrediction)),\(opt(a.disagreement)),\(opt(a.disagreementPValue))"
                }
                out += "\n"
            }
        }
        try Files.write(out, to: path)
    }

    static func flagNames(_ f: Assessment.Flags) -> [String] {
        var out: [String] = []
        if f.contains(.outOfDistribution) { out.append("out_of_distribution") }
        if f.contains(.ambiguous) { out.append("ambiguous") }
        if f.contains(.windowAlarm) { out.append("window_alarm") }
        if f.contains(.shiftAlarm) { out.append("shift_alarm") }
        if f.contains(.disagreement) { out.append("disagreement") }
        return out
    }

    /// A plain-text summary of a replay.
    static func summary(_ r: ReplayResult) -> [String] {
        var lines: [String] = []
        let n = r.assessments.count
        lines.append(
            "replayed \(n) inputs through \(r.layers.count) layer(s) (\(r.layers.map { $0.model.metadata.layer }.joined(separator: ", "))) in \(String(format: "%.2f", r.seconds)) s"
        )
        var byKind: [Alert.Kind: Int] = [:]
        for a in r.alerts { byKind[a.kind, default: 0] += 1 }
        lines.append(
            "alerts: " + Alert.Kind.allCases.map { "\($0.rawValue) \(byKind[$0] ?? 0)" }.joined(separator: ", ")
        )
        let flagged = r.assessments.filter { $0.flags.contains(.outOfDistribution) }.count
        if r.layers.count > 1 {
            lines.append("fusion: \(FusionText.describe(r.policy.fusion, models: r.layers.map(\.model)))")
        }
        lines.append(
            String(
                format: "inputs with fused p <= %.3g: %d of %d (%.2f%%)",
                r.policy.inputAlpha,
                flagged,
                n,
                100 * Double(flagged) / Double(max(1, n))
            )
        )
        if r.isRegression {
            let uncertain = r.assessments.filter { $0.flags.contains(.ambiguous) }.count
            var line = "regression model: \(uncertain) of \(n) predictions uncertain (spread p-value"
            line += r.policy.aleatoricAlpha.map { " <= \(String(format: "%.3g", $0)))" } ?? " alert off)"
            let widths = r.assessments.compactMap { a in a.predictionInterval.map { $0.upperBound - $0.lowerBound } }
                .sorted()
            if let level = r.policy.predictionIntervalLevel, !widths.isEmpty {
                line += String(
                    format: "; median width of the %.0f%% prediction interval %.4g",
                    100 * level,
                    widths[widths.count / 2]
                )
            }
            lines.append(line)
        }
        if r.hasHostPredictions {
            let far = r.assessments.filter { $0.flags.contains(.disagreement) }.count
            let calibrated = r.layers.last?.model.disagreementCalibrationCount ?? 0
            lines.append(
                calibrated == 0
                    ? "host predictions: the model's disagreement is not calibrated (fit --calibration-predictions); no p-values"
                    : "host predictions: \(far) of \(n) far from the model's (disagreement p-value"
                        + (r.policy.disagreementAlpha.map { " <= \(String(format: "%.3g", $0)))" } ?? " alert off)")
            )
        }
        if let s = r.alerts.first(where: { $0.kind == .shift }) {
            lines.append("first shift alarm at input \(s.index)")
        }
        if let w = r.alerts.first(where: { $0.kind == .window }) {
            lines.append("first window alarm at input \(w.index)")
        }
        if !r.rejected.isEmpty {
            lines.append(
                "rejected \(r.rejected.count) inputs; first: row \(r.rejected[0].row): \(r.rejected[0].reason)"
            )
        }
        return lines
    }
}
