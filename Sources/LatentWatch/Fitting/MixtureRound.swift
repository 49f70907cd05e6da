import LatentWatchNumerics

/// A Gaussian mixture fit (`gmm-full` or `gmm-diag`) sharded across processes, between two EM rounds.
///
/// One EM iteration over data split into shards is one round: every shard computes its E-step against the
/// round's parameters (``expectation(of:firstIndex:progress:)``, a ``MixtureStep``); the steps merge (they are sums
/// of weighted moments), and ``advanced(by:)`` runs the M-step and EM's stopping rule into the next round. When
/// the round is ``finished``, ``LatentModelFitter/fit(mixture:calibration:created:progress:)`` builds and calibrates
/// the model. Round 0 starts from the shards' merged ``ActivationStatistics`` (``init(statistics:progress:)``): the
/// PCA projection, and the k-means++ start on their reservoir sample, which is the sample one pass would keep.
/// With every shard given its first index in the whole data set, the rounds repeat the iterations of
/// ``LatentModelFitter/fit(_:calibration:configuration:created:progress:)`` over all the data up to rounding.
public struct MixtureRound: Sendable {
    /// Shape of one raw activation.
    public let inputShape: [Int]
    /// The fit options (from the statistics).
    public let configuration: FitConfiguration
    /// The rows of the whole data set the fit covers; every round's merged steps must cover exactly these.
    public let rows: [Range<Int>]
    /// Activations fitted on.
    public let fitSamples: Int
    /// EM iterations done (0: the k-means++ start).
    public let round: Int
    /// The mean log-likelihood of the data at each iteration's E-step.
    public let logLikelihoods: [Double]
    /// The mean log-likelihood changed by less than the tolerance at the last round.
    public let converged: Bool
    let covariance: GaussianMixture.Covariance
    /// The preparation (pooling, normalisation, PCA) every shard applies before the E-step.
    let preparation: Preparation
    /// Global moments of the prepared data (training and validation parts), for the background Gaussian.
    let globalTrain: GaussianMoments
    let globalValidation: GaussianMoments
    /// Mixture parameters after the last M-step (or the start).
    let parameters: ExpectationMaximization.Parameters
    let regularization: [AppliedRegularization]

    /// EM is done: converged, or the configuration's iteration limit reached.
    public var finished: Bool { converged || round >= max(1, configuration.mixture.maxIterations) }

    /// Identifies this round's parameters (8 hex digits): a step computed against another round is refused.
    public var fingerprint: String {
        var crc = CRC32.checksum(ByteCoding.bytes(of: [Int64(round)]))
        for v in [parameters.weights, parameters.means, parameters.covariances] {
            crc = CRC32.checksum(ByteCoding.bytes(of: v), continuing: crc)
        }
        let hex = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The mixture's covariance structure for a family name, or nil for a family that is not a Gaussian mixture.
    static func covariance(of family: DensityFamilyName) -> GaussianMixture.Covariance? {
        switch family {
        case .gmmFull: return .full
        case .gmmDiagonal: return .diagonal
        default: return nil
        }
    }

    /// Round 0 from the merged statistics of every shard (``LatentModelFitter/statistics(of:configuration:firstIndex:progress:)``
    /// with a `gmm-full` or `gmm-diag` configuration): the preparation, and the k-means++ start on the reservoir
    /// sample. Throws for statistics of another family, for more than one restart, and when k-means++ fails.
    public init(statistics: ActivationStatistics, progress: ((FitProgress) -> Void)? = nil) throws {
        let cfg = statistics.configuration
        guard let covariance = Self.covariance(of: cfg.family) else {
            throw LatentWatchError(
                .invalidConfiguration,
                "EM rounds fit gmm-full and gmm-diag; these statistics are for '\(cfg.family)'",
                remedy: "merge gda and tied statistics straight into a model"
            )
        }
        guard cfg.mixture.restarts <= 1, cfg.mixture.initialization == .kMeansPlusPlus else {
            throw LatentWatchError(
                .invalidConfiguration,
                "a sharded mixture fit runs one start; the configuration asks for \(cfg.mixture.restarts) restarts",
                remedy: "set restarts to 1, or run one sharded fit per seed and keep the best final log-likelihood"
            )
        }
        guard cfg.mixture.components >= 1, cfg.mixture.maxIterations >= 1 else {
            throw LatentWatchError(
                .invalidConfiguration,
                "a mixture needs at least 1 component and 1 iteration; the configuration has \(cfg.mixture.components) and \(cfg.mixture.maxIterations)"
            )
        }
        guard statistics.fitSamples >= cfg.mixture.components else {
            throw LatentWatchError(
                .fitFailed,
                "a \(cfg.mixture.components)-component mixture needs at least as many activations; the statistics hold \(statistics.fitSamples)"
            )
        }
        let (preparation, prepared) = try LatentModelFitter.prepare(statistics, configuration: cfg, progress: progress)
        var stats = prepared
        let d = preparation.outputDimension
        // The statistics may hold a larger sample for a neighbour index; the start takes the mixture's share.
        stats.truncateReservoir(to: cfg.mixture.reservoirSize, p: d)
        let globalCovariance = stats.globalMoments.covariance
        let em = LatentModelFitter.expectationMaximization(
            globalCovariance: globalCovariance,
            covariance: covariance,
            configuration: cfg
        )
        let start = try LatentWatchError.converting(.fitFailed, "k-means++ initialisation") {
            try em.kMeansInitialization(
                sample: stats.reservoir,
                count: stats.reservoir.count / max(d, 1),
                seed: cfg.mixture.seed,
                globalCovariance: globalCovariance
            )
        }
        self.init(
            inputShape: statistics.inputShape,
            configuration: cfg,
            rows: statistics.rows,
            fitSamples: statistics.fitSamples,
            round: 0,
            logLikelihoods: [],
            converged: false,
            covariance: covariance,
            preparation: preparation,
            globalTrain: stats.globalTrain,
            globalValidation: stats.globalValidation,
            parameters: start,
            regularization: []
        )
    }

    init(
        inputShape: [Int],
        configuration: FitConfiguration,
        rows: [Range<Int>],
        fitSamples: Int,
        round: Int,
        logLikelihoods: [Double],
        converged: Bool,
        covariance: GaussianMixture.Covariance,
        preparation: Preparation,
        globalTrain: GaussianMoments,
        globalValidation: GaussianMoments,
        parameters: ExpectationMaximization.Parameters,
        regularization: [AppliedRegularization]
    ) {
        self.inputShape = inputShape
        self.configuration = configuration
        self.rows = rows
        self.fitSamples = fitSamples
        self.round = round
        self.logLikelihoods = logLikelihoods
        self.converged = converged
        self.covariance = covariance
        self.preparation = preparation
        self.globalTrain = globalTrain
        self.globalValidation = globalValidation
        self.parameters = parameters
        self.regularization = regularization
    }

    var engine: ExpectationMaximization {
        var all = globalTrain
        all.merge(globalValidation)
        return LatentModelFitter.expectationMaximization(
            globalCovariance: all.covariance,
            covariance: covariance,
            configuration: configuration
        )
    }

    /// The E-step of one shard against this round's parameters. `firstIndex` is the index of the shard's first
    /// activation in the whole data set, as given to its statistics. Throws when the round is finished, for
    /// activations of another shape, and for non-finite activations.
    public func expectation(
        of source: some ActivationSource,
        firstIndex: Int = 0,
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> MixtureStep {
        guard !finished else {
            throw LatentWatchError(
                .invalidConfiguration,
                "EM is finished after \(round) rounds (converged: \(converged))",
                remedy: "fit the model from this round (`latentwatch merge --mixture-round ... --calibration ...`)"
            )
        }
        guard source.sampleShape.reduce(1, *) == inputShape.reduce(1, *) else {
            throw LatentWatchError(
                .fitFailed,
                "the activations have shape \(source.sampleShape), the mixture fit \(inputShape)"
            )
        }
        guard firstIndex >= 0, firstIndex <= 1 << 62 else {
            throw LatentWatchError(.invalidConfiguration, "the first index \(firstIndex) is outside 0...2^62")
        }
        let pass = LatentModelFitter.preparedPass(
            source,
            preparation: preparation,
            firstIndex: firstIndex,
            validate: true
        ) { read in
            progress?(
                FitProgress(
                    stage: .expectationMaximization,
                    samples: read,
                    iteration: round + 1,
                    restart: 0,
                    logLikelihood: logLikelihoods.last ?? 0
                )
            )
        }
        let e = try LatentWatchError.converting(.fitFailed, "EM") { try engine.expectation(parameters, pass: pass) }
        return MixtureStep(
            layer: configuration.layerName,
            round: round,
            fingerprint: fingerprint,
            rows: e.total > 0 ? [firstIndex..<(firstIndex + Int(e.total))] : [],
            expectation: e
        )
    }

    /// The next round: the M-step on the merged steps of every shard, and EM's stopping rule. Throws when the
    /// steps belong to another round or do not cover exactly this fit's rows (a shard missing or counted
    /// twice), and when EM diverges.
    public func advanced(by step: MixtureStep) throws -> MixtureRound {
        guard !finished else {
            throw LatentWatchError(
                .invalidConfiguration,
                "EM is finished after \(round) rounds (converged: \(converged))",
                remedy: "fit the model from this round"
            )
        }
        guard step.round == round, step.fingerprint == fingerprint else {
            throw LatentWatchError(
                .fitFailed,
                "the E-step was computed against round \(step.round) (parameters \(step.fingerprint)); this is round \(round) (parameters \(fingerprint))",
                remedy: "compute every shard's E-step against this round's file"
            )
        }
        guard step.rows == rows else {
            throw LatentWatchError(
                .fitFailed,
                "the E-steps cover rows \(step.rows.map(\.description).joined(separator: ", ")); the fit covers \(rows.map(\.description).joined(separator: ", "))",
                remedy: "merge the E-step of every shard, each once"
            )
        }
        let d = preparation.outputDimension
        let e = step.expectation
        guard e.moments.count == configuration.mixture.components, e.moments.allSatisfy({ $0.dimension == d }),
            e.total == Double(fitSamples), e.moments.allSatisfy({ $0.count <= fitSamples }),
            abs(e.moments.reduce(0, { $0 + $1.weight }) - e.total) <= 1e-6 * max(1, e.total)
        else {
            throw LatentWatchError(
                .fitFailed,
                "the E-steps hold \(e.moments.count) components of dimension \(e.moments.first?.dimension ?? 0) weighing \(e.moments.reduce(0, { $0 + $1.weight })) over \(e.total) rows; this round has \(configuration.mixture.components) of dimension \(d) over \(fitSamples)",
                remedy: "compute every shard's E-step against this round's file"
            )
        }
        let next = try LatentWatchError.converting(.fitFailed, "EM") {
            try engine.maximize(step.expectation, previous: logLikelihoods.last ?? -Double.infinity)
        }
        let p = next.parameters
        guard p.weights.allSatisfy({ $0.isFinite && $0 > 0 }), p.means.allSatisfy(\.isFinite),
            p.covariances.allSatisfy(\.isFinite)
        else {
            throw LatentWatchError(
                .fitFailed,
                "the M-step gave non-finite or zero-weight parameters",
                remedy: "raise the mixture regularisation, or fewer components"
            )
        }
        return MixtureRound(
            inputShape: inputShape,
            configuration: configuration,
            rows: rows,
            fitSamples: fitSamples,
            round: round + 1,
            logLikelihoods: logLikelihoods + [next.logLikelihood],
            converged: next.converged,
            covariance: covariance,
            preparation: preparation,
            globalTrain: globalTrain,
            globalValidation: globalValidation,
            parameters: next.parameters,
            regularization: next.regularization
        )
    }
}

/// One EM round's E-step over one shard or several merged (``MixtureRound/expectation(of:firstIndex:progress:)``):
/// per-component moments weighted by the responsibilities and the sum of the rows' log-likelihoods.
public struct MixtureStep: Sendable {
    /// The layer of the fit.
    public let layer: String
    /// The round whose parameters the step was computed against.
    public let round: Int
    /// That round's ``MixtureRound/fingerprint``.
    public let fingerprint: String
    /// The rows of the whole data set the step covers.
    public private(set) var rows: [Range<Int>]
    var expectation: ExpectationMaximization.Expectation

    /// Rows the step covers.
    public var samples: Int { rows.reduce(0) { $0 + $1.count } }

    /// The sum over the rows covered of log p(z) under the round's parameters.
    public var logLikelihoodSum: Double { expectation.logLikelihoodSum }

    init(
        layer: String,
        round: Int,
        fingerprint: String,
        rows: [Range<Int>],
        expectation: ExpectationMaximization.Expectation
    ) {
        self.layer = layer
        self.round = round
        self.fingerprint = fingerprint
        self.rows = rows
        self.expectation = expectation
    }

    /// The same moments labelled as a step of `round` over all its rows: for the fuzzer, so that a decoded step
    /// reaches ``MixtureRound/advanced(by:)``'s checks.
    package func relabelled(for round: MixtureRound) -> MixtureStep {
        MixtureStep(
            layer: round.configuration.layerName,
            round: round.round,
            fingerprint: round.fingerprint,
            rows: round.rows,
            expectation: expectation
        )
    }

    /// Adds another shard's step of the same round. Refuses a step of another round or layer, and rows counted
    /// twice.
    public mutating func merge(_ other: MixtureStep) throws {
        guard other.round == round, other.fingerprint == fingerprint, other.layer == layer,
            other.expectation.moments.count == expectation.moments.count,
            zip(other.expectation.moments, expectation.moments).allSatisfy({ $0.dimension == $1.dimension })
        else {
            throw LatentWatchError(
                .fitFailed,
                "E-steps of layer '\(other.layer)' round \(other.round) (parameters \(other.fingerprint)) and of layer '\(layer)' round \(round) (parameters \(fingerprint)) do not merge",
                remedy: "merge the steps every shard computed against the same round file"
            )
        }
        let combined = try ActivationStatistics.joined(rows, other.rows)
        for k in expectation.moments.indices { expectation.moments[k].merge(other.expectation.moments[k]) }
        expectation.logLikelihoodSum += other.expectation.logLikelihoodSum
        expectation.total += other.expectation.total
        rows = combined
    }
}

extension LatentModelFitter {
    /// Builds the mixture model of a finished sharded EM fit (``MixtureRound``) and calibrates it on
    /// `calibration`, as ``fit(_:calibration:configuration:created:progress:)`` would from all the shards'
    /// activations in one process.
    public static func fit(
        mixture: MixtureRound,
        calibration: any ActivationSource,
        created: String = "1970-01-01T00:00:00Z",
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> LatentModel {
        guard mixture.finished else {
            throw LatentWatchError(
                .fitFailed,
                "EM has run \(mixture.round) rounds of at most \(mixture.configuration.mixture.maxIterations) and not converged",
                remedy: "run more rounds (E-step on every shard, then merge), until the round is finished"
            )
        }
        guard calibration.sampleShape.reduce(1, *) == mixture.inputShape.reduce(1, *) else {
            throw LatentWatchError(
                .fitFailed,
                "calibration activations have shape \(calibration.sampleShape), the mixture fit \(mixture.inputShape)"
            )
        }
        let cfg = mixture.configuration
        let density = try mixtureDensity(
            mixture.parameters,
            regularization: mixture.regularization,
            covariance: mixture.covariance,
            precision: cfg.precision
        )
        var model = LatentModel(
            metadata: ModelMetadata(
                layer: cfg.layerName,
                created: created,
                fitSamples: mixture.fitSamples,
                notes:
                    "em: \(mixture.round) iterations, converged \(mixture.converged), mean log-likelihood \(mixture.logLikelihoods.last ?? .nan)"
                    + "; no neighbour index: a sharded mixture fit keeps none"
            ),
            preparation: mixture.preparation,
            density: density,
            background: try background(
                train: mixture.globalTrain,
                validation: mixture.globalValidation,
                configuration: cfg
            ),
            calibration: .none
        )
        try calibrate(
            &model,
            calibration,
            carve: nil,
            posterior: cfg.calibratePosterior,
            neighbours: nil,
            progress: progress
        )
        return model
    }
}
