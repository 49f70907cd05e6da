import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch merge`: combines the statistics of shards (`fit --statistics-only`) into a model, or into one
/// statistics file.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge shards' statistics (from `fit --statistics-only`) into a model file or one statistics file.",
        discussion: """
            Every statistics file must come from the same fit options and layer, and hold rows no other file holds \
            (each shard's --first-index). The model is fitted from the merged statistics and calibrated on \
            --calibration, as `latentwatch fit --calibration` would fit it from all the shards' activations in one pass. \
            With --statistics-only the merged statistics are written instead, to merge further (a tree of merges).
            Example: latentwatch merge s0.lws s1.lws s2.lws --calibration calibration_h1.npy \
            --calibration-labels calibration_labels.npy --output h1.lwm
            """
    )

    @Argument(help: "Statistics files (.lws) to merge.")
    var statistics: [String]

    @Option(help: "Held-out in-distribution activations to calibrate the model on (required unless --statistics-only).")
    var calibration: String?

    @Option(help: "Array to read from the calibration file.")
    var calibrationKey: String?

    @Option(help: "Class labels of the calibration inputs: calibrate the class posterior p(y | z) on them.")
    var calibrationLabels: String?

    @Flag(
        name: .customLong("posterior-calibration"),
        inversion: .prefixedNo,
        help: "Calibrate p(y | z) when the calibration inputs carry labels."
    )
    var posteriorCalibration = true

    @Flag(help: "Write the merged statistics (.lws) instead of a model.")
    var statisticsOnly = false

    @Option(help: "Where to write the model file (with --statistics-only: the statistics file).")
    var output: String

    func run() throws {
        guard !statistics.isEmpty else { throw ValidationError("give at least one statistics file") }
        let start = Date()
        var merged = try userFacing("statistics \(statistics[0])") {
            try StatisticsFile.read(contentsOf: statistics[0])
        }
        for path in statistics.dropFirst() {
            let next = try userFacing("statistics \(path)") { try StatisticsFile.read(contentsOf: path) }
            try userFacing("merging \(path)") { try merged.merge(next) }
        }
        let rows = merged.rowsText
        if statisticsOnly {
            guard calibration == nil else { throw ValidationError("--statistics-only takes no --calibration") }
            try userFacing("writing \(output)") {
                try StatisticsFile.write(merged, to: output, created: ISO8601DateFormatter().string(from: Date()))
            }
            print(
                "wrote \(output): statistics of \(merged.fitSamples) inputs (rows \(rows)) from \(statistics.count) files"
            )
            return
        }
        guard let calibration else {
            throw ValidationError("give --calibration (held-out activations), or --statistics-only")
        }
        let calSource = try userFacing("calibration") {
            let f = try TensorFile(path: calibration)
            for w in f.warnings { stderrLine("warning: \(w)") }
            let t = try f.tensor(calibrationKey)
            let labels =
                try calibrationLabels.map { try Files.labels($0, key: nil) } ?? Files.embeddedLabels(f, rows: t.rows)
            return try FileActivations(file: f, key: t.name, labels: labels)
        }
        var cfg = merged.configuration
        cfg.calibratePosterior = cfg.calibratePosterior && posteriorCalibration
        let model = try userFacing("fit") {
            try LatentModelFitter.fit(
                statistics: merged,
                calibration: calSource,
                configuration: cfg,
                created: ISO8601DateFormatter().string(from: Date())
            )
        }
        try userFacing("writing \(output)") {
            try ModelFile.write(model, to: output, options: .init(precision: model.precision))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "wrote \(output) (\(size) bytes): layer \(model.layer), \(model.family) with \(model.componentCount) components in \(model.latentDimension) dimensions, fitted on \(model.metadata.fitSamples) inputs (rows \(rows)) from \(statistics.count) statistics files, calibrated on \(model.metadata.calibrationSamples), in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
        print("regularisation: \(model.metadata.notes)")
    }
}
