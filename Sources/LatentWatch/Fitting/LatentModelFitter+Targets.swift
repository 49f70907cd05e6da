import Logging

extension LatentModelFitter {
    /// Fits a model of a regression model's layer (families `regression` and `regression-tied`): the real-valued
    /// targets are cut into quantile bins (``FitConfiguration/targetBinCount``) on the fitting inputs, a density
    /// over the bins is fitted as class Gaussians are, and the calibration inputs calibrate the posterior over bins
    /// (on their targets), the surprise, the predictive spread, and the prediction interval
    /// (``LatentModel/predictionInterval(_:level:)``).
    /// - Parameters:
    ///   - source: in-distribution activations.
    ///   - targets: one finite target per activation of `source`.
    ///   - calibration: held-out in-distribution activations; when nil, `configuration.calibrationFraction` of
    ///     `source` is carved off.
    ///   - calibrationTargets: one target per calibration activation; without them the posterior over bins is
    ///     not calibrated and the model has no prediction interval (the surprise and spread are still calibrated).
    ///   - configuration: its family must be a regression family.
    ///   - created: creation time written into the model (ISO 8601).
    ///   - progress: called as the fit advances.
    public static func fit(
        _ source: some ActivationSource,
        targets: [Double],
        calibration: (any ActivationSource)? = nil,
        calibrationTargets: [Double]? = nil,
        configuration: FitConfiguration,
        created: String = "1970-01-01T00:00:00Z",
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> LatentModel {
        var cfg = configuration
        try checkTargets(targets, what: "target")
        if let calibrationTargets {
            guard calibration != nil else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "calibration targets were given without calibration activations",
                    remedy: "pass the calibration activations too, or drop the calibration targets (the carved "
                        + "calibration inputs use their own targets)"
                )
            }
            try checkTargets(calibrationTargets, what: "calibration target")
        }
        let split = SplitAssignment(
            seed: cfg.splitSeed,
            calibrationFraction: calibration == nil ? cfg.calibrationFraction : 0,
            validationFraction: 0
        )
        let fitting = targets.indices.filter { !split.isCalibration($0) }.map { targets[$0] }
        let bins = try targetBins(of: fitting, configuration: cfg)
        cfg.binnedTargets = bins
        let labelled = TargetLabelledSource(base: source, targets: targets, bins: bins)
        // Calibration rows without targets must not bring class labels: the posterior over bins would read them
        // as bin indices.
        let labelledCalibration: (any ActivationSource)? = calibration.map { cal -> any ActivationSource in
            if let calibrationTargets {
                return TargetLabelledSource(base: cal, targets: calibrationTargets, bins: bins)
            }
            return UnlabelledSource(base: cal)
        }
        var model = try fit(
            labelled,
            calibration: labelledCalibration,
            configuration: cfg,
            created: created,
            progress: progress
        )
        if calibration == nil {
            try calibrateInterval(&model, source, targets: targets, carve: split)
        } else if let calibration, let calibrationTargets {
            try calibrateInterval(&model, calibration, targets: calibrationTargets, carve: nil)
        }
        return model
    }

    /// Gathers one shard's statistics for a regression model's layer (families `regression` and
    /// `regression-tied`), to merge with the other shards' (``ActivationStatistics/merge(_:)``) and fit with
    /// ``fit(statistics:calibration:calibrationTargets:configuration:created:progress:)``. The target bins are cut
    /// at the quantiles of `binning`, the fitting targets of the whole data set (every shard's, in any order;
    /// one number per input, so cheap to hand to every shard), so all shards bin alike; the shard's own `targets`
    /// then label its activations by bin. The merged statistics give the model one process fits from all the
    /// activations with an explicit calibration set, up to rounding.
    /// - Parameters:
    ///   - source: this shard's activations.
    ///   - targets: one finite target per activation of `source`.
    ///   - binning: the whole data set's fitting targets.
    ///   - configuration: its family must be a regression family.
    ///   - firstIndex: the index of the shard's first activation in the whole data set.
    ///   - progress: called as the pass advances.
    public static func statistics(
        of source: some ActivationSource,
        targets: [Double],
        binning: [Double],
        configuration: FitConfiguration,
        firstIndex: Int = 0,
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> ActivationStatistics {
        var cfg = configuration
        try checkTargets(binning, what: "binning target")
        let bins = try targetBins(of: binning, configuration: cfg)
        try checkTargets(targets, what: "target")
        cfg.binnedTargets = bins
        return try statistics(
            of: TargetLabelledSource(base: source, targets: targets, bins: bins),
            configuration: cfg,
            firstIndex: firstIndex,
            progress: progress
        )
    }

    /// The quantile bins of `targets` (already checked finite) for a regression family's configuration; throws for
    /// other families, a bin count outside 1...1000 and fewer than two targets.
    static func targetBins(of targets: [Double], configuration cfg: FitConfiguration) throws -> TargetBins {
        let family = try cfg.families.family(for: cfg.family)
        guard family.needsTargets else {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(family.name)' does not take real-valued targets",
                remedy: "choose a regression family ("
                    + cfg.families.families.filter(\.needsTargets).map(\.name.rawValue).joined(separator: ", ")
                    + "), or pass class labels to fit(_:calibration:configuration:)"
            )
        }
        guard (1...1_000).contains(cfg.targetBinCount) else {
            throw LatentWatchError(
                .invalidConfiguration,
                "targetBinCount is \(cfg.targetBinCount); it must be in 1...1000"
            )
        }
        guard let bins = TargetBins.quantiles(of: targets, bins: cfg.targetBinCount) else {
            throw LatentWatchError(
                .fitFailed,
                "only \(targets.count) fitting targets; a regression density needs at least 2"
            )
        }
        return bins
    }

    /// Refuses non-finite targets with the first one's index.
    static func checkTargets(_ targets: [Double], what: String) throws(LatentWatchError) {
        if let i = targets.firstIndex(where: { !$0.isFinite }) {
            throw LatentWatchError(
                .nonFinite,
                "\(what) \(i) is \(targets[i]); targets must be finite",
                remedy: "drop or repair the inputs with missing targets"
            )
        }
    }

    /// The model with its disagreement calibrated: the calibration of ``ScoreKind/disagreement``, the distances
    /// |host prediction - prediction| between the host model's own prediction of each calibration input's target
    /// and the regression model's prediction from its activation. A monitor given the host's prediction of each
    /// input (``ModelOutputKind/prediction``) then computes the same distance and its conformal p-value
    /// (``Assessment/disagreementPValue``), and raises ``Assessment/Flags/disagreement`` and a
    /// ``Alert/Kind/disagreement`` alert at ``AlertPolicy/disagreementAlpha``: a host prediction far from what
    /// the latent density predicts is evidence that the host's error is large (Docs/Evaluation.md measures how
    /// well it ranks the host's errors). Composes with every fit: the one-process, sharded and command-line fits,
    /// and a model read from a file (whose other parts it keeps).
    /// - Parameters:
    ///   - model: a regression model (families `regression`, `regression-tied`).
    ///   - calibration: held-out in-distribution activations, best the ones the model was calibrated on; rows
    ///     that cannot be scored (NaN) are skipped, as the other calibrations skip them.
    ///   - hostPredictions: the host model's prediction for each calibration activation, in the targets' units
    ///     (rounded to float32, as a monitor receives them).
    /// - Throws: ``LatentWatchError`` for a model that is not a regression model, non-finite predictions, or a
    ///   count different from the calibration rows'.
    public static func calibrateDisagreement(
        _ model: LatentModel,
        calibration: any ActivationSource,
        hostPredictions: [Double]
    ) throws -> LatentModel {
        guard model.density.targetBins != nil else {
            throw LatentWatchError(
                .invalidConfiguration,
                "model of family '\(model.family)' does not predict a target; the disagreement with the host's "
                    + "prediction is calibrated for regression models",
                remedy: "fit the layer with a regression family (regression, regression-tied) and its targets"
            )
        }
        try checkTargets(hostPredictions, what: "host prediction")
        var distances: [Double] = []
        distances.reserveCapacity(hostPredictions.count)
        let rows = try forEachPrediction(model, calibration, carve: nil) { index, _, y in
            // At the precision a monitor receives it (outputs are float32), so that calibration and assessment
            // compute the same distance.
            if index < hostPredictions.count { distances.append(abs(Double(Float(hostPredictions[index])) - y)) }
        }
        guard rows == hostPredictions.count else {
            throw LatentWatchError(
                .shapeMismatch,
                "\(hostPredictions.count) host predictions for \(rows) calibration activations",
                remedy: "give the host's prediction of every calibration activation, in order"
            )
        }
        guard !distances.isEmpty else {
            throw LatentWatchError(.fitFailed, "no calibration activation could be scored")
        }
        var out = model
        var dists = model.calibration.distributions
        dists[.disagreement] = EmpiricalDistribution(scores: distances)
        out.calibration = Calibration(distributions: dists)
        // No longer the content of the file it may have been read from.
        out.fingerprint = nil
        return out
    }

    /// Scores the rows of `source` in order (those `carve` assigns to calibration, or all) and hands each one that
    /// scores with a prediction to `body` with its row index; rows that cannot be scored (NaN) are skipped.
    /// Returns the number of rows read.
    @discardableResult
    static func forEachPrediction(
        _ model: LatentModel,
        _ source: any ActivationSource,
        carve: SplitAssignment?,
        _ body: (_ index: Int, _ scores: LatentScores, _ prediction: Double) throws -> Void
    ) throws -> Int {
        var index = 0
        let ws = model.makeWorkspace()
        let n = model.preparation.inputCount
        try source.forEachBatch { batch in
            for i in 0..<batch.count {
                defer { index += 1 }
                if let carve, !carve.isCalibration(index) { continue }
                let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                guard let s = try? model.score(row, workspace: ws), let y = s.prediction else { continue }
                try body(index, s, y)
            }
        }
        return index
    }

    /// The stand-in for an infinite normalised residual (a calibration input of zero spread whose prediction
    /// missed its target): calibration distributions keep finite values only.
    package static let infiniteResidual = Double(Float.greatestFiniteMagnitude)

    /// Stores in the model the calibration of its prediction interval: the normalised residuals
    /// |y - prediction| / spread of the calibration inputs (all of `source`, or those `carve` assigns to
    /// calibration). An input of zero spread counts as 0 when its prediction is exact and as
    /// ``infiniteResidual`` otherwise, so that every calibration input stays exchangeable with a new one.
    static func calibrateInterval(
        _ model: inout LatentModel,
        _ source: any ActivationSource,
        targets: [Double],
        carve: SplitAssignment?
    ) throws {
        guard model.density.targetBins != nil else { return }
        var residuals: [Double] = []
        try forEachPrediction(model, source, carve: carve) { index, s, y in
            guard index < targets.count, let spread = s.predictiveSpread else { return }
            let error = abs(targets[index] - y)
            residuals.append(
                spread > 0 ? min(error / spread, infiniteResidual) : (error == 0 ? 0 : infiniteResidual)
            )
        }
        guard !residuals.isEmpty else { return }
        model.intervalCalibration = EmpiricalDistribution(scores: residuals)
    }
}

/// Activations with a regression target per row, handed to the fit with each target's bin as its label.
struct TargetLabelledSource: ActivationSource {
    let base: any ActivationSource
    let labels: [Int]

    init(base: any ActivationSource, targets: [Double], bins: TargetBins) {
        self.base = base
        self.labels = targets.map { bins.bin(of: $0) }
    }

    var sampleShape: [Int] { base.sampleShape }
    var hasLabels: Bool { true }

    func forEachBatch(_ body: (ActivationBatch) throws -> Void) throws {
        var start = 0
        try base.forEachBatch { batch in
            guard start + batch.count <= labels.count else {
                throw LatentWatchError(
                    .shapeMismatch,
                    "\(labels.count) targets for more activations than that",
                    remedy: "give one target per activation"
                )
            }
            try labels.withUnsafeBufferPointer { l in
                try body(
                    ActivationBatch(
                        values: batch.values,
                        count: batch.count,
                        labels: UnsafeBufferPointer(rebasing: l[start..<(start + batch.count)])
                    )
                )
            }
            start += batch.count
        }
        guard start == labels.count else {
            throw LatentWatchError(
                .shapeMismatch,
                "\(labels.count) targets for \(start) activations",
                remedy: "give one target per activation"
            )
        }
    }
}

/// Activations with their labels hidden.
struct UnlabelledSource: ActivationSource {
    let base: any ActivationSource

    var sampleShape: [Int] { base.sampleShape }
    var hasLabels: Bool { false }

    func forEachBatch(_ body: (ActivationBatch) throws -> Void) throws {
        try base.forEachBatch { batch in
            try body(ActivationBatch(values: batch.values, count: batch.count, labels: nil))
        }
    }
}
