import LatentWatchNumerics

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
    /// Fits a model.
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
        let cfg = configuration
        let shape = source.sampleShape
        if let reason = Preparation.validate(shape: shape, options: cfg.preparation) { throw FitError(reason) }
        if let calibration, calibration.sampleShape.reduce(1, *) != shape.reduce(1, *) {
            throw FitError("calibration activations have shape \(calibration.sampleShape), the fitting data \(shape)")
        }
        let needsLabels = cfg.family != .gmm
        if needsLabels && !source.hasLabels {
            throw FitError("family '\(cfg.family.rawValue)' needs class labels; pass labels or use family gmm")
        }
        let split = SplitAssignment(
            seed: cfg.splitSeed,
            calibrationFraction: calibration == nil ? cfg.calibrationFraction : 0,
            validationFraction: cfg.regularization.shrinkage == .heldOutLikelihood
                ? cfg.regularization.validationFraction : 0
        )

        // Pass 1: statistics of pooled (and normalised) activations.
        let stats = try collectStatistics(
            source,
            configuration: cfg,
            split: split,
            firstIndex: 0,
            progress: progress
        )
        var model = try build(
            from: stats,
            configuration: cfg,
            created: created,
            mixtureData: (source, split),
            progress: progress
        )
        try calibrate(&model, calibration ?? source, carve: calibration == nil ? split : nil, progress: progress)
        return model
    }

    /// Fits a `gda` or `tied` model from statistics gathered (and possibly merged across replicas) with
    /// ``statistics(of:configuration:firstIndex:progress:)``, calibrating on `calibration`. Statistics
    /// merged from shards give the same model as one pass over all the data, up to rounding, when each
    /// shard was given its `firstIndex` in the whole.
    public static func fit(
        statistics: ActivationStatistics,
        calibration: any ActivationSource,
        configuration: FitConfiguration,
        created: String = "1970-01-01T00:00:00Z",
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> LatentModel {
        guard configuration.family != .gmm else {
            throw FitError("a mixture needs passes over the data (EM); fit it with fit(_:calibration:configuration:)")
        }
        try statistics.checkCompatible(with: configuration)
        guard calibration.sampleShape.reduce(1, *) == statistics.inputShape.reduce(1, *) else {
            throw FitError(
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
        try calibrate(&model, calibration, carve: nil, progress: progress)
        return model
    }

    /// Everything after the statistics pass: PCA, densities, background.
    static func build(
        from collected: ActivationStatistics,
        configuration cfg: FitConfiguration,
        created: String,
        mixtureData: (source: any ActivationSource, split: SplitAssignment)?,
        progress: ((FitProgress) -> Void)?
    ) throws -> LatentModel {
        var stats = collected
        guard stats.fitSamples >= 2 else {
            throw FitError("only \(stats.fitSamples) activations left for fitting; need at least 2")
        }
        let shape = stats.inputShape
        let basePrep = Preparation(inputShape: shape, options: cfg.preparation)
        let p = basePrep.pooledDimension

        // PCA.
        var preparation = basePrep
        if cfg.preparation.projection != .none {
            progress?(
                FitProgress(stage: .projection, samples: stats.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
            )
            var all = stats.globalTrain
            all.merge(stats.globalValidation)
            let (proj, variances, k) = try PrincipalComponents.fit(all, projection: cfg.preparation.projection)
            let center = all.mean
            stats.project(onto: proj, k: k, center: center)
            var comps = [Float](repeating: 0, count: k * p)
            for c in 0..<k { for j in 0..<p { comps[c * p + j] = Float(proj[j * k + c]) } }
            preparation = Preparation(
                inputShape: shape,
                options: cfg.preparation,
                projectionMean: center.map { Float($0) },
                projectionComponents: comps,
                projectionVariances: variances
            )
            stats.reservoir = projectReservoir(stats.reservoir, p: p, proj: proj, k: k, center: center)
        }
        let d = preparation.outputDimension

        progress?(
            FitProgress(stage: .regularization, samples: stats.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
        )
        var notes: [String] = []
        let density: any LatentDensity
        switch cfg.family {
        case .gda:
            var comps: [GaussianComponent] = []
            var logPriors: [Double] = []
            let labels = stats.classes.keys.sorted()
            let total = Double(stats.fitSamples)
            for label in labels {
                let (train, val) = stats.classes[label]!
                var merged = train
                merged.merge(val)
                guard merged.weight >= 2 else {
                    throw FitError(
                        "class \(label) has \(Int(merged.weight)) fitting sample(s); every class needs at least 2"
                    )
                }
                let (cov, reg) = try regularizedCovariance(
                    train: train,
                    validation: val,
                    merged: merged,
                    d: d,
                    regularization: cfg.regularization
                )
                comps.append(
                    try component(
                        mean: merged.mean,
                        covariance: cov,
                        regularization: reg,
                        precision: cfg.precision,
                        what: "class \(label)"
                    )
                )
                logPriors.append(log(merged.weight / total))
            }
            notes.append(
                "gda shrinkage per class: "
                    + comps.map { String(format3($0.regularization.shrinkage)) }.joined(separator: ",")
            )
            density = ClassConditionalGaussian(components: comps, logPriors: logPriors, labels: labels)
        case .tied:
            let labels = stats.classes.keys.sorted()
            var pooledTrain = [Double](repeating: 0, count: d * d)
            var pooledAll = [Double](repeating: 0, count: d * d)
            var valMoment = [Double](repeating: 0, count: d * d)
            var nTrain = 0.0
            var nVal = 0.0
            var nAll = 0.0
            var means: [Float] = []
            var logPriors: [Double] = []
            for label in labels {
                let (train, val) = stats.classes[label]!
                var merged = train
                merged.merge(val)
                guard merged.weight >= 1 else { throw FitError("class \(label) has no fitting samples") }
                let st = train.scatterSymmetric
                let sa = merged.scatterSymmetric
                for i in 0..<(d * d) {
                    pooledTrain[i] += st[i]
                    pooledAll[i] += sa[i]
                }
                if val.weight > 0 && train.weight > 0 {
                    let m = CovarianceEstimation.secondMoment(of: val, about: train.mean)
                    for i in 0..<(d * d) { valMoment[i] += m[i] }
                    nVal += val.weight
                }
                nTrain += train.weight
                nAll += merged.weight
                means += merged.mean.map { Float($0) }
                logPriors.append(merged.weight)
            }
            logPriors = logPriors.map { log($0 / nAll) }
            let cTrain = pooledTrain.map { $0 / max(nTrain, 1) }
            let cAll = pooledAll.map { $0 / nAll }
            let (lambda, method) = try chooseShrinkage(
                cfg.regularization,
                train: cTrain,
                all: cAll,
                d: d,
                nAll: nAll,
                validationMoment: nVal > 0 ? valMoment : nil,
                nVal: nVal
            )
            let (cov, reg) = CovarianceEstimation.regularize(
                cAll,
                dimension: d,
                lambda: lambda,
                floorRatio: cfg.regularization.floorRatio,
                ridge: cfg.regularization.ridge,
                method: method
            )
            let shared = try component(
                mean: [Double](repeating: 0, count: d),
                covariance: cov,
                regularization: reg,
                precision: cfg.precision,
                what: "the tied covariance"
            )
            notes.append("tied shrinkage: \(format3(lambda)) (\(method))")
            density = TiedGaussian(means: means, shared: shared, logPriors: logPriors, labels: labels)
        case .gmm:
            guard let mixtureData else { throw FitError("a mixture needs the activations, not only statistics") }
            density = try fitMixture(
                mixtureData.source,
                stats: stats,
                preparation: preparation,
                split: mixtureData.split,
                configuration: cfg,
                notes: &notes,
                progress: progress
            )
        }

        var background: GaussianComponent?
        if cfg.fitBackground {
            var merged = stats.globalTrain
            merged.merge(stats.globalValidation)
            let (cov, reg) = try regularizedCovariance(
                train: stats.globalTrain,
                validation: stats.globalValidation,
                merged: merged,
                d: d,
                regularization: cfg.regularization
            )
            background = try component(
                mean: merged.mean,
                covariance: cov,
                regularization: reg,
                precision: cfg.precision,
                what: "the background Gaussian"
            )
        }

        return LatentModel(
            metadata: ModelMetadata(
                layer: cfg.layerName,
                created: created,
                fitSamples: stats.fitSamples,
                notes: notes.joined(separator: "; ")
            ),
            preparation: preparation,
            density: density,
            background: background,
            calibration: .none
        )
    }

    /// Scores held-out in-distribution activations (all of `source`, or those `carve` assigns to
    /// calibration) and stores the score distributions in the model.
    static func calibrate(
        _ model: inout LatentModel,
        _ source: any ActivationSource,
        carve: SplitAssignment?,
        progress: ((FitProgress) -> Void)?
    ) throws {
        progress?(FitProgress(stage: .calibration, samples: 0, iteration: 0, restart: 0, logLikelihood: 0))
        var collected: [ScoreKind: [Double]] = [:]
        let ws = model.makeWorkspace()
        let n = model.preparation.inputCount
        var index = 0
        try source.forEachBatch { batch in
            for i in 0..<batch.count {
                defer { index += 1 }
                if let carve, !carve.isCalibration(index) { continue }
                let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                let s = try model.score(row, workspace: ws)
                for kind in ScoreKind.allCases {
                    let v = s.value(kind)
                    if v.isFinite { collected[kind, default: []].append(v) }
                }
            }
        }
        var dists: [ScoreKind: EmpiricalDistribution] = [:]
        for (kind, values) in collected where !values.isEmpty { dists[kind] = EmpiricalDistribution(scores: values) }
        model.calibration = Calibration(distributions: dists)
        model.metadata.calibrationSamples = collected[.surprise]?.count ?? 0
        progress?(
            FitProgress(stage: .done, samples: model.metadata.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
        )
    }

    static func format3(_ x: Double) -> String {
        let r = (x * 1e6).rounded() / 1e6
        return "\(r)"
    }

    static func component(
        mean: [Double],
        covariance: [Double],
        regularization: AppliedRegularization,
        precision: Precision,
        what: String
    ) throws -> GaussianComponent {
        do {
            return try GaussianComponent(
                mean: mean,
                covariance: covariance,
                regularization: regularization,
                precision: precision
            )
        } catch {
            throw FitError(
                "could not factorise the covariance of \(what) (\(error)); raise floorRatio or use shrinkage"
            )
        }
    }

    static func chooseShrinkage(
        _ r: Regularization,
        train: [Double],
        all: [Double],
        d: Int,
        nAll: Double,
        validationMoment: [Double]?,
        nVal: Double
    ) throws -> (Double, String) {
        switch r.shrinkage {
        case .fixed(let l):
            guard l >= 0 && l <= 1 else { throw FitError("shrinkage must be in [0, 1], got \(l)") }
            return (l, "fixed")
        case .oracleApproximating:
            return (CovarianceEstimation.oasShrinkage(all, dimension: d, samples: nAll), "oas")
        case .heldOutLikelihood:
            guard let m = validationMoment, nVal >= 1 else {
                return (CovarianceEstimation.oasShrinkage(all, dimension: d, samples: nAll), "oas-fallback")
            }
            let best = try CovarianceEstimation.selectShrinkage(
                train: train,
                dimension: d,
                validationSecondMoment: m,
                validationWeight: nVal,
                floorRatio: r.floorRatio,
                ridge: r.ridge
            )
            return (best.lambda, "held-out")
        }
    }

    /// Regularised covariance of `merged`; lambda chosen on `train` against `validation` when both have data.
    static func regularizedCovariance(
        train: GaussianMoments,
        validation: GaussianMoments,
        merged: GaussianMoments,
        d: Int,
        regularization r: Regularization
    ) throws -> ([Double], AppliedRegularization) {
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
