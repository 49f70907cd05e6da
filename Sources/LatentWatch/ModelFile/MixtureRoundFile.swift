import Foundation
import LatentWatchNumerics

/// The files of a sharded mixture fit (Docs/ModelFormat.md, "Mixture rounds"): a round (``MixtureRound``) and an
/// E-step (``MixtureStep``), in the statistics file's container with metadata of their own.
extension StatisticsFile {
    /// The metadata's `format` of a round file.
    static let roundFormat = "latentwatch-mixture-round"
    /// The metadata's `format` of an E-step file.
    static let stepFormat = "latentwatch-mixture-step"
    /// The layouts of round and E-step metadata this library writes and reads.
    static let roundVersion = 1
    static let stepVersion = 1

    struct RoundMetadata: Codable {
        var format: String
        var roundVersion: Int
        var libraryVersion: String
        var created: String
        var layer: String
        var inputShape: [Int]
        /// D, the dimension of the prepared activations EM runs on.
        var dimension: Int
        var configuration: Metadata.Configuration
        var rows: [[Int]]
        var samples: Int
        var round: Int
        var converged: Bool
        var logLikelihoods: [Double]
        var fingerprint: String
        /// Sections of the PCA projection (absent without one): mean (P), components (D x P), variances (D).
        var projection: [Int]?
        /// The global moments of the prepared activations: training and validation parts.
        var global: [Metadata.Moments]
        /// Sections of the parameters: weights (K), means (K x D), covariances (K x D x D, or K x D).
        var parameters: [Int]
        var regularization: [AppliedRegularization]

        enum CodingKeys: String, CodingKey {
            case format
            case roundVersion = "round_version"
            case libraryVersion = "library_version"
            case created, layer
            case inputShape = "input_shape"
            case dimension, configuration, rows, samples, round, converged
            case logLikelihoods = "log_likelihoods"
            case fingerprint, projection, global, parameters, regularization
        }
    }

    struct StepMetadata: Codable {
        var format: String
        var stepVersion: Int
        var libraryVersion: String
        var created: String
        var layer: String
        var dimension: Int
        var round: Int
        var fingerprint: String
        var rows: [[Int]]
        var samples: Int
        var logLikelihoodSum: Double
        /// One set of moments per component (`label` the component's index, `part` "component").
        var components: [Metadata.Moments]

        enum CodingKeys: String, CodingKey {
            case format
            case stepVersion = "step_version"
            case libraryVersion = "library_version"
            case created, layer, dimension, round, fingerprint, rows, samples
            case logLikelihoodSum = "log_likelihood_sum"
            case components
        }
    }

    // MARK: Writing

    /// Encodes a mixture round into file bytes.
    public static func encode(
        _ r: MixtureRound,
        created: String = "1970-01-01T00:00:00Z",
        compressionLevel: Int32 = 3
    ) throws(LatentWatchError) -> [UInt8] {
        var payloads = Payloads()
        var projection: [Int]?
        let prep = r.preparation
        if let mean = prep.projectionMean, let comps = prep.projectionComponents, let vars = prep.projectionVariances {
            projection = [
                payloads.add(mean.map { Double($0) }), payloads.add(comps.map { Double($0) }), payloads.add(vars),
            ]
        }
        let global = [
            payloads.add(r.globalTrain, label: nil, part: "train"),
            payloads.add(r.globalValidation, label: nil, part: "validation"),
        ]
        let p = r.parameters
        let parameters = [payloads.add(p.weights), payloads.add(p.means), payloads.add(p.covariances)]
        let meta = RoundMetadata(
            format: roundFormat,
            roundVersion: roundVersion,
            libraryVersion: LatentWatchVersion.string,
            created: created,
            layer: r.configuration.layerName,
            inputShape: r.inputShape,
            dimension: prep.outputDimension,
            configuration: configurationJSON(r.configuration),
            rows: r.rows.map { [$0.lowerBound, $0.upperBound] },
            samples: r.fitSamples,
            round: r.round,
            converged: r.converged,
            logLikelihoods: r.logLikelihoods,
            fingerprint: r.fingerprint,
            projection: projection,
            global: global,
            parameters: parameters,
            regularization: r.regularization
        )
        return try payloads.container(metadata: meta, level: compressionLevel)
    }

    /// Encodes an E-step into file bytes.
    public static func encode(
        _ e: MixtureStep,
        created: String = "1970-01-01T00:00:00Z",
        compressionLevel: Int32 = 3
    ) throws(LatentWatchError) -> [UInt8] {
        var payloads = Payloads()
        let components = e.expectation.moments.enumerated().map { k, m in
            payloads.add(m, label: k, part: "component")
        }
        let meta = StepMetadata(
            format: stepFormat,
            stepVersion: stepVersion,
            libraryVersion: LatentWatchVersion.string,
            created: created,
            layer: e.layer,
            dimension: e.expectation.moments.first?.dimension ?? 0,
            round: e.round,
            fingerprint: e.fingerprint,
            rows: e.rows.map { [$0.lowerBound, $0.upperBound] },
            samples: e.samples,
            logLikelihoodSum: e.expectation.logLikelihoodSum,
            components: components
        )
        return try payloads.container(metadata: meta, level: compressionLevel)
    }

    /// Encodes any statistics file's contents into file bytes.
    public static func encode(
        _ c: Contents,
        created: String = "1970-01-01T00:00:00Z",
        compressionLevel: Int32 = 3
    ) throws(LatentWatchError) -> [UInt8] {
        switch c {
        case .statistics(let s): try encode(s, created: created, compressionLevel: compressionLevel)
        case .mixtureRound(let r): try encode(r, created: created, compressionLevel: compressionLevel)
        case .mixtureStep(let e): try encode(e, created: created, compressionLevel: compressionLevel)
        }
    }

    /// Writes any statistics file's contents atomically (temporary file, then rename).
    public static func write(
        _ c: Contents,
        to path: String,
        created: String = "1970-01-01T00:00:00Z"
    ) throws(LatentWatchError) {
        try ModelFile.writeFile(try encode(c, created: created), to: path, what: "the statistics file")
    }

    /// Writes a mixture round atomically (temporary file, then rename).
    public static func write(
        _ r: MixtureRound,
        to path: String,
        created: String = "1970-01-01T00:00:00Z"
    ) throws(LatentWatchError) {
        try write(.mixtureRound(r), to: path, created: created)
    }

    /// Writes an E-step atomically (temporary file, then rename).
    public static func write(
        _ e: MixtureStep,
        to path: String,
        created: String = "1970-01-01T00:00:00Z"
    ) throws(LatentWatchError) {
        try write(.mixtureStep(e), to: path, created: created)
    }

    // MARK: Reading

    static func decodeRound(
        _ json: Data,
        _ payloads: [Int: [UInt8]],
        fileSize: Int
    ) throws(LatentWatchError) -> MixtureRound {
        let meta: RoundMetadata = try metadata(
            json,
            format: roundFormat,
            version: { $0.roundVersion },
            readable: roundVersion
        )
        let cfg = try configuration(meta.configuration, layer: meta.layer)
        guard let covariance = MixtureRound.covariance(of: cfg.family) else {
            throw corrupt("a mixture round of family '\(cfg.family)'")
        }
        let p = try pooledDimension(meta.inputShape, cfg, dimension: nil)
        let d = meta.dimension
        let kk = cfg.mixture.components
        guard d >= 1, d <= p else { throw corrupt("EM runs in \(d) dimensions; the activations pool to \(p)") }
        let covarianceCount = covariance == .full ? kk * d * d : kk * d
        // The E-step holds K D x D moments, and a full mixture's scorer K factors besides.
        try checkSize(sets: 2 + (covariance == .full ? 2 * kk : kk), dimension: d, extra: 8 * d * p, fileSize: fileSize)
        let rows = try rowRanges(meta.rows, samples: meta.samples)
        guard meta.round >= 0, meta.round <= cfg.mixture.maxIterations, meta.logLikelihoods.count == meta.round,
            meta.logLikelihoods.allSatisfy(\.isFinite), meta.regularization.count == (meta.round == 0 ? 0 : kk),
            meta.samples >= kk, !meta.converged || meta.round >= 1
        else {
            throw corrupt(
                "round \(meta.round) with \(meta.logLikelihoods.count) log-likelihoods and \(meta.regularization.count) regularisations for \(kk) components and \(meta.samples) samples"
            )
        }
        var preparation = Preparation(inputShape: meta.inputShape, options: cfg.preparation)
        switch (cfg.preparation.projection, meta.projection) {
        case (.none, nil):
            guard d == p else { throw corrupt("EM runs in \(d) dimensions without a projection of \(p)") }
        case (.none, _?): throw corrupt("a projection the configuration does not have")
        case (_, nil): throw corrupt("the projection is missing")
        case (_, let sections?):
            guard sections.count == 3 else { throw corrupt("the projection has \(sections.count) sections") }
            let mean = try doubles(payloads, sections[0], count: p)
            let components = try doubles(payloads, sections[1], count: d * p)
            // Written from float32 values: anything beyond float32's range is damage.
            guard (mean + components).allSatisfy({ abs($0) <= Double(Float.greatestFiniteMagnitude) }) else {
                throw corrupt("the projection holds values beyond float32's range")
            }
            preparation = Preparation(
                inputShape: meta.inputShape,
                options: cfg.preparation,
                projectionMean: mean.map { Float($0) },
                projectionComponents: components.map { Float($0) },
                projectionVariances: try doubles(payloads, sections[2], count: d)
            )
        }
        guard meta.global.count == 2, meta.global[0].part == "train", meta.global[1].part == "validation",
            meta.parameters.count == 3
        else { throw corrupt("the round's global moments or parameters are incomplete") }
        let train = try moments(meta.global[0], payloads, dimension: d, samples: meta.samples)
        let validation = try moments(meta.global[1], payloads, dimension: d, samples: meta.samples)
        guard train.count + validation.count == meta.samples else {
            throw corrupt("the global moments count \(train.count + validation.count) inputs, the file \(meta.samples)")
        }
        let parameters = ExpectationMaximization.Parameters(
            weights: try doubles(payloads, meta.parameters[0], count: kk),
            means: try doubles(payloads, meta.parameters[1], count: kk * d),
            covariances: try doubles(payloads, meta.parameters[2], count: covarianceCount)
        )
        guard parameters.weights.allSatisfy({ $0 > 0 && $0 <= 1 }),
            abs(parameters.weights.reduce(0, +) - 1) < 1e-6
        else {
            throw corrupt("the mixture weights are not positive and summing to 1")
        }
        guard covariance == .full || parameters.covariances.allSatisfy({ $0 > 0 }) else {
            throw corrupt("a diagonal mixture variance is not positive")
        }
        let round = MixtureRound(
            inputShape: meta.inputShape,
            configuration: cfg,
            rows: rows,
            fitSamples: meta.samples,
            round: meta.round,
            logLikelihoods: meta.logLikelihoods,
            converged: meta.converged,
            covariance: covariance,
            preparation: preparation,
            globalTrain: train,
            globalValidation: validation,
            parameters: parameters,
            regularization: meta.regularization
        )
        guard round.fingerprint == meta.fingerprint else {
            throw corrupt("the parameters' fingerprint is \(round.fingerprint), the file says \(meta.fingerprint)")
        }
        return round
    }

    static func decodeStep(
        _ json: Data,
        _ payloads: [Int: [UInt8]],
        fileSize: Int
    ) throws(LatentWatchError) -> MixtureStep {
        let meta: StepMetadata = try metadata(
            json,
            format: stepFormat,
            version: { $0.stepVersion },
            readable: stepVersion
        )
        let d = meta.dimension
        guard d >= 1, d <= 1 << 14, meta.components.count >= 1, meta.components.count <= 4096, meta.round >= 0,
            meta.round < 1_000_000, meta.logLikelihoodSum.isFinite, meta.fingerprint.count == 8
        else {
            throw corrupt(
                "an E-step of \(meta.components.count) components in \(d) dimensions, round \(meta.round), log-likelihood \(meta.logLikelihoodSum)"
            )
        }
        try checkSize(sets: meta.components.count, dimension: d, extra: 0, fileSize: fileSize)
        let rows = try rowRanges(meta.rows, samples: meta.samples)
        var moments: [GaussianMoments] = []
        for (k, m) in meta.components.enumerated() {
            guard m.label == k, m.part == "component" else { throw corrupt("E-step component \(k) is out of order") }
            moments.append(try self.moments(m, payloads, dimension: d, samples: meta.samples))
        }
        return MixtureStep(
            layer: meta.layer,
            round: meta.round,
            fingerprint: meta.fingerprint,
            rows: rows,
            expectation: .init(
                moments: moments,
                logLikelihoodSum: meta.logLikelihoodSum,
                total: Double(meta.samples)
            )
        )
    }
}

extension StatisticsFile {
    /// Reads a mixture round file; refuses other statistics files with what they are.
    public static func readMixtureRound(contentsOf path: String) throws(LatentWatchError) -> MixtureRound {
        switch try readContents(contentsOf: path) {
        case .mixtureRound(let r): return r
        case .statistics:
            throw LatentWatchError(
                .malformedMetadata,
                "this is a shard's statistics, not a mixture round",
                remedy: "merge the shards' statistics into round 0 first (`latentwatch merge`)"
            )
        case .mixtureStep:
            throw LatentWatchError(
                .malformedMetadata,
                "this is an E-step, not a mixture round",
                remedy: "pass the round file `latentwatch merge` wrote"
            )
        }
    }
}
