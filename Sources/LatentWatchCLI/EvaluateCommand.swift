import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch evaluate`: separation of in- and out-of-distribution inputs, and the realised alert rate.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "AUROC, FPR at 95% TPR, AUPR and alert rates of a model on in-distribution and OOD sets.",
        discussion: """
            Out-of-distribution inputs are the positives. The alert rate is the share of inputs whose \
            conformal p-value of the score is at most --alpha: on in-distribution data it should be close to \
            alpha (the false-alarm rate), on OOD data it is the detection rate. The default score, epistemic, is \
            what a monitor alerts on: the surprise, or for a model with a neighbour index the surprise and the \
            neighbour distance combined (ranked by their Cauchy statistic, alerting on its conformal p-value).
            Example: latentwatch evaluate --model h1.lwm --in test_h1.npy --ood ood_digits_h1.npy --ood ood_noise_h1.npy
            """
    )

    @Option(help: "Model file (.lwm).")
    var model: String

    @Option(
        name: .customLong("in"),
        help: "Held-out in-distribution activations (not used for fitting or calibration)."
    )
    var inDistribution: String

    @Option(help: "Out-of-distribution activations; repeat for several sets. NAME=FILE names a set.")
    var ood: [String] = []

    @Option(help: "Array to read from each file (default: the model's layer name when present).")
    var key: String?

    @Option(
        help:
            "Score that ranks inputs: epistemic (the monitor's), surprise, neighbour, mahalanobis, relative-mahalanobis or entropy."
    )
    var score: RankingScore = .epistemic

    @Option(help: "Alert level for the alert rates.")
    var alpha: Double = 0.01

    @Option(help: "Also write the results as JSON to this file ('-' for stdout only as JSON).")
    var json: String?

    func run() throws {
        guard !ood.isEmpty else { throw ValidationError("give at least one --ood set") }
        let m = try Files.readModel(model)
        if score == .neighbour && !m.hasNeighbourIndex {
            throw ValidationError("the model has no neighbour index; fit it with --neighbours ROWS")
        }
        func scores(_ path: String) throws -> (values: [Double], pValues: [Double], failed: Int) {
            let f = try userFacing(path) { try TensorFile(path: path) }
            for w in f.warnings { stderrLine("warning: \(w)") }
            let k = key ?? (f.tensors.contains { $0.name == m.metadata.layer } ? m.metadata.layer : nil)
            guard let kind = score.kind else {
                return try userFacing(path) { try epistemicValues(m, file: f, key: k) }
            }
            return try userFacing(path) { try scoreValues(m, file: f, key: k, kind: kind) }
        }
        let id = try scores(inDistribution)
        func rate(_ p: [Double]) -> Double { Double(p.filter { $0 <= alpha }.count) / Double(max(1, p.count)) }
        var rows: [[String: Any]] = []
        rows.append([
            "set": "in-distribution", "file": inDistribution, "inputs": id.values.count, "unscorable": id.failed,
            "alert_rate": rate(id.pValues),
        ])
        for spec in ood {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            let (name, path) =
                parts.count == 2 && !FileManager.default.fileExists(atPath: spec)
                ? (parts[0], parts[1]) : (URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent, spec)
            let o = try scores(path)
            rows.append([
                "set": name, "file": path, "inputs": o.values.count, "unscorable": o.failed,
                "auroc": ROC.auroc(negatives: id.values, positives: o.values),
                "fpr_at_95_tpr": ROC.falsePositiveRate(
                    atTruePositiveRate: 0.95,
                    negatives: id.values,
                    positives: o.values
                ),
                "aupr": ROC.averagePrecision(negatives: id.values, positives: o.values),
                "alert_rate": rate(o.pValues),
            ])
        }
        let result: [String: Any] = [
            "model": model, "layer": m.metadata.layer, "family": m.density.family, "score": score.rawValue,
            "alpha": alpha,
            "calibration_scores": m.calibration.distributions[score.kind ?? .surprise]?.count ?? 0, "sets": rows,
        ]
        let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
        if json == "-" {
            print(String(decoding: data, as: UTF8.self))
            return
        }
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func num(_ v: Any?, _ f: String) -> String { (v as? Double).map { String(format: f, $0) } ?? "-" }
        print("model \(model): layer \(m.metadata.layer), \(m.density.family), score \(score.rawValue), alpha \(alpha)")
        print(
            pad("set", 28) + " "
                + ["inputs", "AUROC", "FPR@95TPR", "AUPR", "alert rate"].map { pad($0, 10) }.joined(separator: " ")
        )
        for r in rows {
            print(
                pad(r["set"] as! String, 28) + " " + pad("\(r["inputs"]!)", 10) + " "
                    + [num(r["auroc"], "%.4f"), num(r["fpr_at_95_tpr"], "%.4f"), num(r["aupr"], "%.4f")].map {
                        pad($0, 10)
                    }
                    .joined(separator: " ") + " " + num((r["alert_rate"] as! Double) * 100, "%.2f%%")
            )
        }
        if let json { try Files.write(String(decoding: data, as: UTF8.self) + "\n", to: json) }
    }
}
