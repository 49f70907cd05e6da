import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch demo`: fits on bundled real activations (two layers), evaluates on held-out in- and
/// out-of-distribution inputs, then replays a stream in which out-of-distribution inputs appear through a
/// real `Monitor`, printing alerts and writing alerts (JSON lines) and an HTML report.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract:
            "Fit on the bundled digits-MLP activations, evaluate, and replay a stream with OOD inputs through a monitor."
    )

    @Option(help: "Folder with the bundled data (default: Samples/Data/digits-mlp found from here or the source tree).")
    var data: String?

    @Option(help: "Folder for the demo's outputs: models, alerts, scores, report.")
    var outputDirectory: String = FileManager.default.temporaryDirectory.appendingPathComponent("latentwatch-demo").path

    @Option(help: "Where to write the HTML report (default: in the output directory).")
    var report: String?

    @OptionGroup var alerts: AlertOptions

    func run() async throws {
        let dir = try DemoData.locate(data)
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        func out(_ name: String) -> String { URL(fileURLWithPath: outputDirectory).appendingPathComponent(name).path }
        print(
            "LatentWatch demo: a scikit-learn MLP (64-128-64-6) trained on the UCI digits 0-5 (scikit-learn's bundled copy);"
        )
        print("monitoring its hidden layers h1 (128-d) and h2 (64-d) with class-conditional Gaussians.")
        print("")
        let labels = try Files.labels(path("train_labels.npy"), key: nil)
        let calibrationLabels = try Files.labels(path("calibration_labels.npy"), key: nil)
        var fitted: [(model: LatentModel, milliseconds: Double)] = []
        for layer in ["h1", "h2"] {
            let start = Date()
            let model = try userFacing("fit \(layer)") {
                try LatentModelFitter.fit(
                    FileActivations(path: path("train_\(layer).npy"), labels: labels),
                    calibration: FileActivations(path: path("calibration_\(layer).npy"), labels: calibrationLabels),
                    configuration: FitConfiguration(family: .gda, layerName: layer),
                    created: ISO8601DateFormatter().string(from: Date())
                )
            }
            fitted.append((model, Date().timeIntervalSince(start) * 1000))
        }
        // Both layers saw the same calibration inputs: calibrate their fused p-value on them.
        let joint = try userFacing("calibrate the fusion of h1 and h2") {
            try LatentModelFitter.calibrateJointly(
                fitted.map(\.model),
                calibration: try ["h1", "h2"].map { try FileActivations(path: path("calibration_\($0).npy")) }
            )
        }
        var models: [LatentModel] = []
        for (i, layer) in ["h1", "h2"].enumerated() {
            let model = joint[i]
            let file = out("\(layer).lwm")
            try userFacing("write \(file)") {
                try ModelFile.write(model, to: file, options: .init(precision: .float16))
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            print(
                String(
                    format: "fit %@: %d inputs, %d classes, %.0f ms; calibrated on %d held-out; %@ (%d bytes, float16)",
                    layer,
                    model.metadata.fitSamples,
                    model.density.componentCount,
                    fitted[i].milliseconds,
                    model.metadata.calibrationSamples,
                    file,
                    size
                )
            )
            models.append(try Files.readModel(file))
        }
        print(
            "h1 and h2 fused by a joint calibration on the same \(joint[0].jointCalibration?.count ?? 0) held-out inputs"
        )
        print("")
        print(
            "separation of held-out in-distribution inputs from out-of-distribution sets (surprise, layer h2; alert at p <= \(alerts.alpha)):"
        )
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        print(pad("set", 28) + pad("inputs", 8) + pad("AUROC", 8) + pad("FPR@95", 8) + "alert rate")
        func surprises(_ m: LatentModel, _ file: String) throws -> (s: [Double], p: [Double]) {
            let r = try scoreValues(m, file: try TensorFile(path: path(file)), key: nil, kind: .surprise)
            return (r.values, r.pValues)
        }
        let test = try surprises(models[1], "test_h2.npy")
        func rate(_ p: [Double]) -> String {
            String(format: "%.1f%%", 100 * Double(p.filter { $0 <= alerts.alpha }.count) / Double(max(1, p.count)))
        }
        print(pad("test (digits 0-5, ID)", 28) + pad("\(test.s.count)", 8) + pad("-", 8) + pad("-", 8) + rate(test.p))
        for (name, file) in [
            ("digits 6-9 (near OOD)", "ood_digits_h2.npy"), ("inverted images (far OOD)", "ood_inverted_h2.npy"),
            ("uniform noise (far OOD)", "ood_noise_h2.npy"),
        ] {
            let o = try surprises(models[1], file)
            print(
                pad(name, 28) + pad("\(o.s.count)", 8)
                    + pad(String(format: "%.4f", ROC.auroc(negatives: test.s, positives: o.s)), 8)
                    + pad(String(format: "%.3f", ROC.falsePositiveRate(negatives: test.s, positives: o.s)), 8)
                    + rate(o.p)
            )
        }

        let oodStart = try Files.labels(path("stream_ood_start.npy"), key: nil)[0]
        let layers = try ["h1", "h2"].enumerated().map { i, l in
            let f = try TensorFile(path: path("stream_\(l).npy"))
            return ReplayLayer(model: models[i], file: f, key: f.tensors[0].name)
        }
        let policy = try alerts.policy()
        let alertsFile = out("alerts.jsonl")
        let result = try await ReplaySession.run(
            layers: layers,
            policy: policy,
            alertsPath: alertsFile,
            requestIDs: nil,
            progress: nil
        )
        print("")
        print(
            "replaying a stream of \(result.assessments.count) inputs through a Monitor (layers h1 + h2, fused by the "
                + "\(FusionText.describe(policy.fusion, models: models)));"
        )
        print("in-distribution digits until index \(oodStart), then digits 6-9, inverted and noise images:")
        var shownInputs = 0
        var hidden = 0
        for a in result.alerts where a.kind != .aleatoric {
            if a.kind == .input {
                if shownInputs >= 10 {
                    hidden += 1
                    continue
                }
                shownInputs += 1
            }
            print(
                "  ALERT \(pad(a.kind.rawValue, 8)) input \(a.index)\(a.pValue.map { String(format: "  p = %.4f", $0) } ?? ""): \(a.detail)"
            )
        }
        if hidden > 0 { print("  ... and \(hidden) more input alerts") }
        let epistemic = result.alerts.filter { $0.kind != .aleatoric && $0.kind != .resolved }
        let before = epistemic.filter { $0.index < oodStart }.count
        let after = epistemic.count - before
        let aleatoric = result.alerts.filter { $0.kind == .aleatoric }
        print(
            "epistemic alerts before index \(oodStart): \(before); from index \(oodStart): \(after). Aleatoric (ambiguous-input) alerts: \(aleatoric.filter { $0.index < oodStart }.count) before, \(aleatoric.filter { $0.index >= oodStart }.count) after."
        )
        let reportPath = report ?? out("report.html")
        let html = HTMLReport.render(
            result,
            title: "LatentWatch demo: digits MLP, stream with out-of-distribution inputs from index \(oodStart)",
            source: "bundled data \(dir.path); models \(out("h1.lwm")), \(out("h2.lwm"))",
            markers: [(oodStart, "out-of-distribution inputs begin")]
        )
        try Files.write(html, to: reportPath)
        try ReplaySession.writeScores(result, to: out("scores.csv"))
        print("")
        print("alerts (JSON lines): \(alertsFile)")
        print("per-input scores:    \(out("scores.csv"))")
        print("report:              \(reportPath)")
    }
}

enum DemoData {
    static func locate(_ explicit: String?) throws -> URL {
        var candidates: [URL] = []
        if let explicit { candidates.append(URL(fileURLWithPath: explicit)) }
        candidates.append(
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
                "Samples/Data/digits-mlp"
            )
        )
        candidates.append(
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Samples/Data/digits-mlp")
        )
        for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("train_h1.npy").path)
        { return c }
        throw ValidationError(
            "bundled data not found; run from the repository root or pass --data Samples/Data/digits-mlp"
        )
    }
}
