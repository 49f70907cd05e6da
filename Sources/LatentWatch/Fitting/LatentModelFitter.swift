import LatentWatchNumerics
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Fits a ``LatentModel`` post hoc from recorded activations: sufficient statistics in one pass (mergeable,
/// so data never has to fit in memory), PCA and regularisation from those statistics, EM passes for
/// mixtures, then a calibration pass on held-out in-distribution data.
public enum LatentModelFitter {
    /// Fits a model. Throws ``LatentWatchError`` for a bad configuration, too little data or a covariance that
    /// cannot be factorised, and rethrows what the source throws.
    /// - Parameters:
    ///   - source: in-distribution activations (with labels for `gda` and `tied`).
    ///   - calibration: held-out in-distribution activations; when nil, `configuration.calibrationFraction`
    ///     of `source` is carved off (by a seeded hash of the index) and never used for fitting.
    ///   - configuration: family, preparation, regularisation, precision.
    ///   - created: creation time written into the model (ISO 8601).
    ///   - progress: called as the fit advances.
    public static func fit(
        _ source: some ActivationSource,
        calibration: (any ActivationSource)? = nil,
        configuration: FitConfiguration,
        created: String = "1970-01-01T00:00:00Z",
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> LatentModel {
        ComputeCheck.warnOnce(Logger(label: "latentwatch.fit"))
        let cfg = configuration
        let shape = source.sampleShape
        if let reason = Preparation.validate(shape: shape, options: cfg.preparation) {
            throw LatentWatchError(.invalidConfiguration, reason)
        }
        if let problem = cfg.neighbours?.problem { throw LatentWatchError(.invalidConfiguration, problem) }
        if let calibration, calibration.sampleShape.reduce(1, *) != shape.reduce(1, *) {
            throw LatentWatchError(
                .fitFailed,
                "calibration activations have shape \(calibration.sampleShape), the fitting data \(shape)"
            )
        }
        let family = try cfg.families.family(for: cfg.family)
        if family.needsLabels && !source.hasLabels {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(family.name)' needs class labels",
                remedy: "pass labels, or choose a family that needs none ("
                    + cfg.families.families.filter { !$0.needsLabels }.map(\.name.rawValue).joined(separator: ", ")
                    + ")"
            )
        }
        if family.needsTargets && cfg.binnedTargets == nil {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(family.name)' needs real-valued targets",
                remedy: "fit it with fit(_:targets:calibration:calibrationTargets:configuration:) (CLI: --targets)"
            )
        }
        let split = SplitAssignment(
            seed: cfg.splitSeed,
            calibrationFraction: calibration == nil ? cfg.calibrationFraction : 0,
            validationFraction: cfg.regularization.shrinkage == .heldOutLikelihood
                ? cfg.regularization.validationFraction : 0
        )

        // Pass 1: statistics of pooled (and normalised) activations. A fit that calibrates on nothing keeps no
        // optional neighbour index, so it gathers no sample for one.
        let stats = try collectStatistics(
            source,
            configuration: cfg,
            split: split,
            firstIndex: 0,
            neighbourSample: calibration != nil || split.calibrationFraction > 0 || cfg.neighbours?.required == true,
            progress: progress
        )
        var model = try build(
            from: stats,
            configuration: cfg,
            created: created,
            mixtureData: (source, split),
            calibrationCount: calibration == nil ? stats.calibrationSamples : nil,
            progress: progress
        )
        try calibrate(
            &model,
            calibration ?? source,
            carve: calibration == nil ? split : nil,
            posterior: cfg.calibratePosterior,
            neighbours: cfg.neighbours,
            progress: progress
        )
        return model
    }

    /// Fits a `gda` or `tied` model from statistics gathered (and possibly merged across replicas) with
    /// ``statistics(of:configuration:firstIndex:progress:)``, or a `regression` or `regression-tied` model from
    /// statistics gathered with ``statistics(of:targets:binning:configuration:firstIndex:progress:)``, calibrating
    /// on `calibration` (and for regression models on `calibrationTargets`, one per calibration input: without
    /// them the posterior over bins is not calibrated and the model has no prediction interval). Statistics
    /// merged from shards give the same model as one pass over all the data, up to rounding, when each
    /// shard was given its `firstIndex` in the whole.
    public static func fit(
        statistics: ActivationStatistics,
        calibration: any ActivationSource,
        calibrationTargets: [Double]? = nil,
        configuration: FitConfiguration,
        created: String = "1970-01-01T00:00:00Z",
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> LatentModel {
        ComputeCheck.warnOnce(Logger(label: "latentwatch.fit"))
        let family = try configuration.families.family(for: configuration.family)
        guard !family.needsPasses else {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(family.name)' needs passes over the activations, not only their statistics",
                remedy: MixtureRound.covariance(of: family.name) == nil
                    ? "fit it with fit(_:calibration:configuration:)"
                    : "run EM rounds across the shards from these statistics (MixtureRound), or fit(_:calibration:configuration:)"
            )
        }
        var configuration = configuration
        var calibration = calibration
        if family.needsTargets {
            guard let bins = statistics.configuration.binnedTargets else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "density family '\(family.name)' needs statistics of binned targets; these were gathered for "
                        + "family '\(statistics.configuration.family)' without targets",
                    remedy: "gather them with statistics(of:targets:binning:configuration:firstIndex:progress:)"
                )
            }
            configuration.binnedTargets = bins
            // Calibration rows without targets must not bring class labels (read as bin indices).
            if let calibrationTargets {
                try checkTargets(calibrationTargets, what: "calibration target")
                calibration = TargetLabelledSource(base: calibration, targets: calibrationTargets, bins: bins)
            } else {
                calibration = UnlabelledSource(base: calibration)
            }
        } else if statistics.configuration.binnedTargets != nil || calibrationTargets != nil {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(family.name)' takes class labels; "
                    + (calibrationTargets != nil
                        ? "calibration targets go with a regression family"
                        : "these statistics hold binned regression targets"),
                remedy: "fit a regression family (regression, regression-tied) from statistics of targets"
            )
        }
        try statistics.checkCompatible(with: configuration)
        guard !family.needsLabels || !statistics.classes.isEmpty else {
            throw LatentWatchError(
                .fitFailed,
                "the statistics hold no class: family '\(family.name)' needs labelled activations",
                remedy: "gather the statistics from labelled activations"
            )
        }
        guard calibration.sampleShape.reduce(1, *) == statistics.inputShape.reduce(1, *) else {
            throw LatentWatchError(
                .fitFailed,
                "calibration activations have shape \(calibration.sampleShape), the statistics \(statistics.inputShape)"
            )
        }
        var model = try build(
            from: statistics,
            configuration: configuration,
            created: created,
            mixtureData: nil,
            progress: progress
        )
        try calibrate(
            &model,
            calibration,
            carve: nil,
            posterior: configuration.calibratePosterior,
            neighbours: configuration.neighbours,
            progress: progress
        )
        // Calibration targets of a class family were refused above.
        if let calibrationTargets {
            try calibrateInterval(&model, calibration, targets: calibrationTargets, carve: nil)
        }
        return model
    }

    /// Everything after the statistics pass: PCA, densities, background.
    static func build(
        from collected: ActivationStatistics,
        configuration cfg: FitConfiguration,
        created: String,
        mixtureData: (source: any ActivationSource, split: SplitAssignment)?,
        calibrationCount: Int? = nil,
        progress: ((FitProgress) -> Void)?
    ) throws -> LatentModel {
        var (preparation, stats) = try prepare(collected, configuration: cfg, progress: progress)
        var neighbours: NeighbourIndex?
        var neighbourNote: String?
        if let options = cfg.neighbours {
            if let problem = options.problem { throw LatentWatchError(.invalidConfiguration, problem) }
            switch try neighbourIndex(
                &stats,
                preparation: preparation,
                configuration: cfg,
                options: options,
                calibrationCount: calibrationCount
            ) {
            case .success(let index): neighbours = index
            case .failure(let reason): neighbourNote = "no neighbour index: " + reason.message
            }
        }
        progress?(
            FitProgress(stage: .regularization, samples: stats.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
        )
        let context = DensityFitContext(
            statistics: stats,
            preparation: preparation,
            configuration: cfg,
            data: mixtureData,
            progress: progress
        )
        let family = try cfg.families.family(for: cfg.family)
        if family.needsPasses && mixtureData == nil {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(family.name)' needs the activations, not only statistics"
            )
        }
        let density = try family.fit(context)
        var model = LatentModel(
            metadata: ModelMetadata(
                layer: cfg.layerName,
                created: created,
                fitSamples: stats.fitSamples,
                notes: context.notes.joined(separator: "; ")
            ),
            preparation: preparation,
            density: density,
            background: try background(
                train: stats.globalTrain,
                validation: stats.globalValidation,
                configuration: cfg
            ),
            calibration: .none
        )
        model.neighbours = neighbours
        if let neighbourNote { model.metadata.addNote(neighbourNote) }
        return model
    }

    /// The neighbour index of a fit, from the statistics' reservoir sample of prepared rows (the
    /// ``NeighbourOptions/rows(pooledDimension:)`` rows of smallest key, taken from a copy), or why it cannot be
    /// built: thrown when the options say it is required, returned otherwise (the fit goes on without it). A
    /// `calibrationCount` known before calibrating and below the options' minimum leaves an optional index unbuilt
    /// (``calibrate(_:_:carve:posterior:neighbours:progress:)`` would drop it). Leaves the reservoir as a mixture's
    /// start expects it (its `reservoirSize` rows of smallest key).
    static func neighbourIndex(
        _ stats: inout ActivationStatistics,
        preparation: Preparation,
        configuration cfg: FitConfiguration,
        options: NeighbourOptions,
        calibrationCount: Int?
    ) throws(LatentWatchError) -> Result<NeighbourIndex, LatentWatchError> {
        let d = preparation.outputDimension
        let unavailable: LatentWatchError?
        var index: NeighbourIndex?
        if !options.required, let n = calibrationCount, n < options.minimumCalibrationInputs {
            unavailable = LatentWatchError(.fitFailed, fewCalibrationInputs(n, options))
        } else if stats.reservoirKeys.isEmpty {
            unavailable = LatentWatchError(
                .fitFailed,
                "the statistics keep no sample of fitting rows (a statistics file written before statistics carried "
                    + "one)",
                remedy:
                    "gather the statistics again with this version, fit in one pass, or fit without a neighbour index"
            )
        } else if d > NeighbourIndex.maximumCodeDimension {
            unavailable = LatentWatchError(
                .fitFailed,
                "the neighbour index takes latent dimensions up to \(NeighbourIndex.maximumCodeDimension), this layer's is \(d)",
                remedy: "pool the layer, project it (PCA), or fit without a neighbour index"
            )
        } else {
            var sample = stats
            sample.truncateReservoir(to: options.rows(pooledDimension: preparation.pooledDimension), p: d)
            index = NeighbourIndex.build(
                sample: sample.reservoir,
                count: sample.reservoirKeys.count,
                dimension: d,
                options: options
            )
            unavailable =
                index == nil
                ? LatentWatchError(
                    .fitFailed,
                    "could not build the neighbour index from \(sample.reservoirKeys.count) rows"
                ) : nil
        }
        if cfg.mixtureReservoir > 0 { stats.truncateReservoir(to: cfg.mixtureReservoir, p: d) }
        if let index { return .success(index) }
        let reason = unavailable!
        if options.required { throw reason }
        return .failure(reason)
    }

    /// The preparation the statistics call for (the PCA projection, when configured, fitted on their global
    /// moments), and the statistics carried into its output space, reservoir included.
    static func prepare(
        _ collected: ActivationStatistics,
        configuration cfg: FitConfiguration,
        progress: ((FitProgress) -> Void)?
    ) throws -> (Preparation, ActivationStatistics) {
        var stats = collected
        guard stats.fitSamples >= 2 else {
            throw LatentWatchError(.fitFailed, "only \(stats.fitSamples) activations left for fitting; need at least 2")
        }
        let shape = stats.inputShape
        let preparation = Preparation(inputShape: shape, options: cfg.preparation)
        guard cfg.preparation.projection != .none else { return (preparation, stats) }
        let p = preparation.pooledDimension
        progress?(
            FitProgress(stage: .projection, samples: stats.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
        )
        let all = stats.globalMoments
        let (proj, variances, k) = try PrincipalComponents.fit(all, projection: cfg.preparation.projection)
        let center = all.mean
        stats.project(onto: proj, k: k, center: center)
        var comps = [Float](repeating: 0, count: k * p)
        for c in 0..<k { for j in 0..<p { comps[c * p + j] = Float(proj[j * k + c]) } }
        stats.reservoir = projectReservoir(stats.reservoir, p: p, proj: proj, k: k, center: center)
        return (
            Preparation(
                inputShape: shape,
                options: cfg.preparation,
                projectionMean: center.map { Float($0) },
                projectionComponents: comps,
                projectionVariances: variances
            ),
            stats
        )
    }

    /// The background Gaussian (relative Mahalanobis) from the global moments in the prepared space, when the
    /// configuration asks for one.
    static func background(
        train: GaussianMoments,
        validation: GaussianMoments,
        configuration cfg: FitConfiguration
    ) throws(LatentWatchError) -> GaussianComponent? {
        guard cfg.fitBackground else { return nil }
        var merged = train
        merged.merge(validation)
        let (cov, reg) = try regularizedCovariance(
            train: train,
            validation: validation,
            merged: merged,
            d: merged.dimension,
            regularization: cfg.regularization
        )
        return try component(
            mean: merged.mean,
            covariance: cov,
            regularization: reg,
            precision: cfg.precision,
            what: "the background Gaussian"
        )
    }

    /// Log joints kept for fitting the posterior temperature: at most this many values (rows x classes).
    static let temperatureValueLimit = 2_000_000

    /// Why a model calibrated on `n` inputs keeps no optional neighbour index.
    static func fewCalibrationInputs(_ n: Int, _ options: NeighbourOptions) -> String {
        "\(n) calibration inputs, fewer than the \(options.minimumCalibrationInputs) its combined p-value needs"
    }

    /// Scores held-out in-distribution activations (all of `source`, or those `carve` assigns to
    /// calibration) and stores the score distributions in the model. With `posterior`, labelled inputs and a
    /// density whose components are classes, first fits the posterior temperature on them (from the first
    /// ``temperatureValueLimit`` log joints), so that the entropy scores calibrated next use it.
    static func calibrate(
        _ model: inout LatentModel,
        _ source: any ActivationSource,
        carve: SplitAssignment?,
        posterior: Bool,
        neighbours options: NeighbourOptions?,
        progress: ((FitProgress) -> Void)?
    ) throws {
        progress?(FitProgress(stage: .calibration, samples: 0, iteration: 0, restart: 0, logLikelihood: 0))
        if posterior, source.hasLabels,
            let classLabels = model.density.classLabels ?? model.density.targetBins.map({ Array(0..<$0.count) })
        {
            try fitTemperature(&model, source, carve: carve, classLabels: classLabels)
        }
        var collected: [ScoreKind: [Double]] = [:]
        var pairs: [[Double]] = [[], []]
        try scoreCalibrationInputs(model, source, carve: carve) { s in
            for kind in ScoreKind.allCases {
                let v = s.value(kind)
                if v.isFinite { collected[kind, default: []].append(v) }
            }
            if let n = s.neighbourDistance {
                pairs[0].append(s.surprise)
                pairs[1].append(n)
            }
        }
        let calibrated = collected[.surprise]?.count ?? 0
        if model.neighbours != nil, let options, !options.required, calibrated < options.minimumCalibrationInputs {
            model.neighbours = nil
            collected[.neighbour] = nil
            model.metadata.addNote("no neighbour index: " + fewCalibrationInputs(calibrated, options))
        }
        var dists: [ScoreKind: EmpiricalDistribution] = [:]
        for (kind, values) in collected where !values.isEmpty { dists[kind] = EmpiricalDistribution(scores: values) }
        model.calibration = Calibration(distributions: dists)
        model.epistemicCalibration = nil
        if model.neighbours != nil, let ds = dists[.surprise], let dn = dists[.neighbour] {
            model.epistemicCalibration =
                JointCalibration.make(
                    layers: [model.layer, model.layer],
                    memberChecksums: [0, 0],
                    distributions: [ds, dn],
                    surprises: pairs,
                    statistic: .cauchy
                ).distribution
        }
        model.metadata.calibrationSamples = calibrated
        progress?(
            FitProgress(stage: .done, samples: model.metadata.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
        )
    }

    /// Scores the calibration inputs of `source` (all, or those `carve` assigns to calibration) in order: the
    /// calibration pass, and the joint calibration's check that each layer reproduces it.
    static func scoreCalibrationInputs(
        _ model: LatentModel,
        _ source: any ActivationSource,
        carve: SplitAssignment?,
        _ body: (LatentScores) throws -> Void
    ) throws {
        let ws = model.makeWorkspace()
        let n = model.preparation.inputCount
        var index = 0
        try source.forEachBatch { batch in
            for i in 0..<batch.count {
                defer { index += 1 }
                if let carve, !carve.isCalibration(index) { continue }
                let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                try body(try model.score(row, workspace: ws))
            }
        }
    }

    /// Fits ``LatentModel/posteriorTemperature`` (the calibrated posterior) on the labelled inputs of `source`
    /// that `carve` assigns to calibration (all when nil), and notes it in the fit notes.
    static func fitTemperature(
        _ model: inout LatentModel,
        _ source: any ActivationSource,
        carve: SplitAssignment?,
        classLabels: [Int]
    ) throws {
        let k = classLabels.count
        var component: [Int: Int] = [:]
        for (i, label) in classLabels.enumerated() { component[label] = i }
        let ws = model.makeWorkspace()
        let n = model.preparation.inputCount
        let rowLimit = max(1, temperatureValueLimit / max(k, 1))
        var joints: [Double] = []
        var targets: [Int] = []
        var unknown = 0
        var index = 0
        try source.forEachBatch { batch in
            guard let labels = batch.labels else { return }
            for i in 0..<batch.count {
                defer { index += 1 }
                if let carve, !carve.isCalibration(index) { continue }
                guard targets.count < rowLimit else { return }
                let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                guard let c = component[labels[i]] else {
                    unknown += 1
                    continue
                }
                do { try model.validate(row) } catch { continue }
                joints.append(contentsOf: model.rootDistanceLogits(row, workspace: ws))
                targets.append(c)
            }
        }
        guard let t = PosteriorTemperature.fit(logits: joints, classes: k, labels: targets) else { return }
        model.posteriorTemperature = t
        let note =
            "posterior calibrated on \(targets.count) labelled inputs (root distance, temperature \(format3(t)))"
            + (unknown > 0 ? " (\(unknown) with labels of no class skipped)" : "")
        model.metadata.addNote(note)
    }

    package static func format3(_ x: Double) -> String {
        let r = (x * 1e6).rounded() / 1e6
        return "\(r)"
    }

    package static func component(
        mean: [Double],
        covariance: [Double],
        regularization: AppliedRegularization,
        precision: ElementType,
        what: String
    ) throws(LatentWatchError) -> GaussianComponent {
        do {
            return try GaussianComponent(
                mean: mean,
                covariance: covariance,
                regularization: regularization,
                precision: precision
            )
        } catch {
            throw LatentWatchError(
                .fitFailed,
                "could not factorise the covariance of \(what) (\(error)); raise floorRatio or use shrinkage"
            )
        }
    }

    package static func chooseShrinkage(
        _ r: Regularization,
        train: [Double],
        all: [Double],
        d: Int,
        nAll: Double,
        validationMoment: [Double]?,
        nVal: Double
    ) throws(LatentWatchError) -> (Double, String) {
        switch r.shrinkage {
        case .fixed(let l):
            guard l >= 0 && l <= 1 else { throw LatentWatchError(.fitFailed, "shrinkage must be in [0, 1], got \(l)") }
            return (l, "fixed")
        case .oracleApproximating:
            return (CovarianceEstimation.oasShrinkage(all, dimension: d, samples: nAll), "oas")
        case .heldOutLikelihood:
            guard let m = validationMoment, nVal >= 1 else {
                return (CovarianceEstimation.oasShrinkage(all, dimension: d, samples: nAll), "oas-fallback")
            }
            let best: (lambda: Double, logLikelihood: Double)
            do {
                best = try CovarianceEstimation.selectShrinkage(
                    train: train,
                    dimension: d,
                    validationSecondMoment: m,
                    validationWeight: nVal,
                    floorRatio: r.floorRatio,
                    ridge: r.ridge
                )
            } catch {
                throw LatentWatchError(.fitFailed, "choosing the shrinkage failed (\(error))")
            }
            return (best.lambda, "held-out")
        }
    }

    /// Regularised covariance of `merged`; lambda chosen on `train` against `validation` when both have data.
    package static func regularizedCovariance(
        train: GaussianMoments,
        validation: GaussianMoments,
        merged: GaussianMoments,
        d: Int,
        regularization r: Regularization
    ) throws(LatentWatchError) -> ([Double], AppliedRegularization) {
        let useVal = validation.weight >= 1 && train.weight >= 2
        let all = merged.covariance
        let moment = useVal ? CovarianceEstimation.secondMoment(of: validation, about: train.mean) : nil
        let (lambda, method) = try chooseShrinkage(
            r,
            train: train.covariance,
            all: all,
            d: d,
            nAll: merged.weight,
            validationMoment: moment,
            nVal: validation.weight
        )
        return CovarianceEstimation.regularize(
            all,
            dimension: d,
            lambda: lambda,
            floorRatio: r.floorRatio,
            ridge: r.ridge,
            method: method
        )
    }

    static func projectReservoir(_ r: [Float], p: Int, proj: [Double], k: Int, center: [Double]) -> [Float] {
        let n = r.count / max(p, 1)
        var out = [Float](repeating: 0, count: n * k)
        for i in 0..<n {
            for c in 0..<k {
                var s = 0.0
                for j in 0..<p { s += (Double(r[i * p + j]) - center[j]) * proj[j * k + c] }
                out[i * k + c] = Float(s)
            }
        }
        return out
    }
}
