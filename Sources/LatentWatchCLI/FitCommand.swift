import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchNumerics

/// `latentwatch fit`: fits a density to recorded activations and writes a model file.
struct FitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Fit a density to in-distribution activations and write a model file.",
        discussion: """
            Reads .npy, .npz, safetensors or LatentWatch recordings (recognised by content). Activations are \
            [inputs, features...]; labels are one integer per input. Files are read in batches, never whole.
            Example: latentwatch fit --activations train_h1.npy --labels train_labels.npy \
            --calibration calibration_h1.npy --family gda --output h1.lwm
            Sharded: each shard writes its statistics with --statistics-only and --first-index (the index of its \
            first input in the whole data set); `latentwatch merge` turns them into a model (gda, tied) or into \
            round 0 of EM (gmm-full, gmm-diag). Each EM round, every shard writes its E-step against the round's \
            file with --mixture-round, and `latentwatch merge --mixture-round` writes the next round \
            (Docs/Operations.md, "Sharded fitting").
            """
    )

    @Option(help: "In-distribution activations to fit on.")
    var activations: String

    @Option(
        help: "Array to read when the activation file holds several (npz member, safetensors tensor, recorded layer)."
    )
    var key: String?

    @Option(
        help:
            "Class labels, one per input (needed by gda and tied). Default: an integer array named 'labels' in the activation file."
    )
    var labels: String?

    @Option(help: "Array holding the labels in the labels file.")
    var labelsKey: String?

    @Option(
        help:
            "A regression model's real-valued targets, one per input (families regression and regression-tied; the default family with --targets is regression)."
    )
    var targets: String?

    @Option(help: "Array holding the targets in the targets file (default: its only array, or one named 'targets').")
    var targetsKey: String?

    @Option(
        help:
            "Targets of the calibration inputs (with --calibration): they calibrate the predictive distribution and its interval."
    )
    var calibrationTargets: String?

    @Option(
        help:
            "The host model's own prediction of each calibration input's target (with --calibration and a regression family): calibrates the p-value of the distance between a host's prediction and the model's, which a monitor given the host's predictions alerts on."
    )
    var calibrationPredictions: String?

    @Option(help: "Quantile bins the targets are cut into (regression families).")
    var targetBins: Int = 10

    @Option(
        help:
            "With --statistics-only and --targets: the whole data set's fitting targets (every shard's), on whose quantiles the bins are cut, so all shards bin alike."
    )
    var binningTargets: String?

    @Option(help: "Held-out in-distribution activations for calibration. Default: a seeded 20% of --activations.")
    var calibration: String?

    @Option(help: "Array to read from the calibration file (default: --key).")
    var calibrationKey: String?

    @Option(
        help:
            "Class labels of the calibration inputs: the posterior p(y | z) is calibrated on them (gda, tied). Default: an integer array named 'labels' in the calibration file; with the default split, the labels of the carved inputs."
    )
    var calibrationLabels: String?

    @Flag(
        inversion: .prefixedNo,
        help:
            "Calibrate the posterior p(y | z) on labelled calibration inputs (the default; Docs/Statistics.md). Off: Bayes' posterior on the density."
    )
    var posteriorCalibration = true

    @Option(help: ArgumentHelp("Density family: \(DensityFamilyName.helpText).", valueName: "family"))
    var family: DensityFamilyName?

    @Option(help: "Mixture components (gmm).")
    var components: Int = 8

    @Option(help: "EM iteration cap per restart (gmm).")
    var maxIterations: Int = 100

    @Option(help: "EM restarts (gmm); the best log-likelihood wins.")
    var restarts: Int = 1

    @Option(help: "Seed for the calibration split and the EM initialisation.")
    var seed: UInt64 = 0

    @Option(help: "Pooling of each activation: flatten, global-average ([C,H,W] -> C), mean-tokens ([T,C] -> C).")
    var pooling: PreparationOptions.Pooling = .flatten

    @Flag(
        inversion: .prefixedNo,
        help: "L2-normalise each pooled activation (the default; Docs/Evaluation.md has the evidence)."
    )
    var l2 = true

    @Option(
        help: ArgumentHelp(
            "The neighbour index: at most this many fitting rows (one-byte codes, 1 byte per value, at most 16 MiB), or off. The model's p-value combines the surprise's with the distance to the nearest row's (Docs/Statistics.md). By default 32,768 rows, left out (with a note) where the fit cannot keep one or calibrates on fewer than 1,000 inputs; a number given here makes it required.",
            valueName: "rows|off"
        )
    )
    var neighbours: NeighboursArgument?

    @Option(help: "PCA: keep this many components (0: none).")
    var pca: Int = 0

    @Option(help: "PCA: keep the components explaining this fraction of variance (overrides --pca).")
    var pcaVariance: Double?

    @Option(help: "Covariance shrinkage: held-out (chosen by held-out likelihood), oas, or a fixed lambda in [0, 1].")
    var regularization: ShrinkageArgument = ShrinkageArgument(argument: "held-out")!

    @Option(help: "Stored parameter precision: float32 (f32) or float16 (f16, half the size).")
    var precision: ElementType = .float32

    @Option(help: "Layer name stored in the model (default: the array's name).")
    var layer: String?

    @Option(help: "Where to write the model file (with --statistics-only: the statistics file).")
    var output: String

    @Flag(
        help:
            "Write this shard's mergeable statistics (a .lws file for `latentwatch merge`) instead of a model (gda, tied, gmm-full, gmm-diag; regression and regression-tied with --binning-targets)."
    )
    var statisticsOnly = false

    @Option(
        help:
            "With --statistics-only or --mixture-round: index of this shard's first input in the whole data set, so the validation split and the reservoir sample are those of one pass."
    )
    var firstIndex: Int = 0

    @Option(
        help:
            "A sharded mixture fit's round file (from `latentwatch merge`): write this shard's E-step against it instead of a model. The fit options come from the round."
    )
    var mixtureRound: String?

    func run() throws {
        let file = try userFacing("activations") { try TensorFile(path: activations) }
        for w in file.warnings { stderrLine("warning: \(w)") }
        let tensor = try userFacing("activations") { try file.tensor(key) }
        if let mixtureRound {
            try writeExpectation(file, key: tensor.name, round: mixtureRound)
            return
        }
        let family = self.family ?? (targets == nil ? .gda : .regression)
        let familyInfo = DensityFamilyRegistry.standard.family(named: family.rawValue)
        let targetValues = try targets.map { try Files.targets($0, key: targetsKey, keyOption: "--targets-key") }
        if familyInfo?.needsTargets == true {
            guard targetValues != nil else { throw ValidationError("--family \(family) needs --targets") }
            guard labels == nil, calibrationLabels == nil else {
                throw ValidationError("--family \(family) takes --targets, not --labels")
            }
            guard (1...1000).contains(targetBins) else { throw ValidationError("--target-bins must be in 1...1000") }
            guard statisticsOnly == (binningTargets != nil) else {
                throw ValidationError(
                    statisticsOnly
                        ? "--statistics-only of --family \(family) needs --binning-targets (all the shards' targets), so every shard cuts the same bins"
                        : "--binning-targets goes with --statistics-only"
                )
            }
        } else if targetValues != nil || calibrationTargets != nil || binningTargets != nil
            || calibrationPredictions != nil
        {
            throw ValidationError(
                "--targets, --calibration-targets, --calibration-predictions and --binning-targets go with a regression family (--family regression or regression-tied)"
            )
        }
        if let targetValues, targetValues.count != tensor.rows {
            throw ValidationError("\(targetValues.count) targets for \(tensor.rows) activations in \(activations)")
        }
        var labelValues: [Int]? = nil
        if let labels {
            labelValues = try Files.labels(labels, key: labelsKey)
        } else if targetValues == nil {
            labelValues = Files.embeddedLabels(file, rows: tensor.rows)
        }
        var cfg = FitConfiguration(family: family, layerName: layer ?? tensor.name)
        cfg.targetBinCount = targetBins
        if let f = familyInfo, f.needsLabels, labelValues == nil {
            let unsupervised = DensityFamilyRegistry.standard.families.filter { !$0.needsLabels }.map(\.name.rawValue)
            throw ValidationError(
                "--family \(family) needs --labels (or use --family \(unsupervised.joined(separator: " or ")))"
            )
        }
        cfg.mixture.components = components
        cfg.mixture.maxIterations = maxIterations
        cfg.mixture.restarts = restarts
        cfg.mixture.seed = seed
        cfg.splitSeed = seed
        cfg.preparation.pooling = pooling
        cfg.preparation.l2Normalize = l2
        if let v = pcaVariance {
            guard v > 0, v <= 1 else { throw ValidationError("--pca-variance must be in (0, 1]") }
            cfg.preparation.projection = .varianceFraction(v)
        } else if pca > 0 {
            cfg.preparation.projection = .components(pca)
        }
        cfg.regularization.shrinkage = regularization.value
        cfg.precision = precision
        if let neighbours {
            cfg.neighbours = neighbours.rows.map { NeighbourOptions(sampleSize: $0, required: true) }
        }
        let source = try userFacing("activations") {
            try FileActivations(file: file, key: tensor.name, labels: labelValues)
        }
        var calSource: FileActivations? = nil
        if let calibration {
            calSource = try userFacing("calibration") {
                let f = try TensorFile(path: calibration)
                for w in f.warnings { stderrLine("warning: \(w)") }
                let calTensor = try f.tensor(
                    calibrationKey ?? (f.tensors.contains { $0.name == tensor.name } ? tensor.name : nil)
                )
                let calLabels =
                    try calibrationLabels.map { try Files.labels($0, key: nil) }
                    ?? Files.embeddedLabels(f, rows: calTensor.rows)
                return try FileActivations(file: f, key: calTensor.name, labels: calLabels)
            }
        } else if calibrationLabels != nil {
            throw ValidationError("--calibration-labels needs --calibration (the default split uses --labels)")
        } else if calibrationTargets != nil {
            throw ValidationError("--calibration-targets needs --calibration (the default split uses --targets)")
        } else if calibrationPredictions != nil {
            throw ValidationError("--calibration-predictions needs --calibration")
        }
        let calTargetValues = try calibrationTargets.map { try Files.targets($0, key: nil) }
        let calPredictionValues = try calibrationPredictions.map { try Files.targets($0, key: nil) }
        if let calSource {
            try checkCalibrationCount(calTargetValues, "calibration targets", rows: calSource.count)
            try checkCalibrationCount(calPredictionValues, "calibration predictions", rows: calSource.count)
        }
        if statisticsOnly && calibrationPredictions != nil {
            throw ValidationError("--calibration-predictions goes with a fit, not --statistics-only")
        }
        cfg.calibratePosterior = posteriorCalibration
        let progress = ProgressPrinter()
        let start = Date()
        if statisticsOnly {
            try writeStatistics(source, targets: targetValues, configuration: cfg, start: start)
            return
        }
        let report: (FitProgress) -> Void = { p in
            switch p.stage {
            case .expectationMaximization:
                progress.update(
                    String(
                        format: "EM restart %d iteration %d/%d, mean log-likelihood %.4f",
                        p.restart + 1,
                        p.iteration,
                        maxIterations,
                        p.logLikelihood
                    ),
                    force: !progress.terminal && p.iteration == 1
                )
            case .statistics, .calibration:
                let frac = Double(p.samples) / Double(max(1, source.count))
                let elapsed = Date().timeIntervalSince(start)
                let eta = frac > 0.05 && frac < 1 ? String(format: ", ETA %.0fs", elapsed / frac * (1 - frac)) : ""
                progress.update("\(p.stage.rawValue): \(p.samples) inputs read\(eta)")
            default:
                progress.update(p.stage.rawValue, force: true)
            }
        }
        let created = ISO8601DateFormatter().string(from: Date())
        var model = try userFacing("fit") {
            if let targetValues {
                return try LatentModelFitter.fit(
                    source,
                    targets: targetValues,
                    calibration: calSource,
                    calibrationTargets: calTargetValues,
                    configuration: cfg,
                    created: created,
                    progress: report
                )
            }
            return try LatentModelFitter.fit(
                source,
                calibration: calSource,
                configuration: cfg,
                created: created,
                progress: report
            )
        }
        if let calPredictionValues, let calSource {
            model = try userFacing("calibrating the disagreement") {
                try LatentModelFitter.calibrateDisagreement(
                    model,
                    calibration: calSource,
                    hostPredictions: calPredictionValues
                )
            }
        }
        progress.finish()
        try userFacing("writing \(output)") {
            try ModelFile.write(model, to: output, options: .init(precision: model.precision))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "wrote \(output) (\(size) bytes): layer \(model.layer), \(model.family) with \(model.componentCount) components in \(model.latentDimension) dimensions, fitted on \(model.metadata.fitSamples) inputs, calibrated on \(model.metadata.calibrationSamples), in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
        print("notes: \(model.metadata.notes)")
        if model.hasNeighbourIndex {
            print(
                "neighbour index: \(model.neighbourCount) fitting rows; p-values combine surprise and neighbour distance"
            )
        } else if cfg.neighbours != nil {
            print("neighbour index: none (the notes say why)")
        }
        if let summary = targetsSummary(model) { print(summary) }
    }

    /// `--statistics-only`: gathers this shard's statistics and writes them.
    func writeStatistics(
        _ source: FileActivations,
        targets: [Double]?,
        configuration cfg: FitConfiguration,
        start: Date
    ) throws {
        guard [.gda, .tied, .gmmFull, .gmmDiagonal, .regression, .regressionTied].contains(cfg.family) else {
            throw ValidationError(
                "--statistics-only supports --family gda, tied, gmm-full, gmm-diag, regression and regression-tied"
            )
        }
        let mixture = cfg.family == .gmmFull || cfg.family == .gmmDiagonal
        guard !mixture || restarts == 1 else {
            throw ValidationError(
                "a sharded mixture fit runs one start: --restarts must be 1 (run one sharded fit per --seed to compare starts)"
            )
        }
        guard !mixture || (components >= 1 && maxIterations >= 1) else {
            throw ValidationError("--components and --max-iterations must be at least 1")
        }
        guard calibration == nil, calibrationLabels == nil, calibrationTargets == nil else {
            throw ValidationError(
                "--statistics-only takes no --calibration: give the calibration inputs to `latentwatch merge`"
            )
        }
        guard firstIndex >= 0 else { throw ValidationError("--first-index must be at least 0") }
        let stats = try userFacing("statistics") {
            if let targets, let binningTargets {
                return try LatentModelFitter.statistics(
                    of: source,
                    targets: targets,
                    binning: try Files.targets(binningTargets, key: nil),
                    configuration: cfg,
                    firstIndex: firstIndex
                )
            }
            return try LatentModelFitter.statistics(of: source, configuration: cfg, firstIndex: firstIndex)
        }
        try userFacing("writing \(output)") {
            try StatisticsFile.write(stats, to: output, created: ISO8601DateFormatter().string(from: Date()))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "wrote \(output) (\(size) bytes): statistics of \(stats.fitSamples) inputs (rows \(stats.rowsText)), layer \(cfg.layerName), \(cfg.family), in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
    }

    /// `--mixture-round`: this shard's E-step against a round of a sharded mixture fit.
    func writeExpectation(_ file: TensorFile, key: String, round path: String) throws {
        guard !statisticsOnly, calibration == nil, labels == nil else {
            throw ValidationError("--mixture-round takes no --statistics-only, --calibration or --labels")
        }
        guard firstIndex >= 0 else { throw ValidationError("--first-index must be at least 0") }
        let start = Date()
        let round = try userFacing("mixture round \(path)") { try StatisticsFile.readMixtureRound(contentsOf: path) }
        let source = try userFacing("activations") { try FileActivations(file: file, key: key, labels: nil) }
        let step = try userFacing("E-step") { try round.expectation(of: source, firstIndex: firstIndex) }
        try userFacing("writing \(output)") {
            try StatisticsFile.write(step, to: output, created: ISO8601DateFormatter().string(from: Date()))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "wrote \(output) (\(size) bytes): E-step against round \(round.round) over \(step.samples) inputs (rows \(step.rows.rowsText)), layer \(round.configuration.layerName), in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
    }
}
