import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch merge`: combines the statistics of shards (`fit --statistics-only`) into a model, or into one
/// statistics file.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract:
            "Merge shards' statistics into a model, one statistics file or a mixture fit's round; run EM rounds across shards.",
        discussion: """
            Every statistics file must come from the same fit options and layer, and hold rows no other file holds \
            (each shard's --first-index). gda and tied: the model is fitted from the merged statistics and \
            calibrated on --calibration, as `latentwatch fit --calibration` would fit it from all the shards' \
            activations in one pass. regression and regression-tied (shards gathered with --targets and the same \
            --binning-targets) likewise, with --calibration-targets. gmm-full and gmm-diag: the merged statistics become round 0 of EM (the PCA \
            projection and the k-means++ start). Each round, every shard writes its E-step \
            (`latentwatch fit --mixture-round ROUND --first-index F`), and `merge STEPS --mixture-round ROUND` \
            writes the next round; its last line reads `finished: true` once EM has converged or reached its \
            iteration limit. Then `merge --mixture-round ROUND --calibration ...` writes the model. With \
            --statistics-only the merged statistics are written instead, to merge further (a tree of merges).
            Example: latentwatch merge s0.lws s1.lws s2.lws --calibration calibration_h1.npy \
            --calibration-labels calibration_labels.npy --output h1.lwm
            """
    )

    @Argument(help: "Statistics files (.lws) to merge: shards' statistics, or one round's E-steps.")
    var statistics: [String] = []

    @Option(
        help:
            "A sharded mixture fit's round: merge the E-steps given into the next round, or with --calibration and no E-steps, write the model."
    )
    var mixtureRound: String?

    @Option(help: "Held-out in-distribution activations to calibrate the model on.")
    var calibration: String?

    @Option(help: "Array to read from the calibration file.")
    var calibrationKey: String?

    @Option(help: "Class labels of the calibration inputs: calibrate the class posterior p(y | z) on them.")
    var calibrationLabels: String?

    @Option(
        help:
            "Targets of the calibration inputs of a regression model's statistics: they calibrate the predictive distribution and its interval."
    )
    var calibrationTargets: String?

    @Option(
        help:
            "The host model's own prediction of each calibration input (statistics of a regression family): calibrates the disagreement between a host's prediction and the model's."
    )
    var calibrationPredictions: String?

    @Flag(
        name: .customLong("posterior-calibration"),
        inversion: .prefixedNo,
        help: "Calibrate p(y | z) when the calibration inputs carry labels."
    )
    var posteriorCalibration = true

    @Flag(help: "Write the merged statistics (.lws) instead of a model.")
    var statisticsOnly = false

    @Option(help: "Where to write the model, the statistics or the round.")
    var output: String

    func run() throws {
        let start = Date()
        if let mixtureRound {
            try runRound(mixtureRound, start: start)
            return
        }
        guard !statistics.isEmpty else { throw ValidationError("give at least one statistics file") }
        var merged = try userFacing("statistics \(statistics[0])") {
            try StatisticsFile.read(contentsOf: statistics[0])
        }
        for path in statistics.dropFirst() {
            let next = try userFacing("statistics \(path)") { try StatisticsFile.read(contentsOf: path) }
            try userFacing("merging \(path)") { try merged.merge(next) }
        }
        let rows = merged.rowsText
        if statisticsOnly {
            guard calibration == nil, calibrationTargets == nil, calibrationPredictions == nil else {
                throw ValidationError("--statistics-only takes no --calibration")
            }
            try userFacing("writing \(output)") {
                try StatisticsFile.write(merged, to: output, created: ISO8601DateFormatter().string(from: Date()))
            }
            print(
                "wrote \(output): statistics of \(merged.fitSamples) inputs (rows \(rows)) from \(statistics.count) files"
            )
            return
        }
        let cfg = merged.configuration
        let calTargets = try calibrationTargets.map { try Files.targets($0, key: nil) }
        guard calTargets == nil || cfg.fitsTargets else {
            throw ValidationError("--calibration-targets goes with statistics of a regression family")
        }
        let calPredictions = try calibrationPredictions.map { try Files.targets($0, key: nil) }
        guard calPredictions == nil || cfg.fitsTargets else {
            throw ValidationError("--calibration-predictions goes with statistics of a regression family")
        }
        guard calibrationLabels == nil || !cfg.fitsTargets else {
            throw ValidationError(
                "statistics of \(cfg.family) take --calibration-targets; class labels do not go with a regression family"
            )
        }
        if cfg.family == .gmmFull || cfg.family == .gmmDiagonal {
            guard calibration == nil else {
                throw ValidationError(
                    "a mixture is fitted in EM rounds first: merge without --calibration to write round 0, and give --calibration with the finished round (--mixture-round)"
                )
            }
            let round = try userFacing("round 0") { try MixtureRound(statistics: merged) }
            try writeRound(round, start: start)
            print(
                "next: every shard runs `latentwatch fit --activations SHARD --first-index F --mixture-round \(output) --output STEP.lws`, then `latentwatch merge STEP*.lws --mixture-round \(output) --output NEXT`"
            )
            print("finished: false")
            return
        }
        let model = try fitModel(
            calibrationInputs: requiredCalibration(),
            rowsText: rows,
            files: statistics.count,
            start: start
        ) { cal in
            var cfg = cfg
            cfg.calibratePosterior = cfg.calibratePosterior && posteriorCalibration
            try checkCalibrationCount(calTargets, "calibration targets", rows: cal.count)
            try checkCalibrationCount(calPredictions, "calibration predictions", rows: cal.count)
            let model = try LatentModelFitter.fit(
                statistics: merged,
                calibration: cal,
                calibrationTargets: calTargets,
                configuration: cfg,
                created: ISO8601DateFormatter().string(from: Date())
            )
            guard let calPredictions else { return model }
            return try LatentModelFitter.calibrateDisagreement(model, calibration: cal, hostPredictions: calPredictions)
        }
        print("notes: \(model.metadata.notes)")
        if let summary = targetsSummary(model) { print(summary) }
    }

    /// `--mixture-round`: the next round from this round's E-steps, or the model from a finished round.
    func runRound(_ path: String, start: Date) throws {
        guard !statisticsOnly else { throw ValidationError("--mixture-round takes no --statistics-only") }
        guard calibrationTargets == nil, calibrationPredictions == nil else {
            throw ValidationError(
                "--mixture-round takes no --calibration-targets or --calibration-predictions (mixtures take no targets)"
            )
        }
        let round = try userFacing("mixture round \(path)") { try StatisticsFile.readMixtureRound(contentsOf: path) }
        if statistics.isEmpty {
            guard calibration != nil else {
                throw ValidationError(
                    "give the round's E-step files to run the next round, or --calibration to write the model of a finished round"
                )
            }
            let model = try fitModel(
                calibrationInputs: requiredCalibration(),
                rowsText: round.rows.rowsText,
                files: 0,
                start: start
            ) { cal in
                try LatentModelFitter.fit(
                    mixture: round,
                    calibration: cal,
                    created: ISO8601DateFormatter().string(from: Date())
                )
            }
            print("fit notes: \(model.metadata.notes)")
            return
        }
        guard calibration == nil else {
            throw ValidationError(
                "--calibration writes the model of a finished round: give either E-step files or --calibration"
            )
        }
        var merged: MixtureStep?
        for file in statistics {
            let contents = try userFacing("E-step \(file)") { try StatisticsFile.readContents(contentsOf: file) }
            guard case .mixtureStep(let step) = contents else {
                throw ValidationError("\(file) is not an E-step (`latentwatch fit --mixture-round` writes them)")
            }
            if merged == nil {
                merged = step
            } else {
                try userFacing("merging \(file)") { try merged!.merge(step) }
            }
        }
        let next = try userFacing("M-step") { try round.advanced(by: merged!) }
        try writeRound(next, start: start)
        let change = next.logLikelihoods.count >= 2 ? next.logLikelihoods[next.logLikelihoods.count - 2] : nil
        print(
            "round \(next.round): mean log-likelihood \(next.logLikelihoods.last!)"
                + (change.map {
                    String(
                        format: " (change %.3g, tolerance %.3g)",
                        next.logLikelihoods.last! - $0,
                        next.configuration.mixture.tolerance
                    )
                } ?? "")
                + ", converged: \(next.converged)"
        )
        print("finished: \(next.finished)")
    }

    func writeRound(_ round: MixtureRound, start: Date) throws {
        try userFacing("writing \(output)") {
            try StatisticsFile.write(round, to: output, created: ISO8601DateFormatter().string(from: Date()))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "wrote \(output) (\(size) bytes): round \(round.round) of \(round.configuration.family) EM with \(round.configuration.mixture.components) components over \(round.fitSamples) inputs (rows \(round.rows.rowsText)), layer \(round.configuration.layerName), parameters \(round.fingerprint), in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
    }

    /// The calibration activations, which a model needs.
    func requiredCalibration() throws -> FileActivations {
        guard let calibration else {
            throw ValidationError("give --calibration (held-out activations), or --statistics-only")
        }
        return try userFacing("calibration") {
            let f = try TensorFile(path: calibration)
            for w in f.warnings { stderrLine("warning: \(w)") }
            let t = try f.tensor(calibrationKey)
            let labels =
                try calibrationLabels.map { try Files.labels($0, key: nil) } ?? Files.embeddedLabels(f, rows: t.rows)
            return try FileActivations(file: f, key: t.name, labels: labels)
        }
    }

    /// Fits a model, writes it and says what was written.
    func fitModel(
        calibrationInputs cal: FileActivations,
        rowsText: String,
        files: Int,
        start: Date,
        fit: (FileActivations) throws -> LatentModel
    ) throws -> LatentModel {
        let model = try userFacing("fit") { try fit(cal) }
        try userFacing("writing \(output)") {
            try ModelFile.write(model, to: output, options: .init(precision: model.precision))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "wrote \(output) (\(size) bytes): layer \(model.layer), \(model.family) with \(model.componentCount) components in \(model.latentDimension) dimensions, fitted on \(model.metadata.fitSamples) inputs (rows \(rowsText))"
                + (files > 0 ? " from \(files) statistics files" : "")
                + ", calibrated on \(model.metadata.calibrationSamples), in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
        return model
    }
}
