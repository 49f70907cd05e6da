import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

extension LatentModelFitter {
    /// Fits a Gaussian mixture by EM from a fit's context (its statistics, and passes over its data).
    package static func fitMixture(
        _ ctx: DensityFitContext,
        covariance: GaussianMixture.Covariance
    ) throws(LatentWatchError) -> GaussianMixture {
        guard let (source, split) = ctx.data else {
            throw LatentWatchError(.invalidConfiguration, "a mixture needs the activations, not only statistics")
        }
        let stats = ctx.statistics
        let preparation = ctx.preparation
        let cfg = ctx.configuration
        let progress = ctx.progress
        let d = preparation.outputDimension
        let opts = cfg.mixture
        guard opts.components >= 1 else { throw LatentWatchError(.fitFailed, "a mixture needs at least 1 component") }
        let globalCov = stats.globalMoments.covariance
        let em = expectationMaximization(globalCovariance: globalCov, covariance: covariance, configuration: cfg)
        let pass = preparedPass(source, preparation: preparation, skip: split.isCalibration)
        var best: ExpectationMaximization.Result?
        for restart in 0..<max(1, opts.restarts) {
            let initial: ExpectationMaximization.Parameters
            switch opts.initialization {
            case .explicit(let w, let m, let c):
                let cn = covariance == .full ? opts.components * d * d : opts.components * d
                guard w.count == opts.components, m.count == opts.components * d, c.count == cn else {
                    throw LatentWatchError(
                        .fitFailed,
                        "explicit mixture initialisation has the wrong sizes for \(opts.components) components of dimension \(d)"
                    )
                }
                initial = .init(weights: w, means: m, covariances: c)
            case .kMeansPlusPlus:
                initial = try LatentWatchError.converting(.fitFailed, "k-means++ initialisation") {
                    try em.kMeansInitialization(
                        sample: stats.reservoir,
                        count: stats.reservoir.count / max(d, 1),
                        seed: opts.seed &+ UInt64(restart),
                        globalCovariance: globalCov
                    )
                }
            }
            let result = try LatentWatchError.converting(.fitFailed, "EM") {
                try em.run(
                    from: initial,
                    maxIterations: opts.maxIterations,
                    pass: pass
                ) { it, ll in
                    progress?(
                        FitProgress(
                            stage: .expectationMaximization,
                            samples: stats.fitSamples,
                            iteration: it,
                            restart: restart,
                            logLikelihood: ll
                        )
                    )
                }
            }
            if best == nil || result.lowerBounds.last! > best!.lowerBounds.last! { best = result }
        }
        let r = best!
        ctx.note(
            "em: \(r.iterations) iterations, converged \(r.converged), mean log-likelihood \(r.lowerBounds.last!)"
        )
        return try mixtureDensity(
            r.parameters,
            regularization: r.regularization,
            covariance: covariance,
            precision: cfg.precision
        )
    }

    /// EM's pass over a source: its rows prepared (pooled, normalised, projected), batch by batch, except those
    /// `skip` names by their index (counted from `firstIndex`). With `validate`, a short batch or a non-finite row
    /// throws (sources the statistics pass has not read). `afterBatch` gets the number of rows read so far.
    static func preparedPass(
        _ source: any ActivationSource,
        preparation: Preparation,
        firstIndex: Int = 0,
        skip: ((Int) -> Bool)? = nil,
        validate: Bool = false,
        afterBatch: ((Int) -> Void)? = nil
    ) -> ExpectationMaximization.Pass {
        { body in
            let n = preparation.inputCount
            var index = firstIndex
            var prepared: [Float] = []
            var scratch = [Float](repeating: 0, count: preparation.pooledDimension)
            var z = [Float](repeating: 0, count: preparation.outputDimension)
            try source.forEachBatch { batch in
                if validate, batch.values.count < batch.count * n {
                    throw LatentWatchError(
                        .fitFailed,
                        "a batch holds \(batch.values.count) values for \(batch.count) activations of \(n) elements"
                    )
                }
                prepared.removeAll(keepingCapacity: true)
                var rows = 0
                for i in 0..<batch.count {
                    defer { index += 1 }
                    if let skip, skip(index) { continue }
                    let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                    if validate, let bad = row.firstIndex(where: { !$0.isFinite }) {
                        throw LatentWatchError(
                            .fitFailed,
                            "activation \(index) holds \(row[bad]) at element \(bad - row.startIndex); remove non-finite activations before fitting"
                        )
                    }
                    z.withUnsafeMutableBufferPointer { zb in
                        scratch.withUnsafeMutableBufferPointer { sb in
                            preparation.prepare(row.baseAddress!, into: zb.baseAddress!, scratch: sb.baseAddress!)
                        }
                    }
                    prepared += z
                    rows += 1
                }
                if rows > 0 { try prepared.withUnsafeBufferPointer { try body($0, rows) } }
                afterBatch?(index - firstIndex)
            }
        }
    }

    /// The EM engine of a mixture fit whose prepared data have covariance `globalCovariance` (D x D).
    static func expectationMaximization(
        globalCovariance: [Double],
        covariance: GaussianMixture.Covariance,
        configuration cfg: FitConfiguration
    ) -> ExpectationMaximization {
        let d = Int(Double(globalCovariance.count).squareRoot().rounded())
        return ExpectationMaximization(
            dimension: d,
            components: cfg.mixture.components,
            covariance: covariance,
            regularization: cfg.mixtureRegularization,
            averageVariance: max(LinearAlgebra.trace(globalCovariance, n: d) / Double(max(d, 1)), 0),
            tolerance: cfg.mixture.tolerance
        )
    }

    /// The mixture density of EM's final parameters.
    static func mixtureDensity(
        _ p: ExpectationMaximization.Parameters,
        regularization: [AppliedRegularization],
        covariance: GaussianMixture.Covariance,
        precision: ElementType
    ) throws(LatentWatchError) -> GaussianMixture {
        let kk = p.weights.count
        let d = p.means.count / max(kk, 1)
        let logWeights = p.weights.map { log($0) }
        switch covariance {
        case .full:
            var comps: [GaussianComponent] = []
            for k in 0..<kk {
                comps.append(
                    try component(
                        mean: Array(p.means[(k * d)..<((k + 1) * d)]),
                        covariance: Array(p.covariances[(k * d * d)..<((k + 1) * d * d)]),
                        regularization: regularization[k],
                        precision: precision,
                        what: "mixture component \(k)"
                    )
                )
            }
            return GaussianMixture(components: .full(comps), logWeights: logWeights, dimension: d)
        case .diagonal:
            var norms: [Double] = []
            var inv: [Float] = []
            for k in 0..<kk {
                var logDet = 0.0
                for j in 0..<d {
                    let v = p.covariances[k * d + j]
                    logDet += log(v)
                    inv.append(Float(1 / v.squareRoot()))
                }
                norms.append(-0.5 * (Double(d) * log(2 * Double.pi) + logDet))
            }
            return GaussianMixture(
                components: .diagonal(
                    means: p.means.map { Float($0) },
                    inverseStd: inv,
                    logNormalizers: norms,
                    regularization: regularization
                ),
                logWeights: logWeights,
                dimension: d
            )
        }
    }
}
