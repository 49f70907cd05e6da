import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch replay`: streams recorded inputs through a monitor, exactly as the embedded path would.
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Stream recorded activations through a Monitor; write scores, alerts and an HTML report.",
        discussion: """
            One --model per monitored layer. With one --input, each model reads the array named like its layer \
            (a recording, .npz or safetensors with several layers), or the only array. With one --input per \
            model, they pair up in order. Alerts are JSON lines with kind (input, window, shift, aleatoric, \
            resolved, disagreement), index, p_value, request_id, episode, detail, time.
            Example: latentwatch replay --model h1.lwm --model h2.lwm --input stream.lwr --alerts alerts.jsonl --report report.html
            """
    )

    @Option(help: "Model file, one per monitored layer (repeat).")
    var model: [String]

    @Option(help: "Activations to replay (repeat to give one per model).")
    var input: [String]

    @Option(help: "Array to read from a single input file when the layer names do not match (single-model replays).")
    var key: String?

    @OptionGroup var alerts: AlertOptions

    @Option(name: .customLong("alerts"), help: "Write alerts as JSON lines to this file.")
    var alertsPath: String?

    @Option(
        help:
            "A regression host's own prediction of each input (.npy, one number per row): replayed with the activations, so each assessment carries its disagreement with the model's prediction."
    )
    var predictions: String?

    @Option(help: "Write per-input scores here: .csv, or .jsonl for JSON lines.")
    var scores: String?

    @Option(help: "Write a self-contained HTML report here.")
    var report: String?

    @Option(help: "Mark this input index in the report's charts (for example where a known shift begins).")
    var mark: [Int] = []

    @Flag(help: "Print every alert.")
    var verbose = false

    func run() async throws {
        guard !model.isEmpty else { throw ValidationError("give at least one --model") }
        guard input.count == 1 || input.count == model.count else {
            throw ValidationError("give one --input, or one per --model")
        }
        let policy = try alerts.policy()
        let models = try model.map { try Files.readModel($0) }
        let files = try input.map { p in try userFacing(p) { try TensorFile(path: p) } }
        for f in files { for w in f.warnings { stderrLine("warning: \(w)") } }
        var layers: [ReplayLayer] = []
        for (i, m) in models.enumerated() {
            let f = files.count == 1 ? files[0] : files[i]
            let k: String
            if f.tensors.contains(where: { $0.name == m.metadata.layer }) {
                k = m.metadata.layer
            } else if let key, models.count == 1 {
                k = key
            } else {
                k = try userFacing(f.path) { try f.tensor(nil).name }
            }
            layers.append(ReplayLayer(model: m, file: f, key: k))
        }
        let ids = try files.first?.requestIDs() ?? nil
        if predictions != nil, models.last?.targetBinCount == nil {
            throw ValidationError("--predictions goes with a regression model (the last --model predicts no target)")
        }
        let host = try predictions.map { try Files.targets($0, key: nil) }
        let result = try await ReplaySession.run(
            layers: layers,
            policy: policy,
            alertsPath: alertsPath,
            requestIDs: ids,
            hostPredictions: host,
            progress: ProgressPrinter()
        )
        if verbose {
            for a in result.alerts {
                print(
                    "ALERT \(a.kind.rawValue) input \(a.index)\(a.pValue.map { String(format: " p = %.4g", $0) } ?? ""): \(a.detail)"
                )
            }
        }
        for line in ReplaySession.summary(result) { print(line) }
        if let scores {
            try ReplaySession.writeScores(result, to: scores)
            print("scores -> \(scores)")
        }
        if let alertsPath { print("alerts -> \(alertsPath)") }
        if let report {
            let html = HTMLReport.render(
                result,
                title: "LatentWatch replay of \(URL(fileURLWithPath: input[0]).lastPathComponent)",
                source: "models: \(model.joined(separator: ", ")); inputs: \(input.joined(separator: ", "))",
                markers: mark.map { ($0, "marked input \($0)") }
            )
            try Files.write(html, to: report)
            print("report -> \(report)")
        }
    }
}
