import LatentWatchNumerics

/// Descriptive metadata stored with a model.
package struct ModelMetadata: Sendable, Equatable, Codable {
    /// Name of the monitored layer.
    package var layer: String
    /// Library version that wrote the model.
    package var libraryVersion: String
    /// Creation time, ISO 8601 (UTC).
    package var created: String
    /// Samples the density was fitted on.
    package var fitSamples: Int
    /// Samples the calibration used.
    package var calibrationSamples: Int
    /// Free-form notes from the fit (regularisation choices, EM convergence).
    package var notes: String

    /// Creates metadata.
    package init(
        layer: String,
        libraryVersion: String = LatentWatchVersion.string,
        created: String,
        fitSamples: Int = 0,
        calibrationSamples: Int = 0,
        notes: String = ""
    ) {
        self.layer = layer
        self.libraryVersion = libraryVersion
        self.created = created
        self.fitSamples = fitSamples
        self.calibrationSamples = calibrationSamples
        self.notes = notes
    }

    enum CodingKeys: String, CodingKey {
        case layer
        case libraryVersion = "library_version"
        case created
        case fitSamples = "fit_samples"
        case calibrationSamples = "calibration_samples"
        case notes
    }

    /// Appends a note to ``notes``, separated from those before by "; ".
    package mutating func addNote(_ note: String) {
        notes += (notes.isEmpty ? "" : "; ") + note
    }
}

/// A fitted model of one layer's activations: preparation, density, optional background Gaussian and
/// calibration. Immutable and `Sendable`; score from many threads with one ``ScoringWorkspace`` each.
public struct LatentModel: Sendable {
    /// Descriptive metadata (layer, library version, creation time, sample counts, fitting notes).
    package var metadata: ModelMetadata
    /// Raw activation -> latent vector.
    package let preparation: Preparation
    /// The fitted density.
    package let density: any LatentDensity
    /// Gaussian fitted on all data, for relative Mahalanobis.
    package let background: GaussianComponent?
    /// Score distributions on held-out in-distribution data.
    package var calibration: Calibration
    /// The model file's identity: the CRC-32 its trailer stores over everything before it, the same for every
    /// copy of the file and different for any other file. Nil for a model fitted in this process and not
    /// read back from a file.
    public package(set) var fingerprint: UInt32?
    /// The temperature T of the calibrated class posterior, or nil for Bayes' rule on the density,
    /// p(y | z) = p(z, y) / p(z). Class Gaussians in tens or hundreds of dimensions make Bayes' posterior almost
    /// always one-hot (entropies of 1e-50 nats), so a fit with labelled calibration inputs replaces it by
    /// p_T(y | z) = softmax_y(-sqrt(q_y(z)) / T), where q_y(z) = -2 log p(z, y) - min_k c_k is the class's squared
    /// Mahalanobis distance plus its log-determinant and log-prior terms c_y relative to the smallest of them,
    /// and T minimises the Brier score on the calibration inputs (``PosteriorTemperature``). The square
    /// root puts the classes' chi-square-like distances on one scale whatever the dimension. Entropy, the
    /// predicted class's probability and ``ScoringWorkspace/posterior`` come from it; neither the surprise nor
    /// the predicted class changes (the map is increasing in log p(z, y)). Nil for mixtures, whose components
    /// are not classes, and for fits without calibration labels.
    public package(set) var posteriorTemperature: Double?
    /// The calibration of the fused p-value of this model's layer together with other layers calibrated on the
    /// same inputs (``LatentModelFitter/calibrateJointly(_:calibration:carve:statistic:)``), or nil. A monitor of
    /// exactly those layers fuses their p-values with it (``PValueFusion/automatic``).
    public package(set) var jointCalibration: JointCalibration?
    /// A regression model's interval calibration: the normalised residuals |y - prediction| / spread of its
    /// calibration inputs, or nil (classifiers, or a fit without calibration targets).
    package var intervalCalibration: EmpiricalDistribution?
    /// A sample of the fitting rows for the distance to the nearest of them (``LatentScores/neighbourDistance``), or
    /// nil (``FitConfiguration/neighbours``).
    package var neighbours: NeighbourIndex?
    /// The calibration of the statistic combining the surprise's and the neighbour distance's p-values: for each
    /// calibration input, the Cauchy combination of its two leave-one-out p-values (as ``JointCalibration`` does
    /// for layers), so that ``epistemicPValue(_:)`` is itself a conformal p-value. Nil without a neighbour index.
    package var epistemicCalibration: EmpiricalDistribution?

    /// Assembles a model from its parts.
    package init(
        metadata: ModelMetadata,
        preparation: Preparation,
        density: any LatentDensity,
        background: GaussianComponent?,
        calibration: Calibration
    ) {
        precondition(
            preparation.outputDimension == density.dimension,
            "preparation output and density dimension differ"
        )
        self.metadata = metadata
        self.preparation = preparation
        self.density = density
        self.background = background
        self.calibration = calibration
    }

    /// The monitored layer's name, as stored in the model file.
    public var layer: String { metadata.layer }
    /// Activations the density was fitted on.
    public var fitSamples: Int { metadata.fitSamples }
    /// What the fit chose (for example the shrinkage per class), as stored in the model file.
    public var fitNotes: String { metadata.notes }
    /// Shape of one raw activation the model scores.
    public var inputShape: [Int] { preparation.inputShape }
    /// Elements of one raw activation (the product of ``inputShape``).
    public var inputCount: Int { preparation.inputCount }
    /// The density family's registered name ("gda", "tied", "gmm-full", "gmm-diag", ...).
    public var family: String { density.family }
    /// Dimension of the latent vectors after pooling, normalisation and projection.
    public var latentDimension: Int { density.dimension }
    /// Number of density components (classes or mixture components).
    public var componentCount: Int { density.componentCount }
    /// Class label of each component, when the components are classes; nil for unsupervised mixtures.
    public var classLabels: [Int]? { density.classLabels }
    /// Storage precision of the fitted parameters (float32 or float16).
    public var precision: ElementType { density.precision }
    /// Held-out in-distribution scores the surprise p-values are computed against.
    public var calibrationCount: Int { calibration.distributions[.surprise]?.count ?? 0 }

    /// The target bins' count of a regression model (families `regression` and `regression-tied`); nil for
    /// classifiers and mixtures.
    public var targetBinCount: Int? { density.targetBins?.count }

    /// Calibration inputs behind the p-value of the disagreement between a regression host's prediction and the
    /// model's (``LatentModelFitter/calibrateDisagreement(_:calibration:hostPredictions:)``); 0 when not calibrated.
    public var disagreementCalibrationCount: Int { calibration.distributions[.disagreement]?.count ?? 0 }

    /// Whether the model keeps a neighbour index (``FitConfiguration/neighbours``): its scores then carry
    /// ``LatentScores/neighbourDistance`` and its epistemic p-value combines it with the surprise.
    public var hasNeighbourIndex: Bool { neighbours != nil }

    /// Whether a joint calibration takes this model's neighbour distance as a member beside its surprise: it keeps
    /// a neighbour index with a combined calibration. Allocates nothing.
    package var jointWithNeighbourDistance: Bool {
        epistemicCalibration != nil && calibration.distributions[.neighbour] != nil
    }

    /// Fitting rows the neighbour index keeps (0 without one).
    public var neighbourCount: Int { neighbours?.count ?? 0 }

    /// The epistemic p-value of one input's scores, the one a ``Monitor`` alerts on for this layer: the surprise's
    /// conformal p-value, or for a model with a neighbour index the conformal p-value of the Cauchy combination of
    /// the surprise's and the neighbour distance's p-values against ``epistemicCalibration`` (valid as the layers'
    /// joint calibration is: Docs/Statistics.md). Nil when the model holds no calibration. Allocates nothing.
    public func epistemicPValue(_ scores: LatentScores) -> Double? {
        guard let ps = calibration.pValue(.surprise, scores.surprise) else { return nil }
        guard let t = combinedStatistic(scores, surprisePValue: ps) else { return ps }
        return epistemicCalibration?.pValue(t)
    }

    /// A continuous score that ranks inputs as ``epistemicPValue(_:)`` does, without its ties at the calibration's
    /// resolution (larger = more unusual): the surprise, or with a neighbour index the Cauchy statistic of the
    /// surprise's and the neighbour distance's p-values. Nil when the model holds no calibration.
    package func epistemicRankingScore(_ scores: LatentScores) -> Double? {
        guard epistemicCalibration != nil, scores.neighbourDistance != nil else { return scores.surprise }
        return calibration.pValue(.surprise, scores.surprise).flatMap { combinedStatistic(scores, surprisePValue: $0) }
    }

    /// The Cauchy statistic of the surprise's p-value and the neighbour distance's, or nil when the model has no
    /// combined calibration or the input no distance. Allocates nothing.
    private func combinedStatistic(_ scores: LatentScores, surprisePValue ps: Double) -> Double? {
        guard epistemicCalibration != nil, let d = scores.neighbourDistance, let pn = calibration.pValue(.neighbour, d)
        else { return nil }
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { p in
            p[0] = ps
            p[1] = pn
            return JointCalibration.value(.cauchy, UnsafeBufferPointer(p))
        }
    }

    /// Whether the model carries a calibrated prediction interval (a regression model fitted with calibration
    /// targets).
    public var hasPredictionInterval: Bool { intervalCalibration != nil }

    /// A regression model's conformal prediction interval for one input's target at `level` (for example 0.9):
    /// prediction -/+ q * spread, where q is the ceil(level (m + 1))-th smallest of the m calibration inputs'
    /// normalised residuals |y - prediction| / spread. For an input exchangeable with the calibration inputs it
    /// covers the target with probability at least `level` (Docs/Statistics.md). Nil for models without an
    /// interval calibration or scores without a prediction; unbounded when level (m + 1) > m; the prediction
    /// alone when the spread is 0 (and q finite).
    public func predictionInterval(_ scores: LatentScores, level: Double) -> ClosedRange<Double>? {
        guard let y = scores.prediction, let s = scores.predictiveSpread else { return nil }
        return predictionInterval(prediction: y, spread: s, level: level)
    }

    /// ``predictionInterval(_:level:)`` from a prediction and its spread (``Assessment/prediction`` and
    /// ``Assessment/predictiveSpread``, or the C and Python score fields). Allocates nothing.
    public func predictionInterval(prediction y: Double, spread s: Double, level: Double) -> ClosedRange<Double>? {
        guard let cal = intervalCalibration, level > 0, level < 1, s >= 0 else { return nil }
        let q = cal.orderStatistic(rank: Int((level * Double(cal.count + 1)).rounded(.up)))
        // A residual at the stand-in for infinity (a calibration input of zero spread that missed its target)
        // makes the interval unbounded; a zero spread otherwise gives the prediction alone.
        let half = q >= LatentModelFitter.infiniteResidual ? Double.infinity : (s == 0 ? 0 : q * s)
        guard y.isFinite, !half.isNaN else { return nil }
        return (y - half)...(y + half)
    }

    /// The conformal p-value of a score of this kind against the model's calibration scores: the fraction of
    /// calibration scores at least as large, (1 + #{s_i >= s}) / (m + 1). Nil when the model holds no
    /// calibration for that kind.
    public func pValue(_ kind: ScoreKind, _ score: Double) -> Double? { calibration.pValue(kind, score) }

    /// A workspace for ``score(_:workspace:)``.
    public func makeWorkspace() -> ScoringWorkspace {
        ScoringWorkspace(
            pooledDimension: preparation.pooledDimension,
            outputDimension: density.dimension,
            components: density.componentCount,
            neighbourCells: neighbours?.scratchCount ?? 0
        )
    }

    /// Refuses a workspace too small for this model (one made by another model's ``makeWorkspace()``): scoring
    /// with it would write past its buffers.
    @inline(__always)
    func check(_ ws: ScoringWorkspace) throws(LatentWatchError) {
        guard ws.prepared.count >= PackedTriangular.paddedDimension(density.dimension),
            ws.pooled.count >= preparation.pooledDimension,
            ws.logJoint.count >= density.componentCount,
            ws.neighbourScratch.count >= (neighbours?.scratchCount ?? 0),
            ws.scratch.count
                >= DensityScratch.floatCount(dimension: max(preparation.pooledDimension, density.dimension))
        else {
            throw LatentWatchError(
                .invalidConfiguration,
                "the scoring workspace was made for another model (layer '\(metadata.layer)' needs larger buffers)",
                remedy: "make the workspace with this model's makeWorkspace()"
            )
        }
    }

    /// The same model with factors stored (and scored) at another precision.
    package func converted(to precision: ElementType) -> LatentModel {
        var m = LatentModel(
            metadata: metadata,
            preparation: preparation,
            density: density.converted(to: precision),
            background: background?.converted(to: precision),
            calibration: calibration
        )
        m.posteriorTemperature = posteriorTemperature
        m.jointCalibration = jointCalibration
        m.intervalCalibration = intervalCalibration
        m.neighbours = neighbours
        m.epistemicCalibration = epistemicCalibration
        return m
    }

    /// Checks one raw activation: element count and finiteness.
    package func validate(_ x: UnsafeBufferPointer<Float>) throws(LatentWatchError) {
        let n = preparation.inputCount
        guard x.count == n else {
            throw LatentWatchError(
                .shapeMismatch,
                "activation has \(x.count) elements; layer '\(metadata.layer)' expects \(n) (shape \(preparation.inputShape))"
            )
        }
        if !Self.allFinite(x), let i = x.firstIndex(where: { !$0.isFinite }) {
            throw LatentWatchError(
                .nonFinite,
                "activation element \(i) of layer '\(metadata.layer)' is \(x[i]); NaN/Inf inputs are not scored"
            )
        }
    }

    /// Whether no element is NaN or infinite (an all-ones exponent field), in a loop without an early exit so that
    /// it vectorises: a search that stops at the first bad value runs one element at a time, and every input on
    /// the hot path is checked.
    @inline(__always)
    static func allFinite(_ x: UnsafeBufferPointer<Float>) -> Bool {
        // The exponent field plus one unit of it carries into the sign bit exactly when the field is all ones.
        var carried: UInt32 = 0
        for v in x { carried |= (v.bitPattern & 0x7f80_0000) &+ 0x0080_0000 }
        return carried & 0x8000_0000 == 0
    }

    /// ``allFinite(_:)`` for binary16 (exponent field 0x7c00).
    @inline(__always)
    static func allFinite(_ x: UnsafeBufferPointer<Float16>) -> Bool {
        var carried: UInt16 = 0
        for v in x { carried |= (v.bitPattern & 0x7c00) &+ 0x0400 }
        return carried & 0x8000 == 0
    }

    /// Checks one raw activation given as IEEE binary16: element count, and no NaN or infinity.
    package func validate(half x: UnsafeBufferPointer<Float16>) throws(LatentWatchError) {
        let n = preparation.inputCount
        guard x.count == n else {
            throw LatentWatchError(
                .shapeMismatch,
                "activation has \(x.count) elements; layer '\(metadata.layer)' expects \(n) (shape \(preparation.inputShape))"
            )
        }
        if !Self.allFinite(x), let i = x.firstIndex(where: { !$0.isFinite }) {
            throw LatentWatchError(
                .nonFinite,
                "activation element \(i) of layer '\(metadata.layer)' is \(x[i]); NaN/Inf inputs are not scored"
            )
        }
    }

    /// The calibrated posterior's logits at T = 1 (-sqrt(q_k), ``rootDistanceLogits(_:distances:)``) of one
    /// validated raw activation, in `workspace`'s posterior buffer until the next call.
    package func rootDistanceLogits(
        _ x: UnsafeBufferPointer<Float>,
        workspace ws: ScoringWorkspace
    ) -> UnsafeBufferPointer<Double> {
        evaluate(x, workspace: ws)
        Self.rootDistanceLogits(ws.logJoint, distances: UnsafeBufferPointer(ws.distances))
        return UnsafeBufferPointer(ws.logJoint)
    }

    /// Prepares one validated raw activation and evaluates the density on it: log joints and squared distances
    /// into `ws`.
    @inline(__always)
    private func evaluate(_ x: UnsafeBufferPointer<Float>, workspace ws: ScoringWorkspace) {
        preparation.prepare(x.baseAddress!, into: ws.prepared.baseAddress!, scratch: ws.pooled.baseAddress!)
        density.evaluate(
            ws.prepared.baseAddress!,
            logJoint: ws.logJoint.baseAddress!,
            distances: ws.distances.baseAddress!,
            scratch: ws.scratch.baseAddress!
        )
    }

    /// Scores one raw activation. Allocates nothing; after the call, `workspace.posterior` holds p(k | z).
    public func score(
        _ x: UnsafeBufferPointer<Float>,
        workspace ws: ScoringWorkspace
    ) throws(LatentWatchError) -> LatentScores {
        try validate(x)
        try check(ws)
        evaluate(x, workspace: ws)
        let d0 = background?.squaredDistance(ws.prepared.baseAddress!, scratch: ws.scratch.baseAddress!)
        var s = summarize(logJoint: ws.logJoint, distances: UnsafeBufferPointer(ws.distances), backgroundDistance: d0)
        s.neighbourDistance = neighbours?.nearestDistance(
            ws.prepared.baseAddress!,
            scratch: ws.neighbourScratch.baseAddress!
        )
        return s
    }

    /// Convenience: scores one activation held in an array (allocates a workspace).
    public func score(_ x: [Float]) throws(LatentWatchError) -> LatentScores {
        let ws = makeWorkspace()
        return try x.withUnsafeBufferPointer { (b) throws(LatentWatchError) -> LatentScores in
            try score(b, workspace: ws)
        }
    }

    /// Scores `count` activations stored back to back. Rows that fail validation are reported in the
    /// result as errors without affecting the others. Large batches use BLAS.
    public func scoreBatch(
        _ x: UnsafeBufferPointer<Float>,
        count: Int,
        workspace ws: ScoringWorkspace
    ) -> [Result<LatentScores, LatentWatchError>] {
        let n = preparation.inputCount
        guard x.count == count * n else {
            let e = LatentWatchError(
                .shapeMismatch,
                "batch has \(x.count) elements; \(count) activations of layer '\(metadata.layer)' need \(count * n)"
            )
            return Array(repeating: .failure(e), count: count)
        }
        do throws(LatentWatchError) { try check(ws) } catch { return Array(repeating: .failure(error), count: count) }
        let d = density.dimension
        let k = density.componentCount
        var results = [Result<LatentScores, LatentWatchError>?](repeating: nil, count: count)
        var valid: [Int] = []
        valid.reserveCapacity(count)
        for i in 0..<count {
            do throws(LatentWatchError) {
                try validate(UnsafeBufferPointer(rebasing: x[(i * n)..<((i + 1) * n)]))
                valid.append(i)
            } catch {
                results[i] = .failure(error)
            }
        }
        var z = [Float](repeating: 0, count: valid.count * d)
        var logJoint = [Double](repeating: 0, count: valid.count * k)
        var dist = [Double](repeating: 0, count: valid.count * k)
        var bg = [Double](repeating: 0, count: valid.count)
        z.withUnsafeMutableBufferPointer { zb in
            for (r, i) in valid.enumerated() {
                preparation.prepare(
                    x.baseAddress! + i * n,
                    into: zb.baseAddress! + r * d,
                    scratch: ws.pooled.baseAddress!
                )
            }
            logJoint.withUnsafeMutableBufferPointer { lj in
                dist.withUnsafeMutableBufferPointer { db in
                    density.evaluateBatch(
                        zb.baseAddress!,
                        count: valid.count,
                        logJoint: lj.baseAddress!,
                        distances: db.baseAddress!,
                        workspace: &ws.batch
                    )
                }
            }
            if let background {
                bg.withUnsafeMutableBufferPointer { b in
                    background.squaredDistances(
                        zb.baseAddress!,
                        count: valid.count,
                        into: b.baseAddress!,
                        stride: 1,
                        workspace: &ws.batch
                    )
                }
            }
        }
        logJoint.withUnsafeMutableBufferPointer { lj in
            dist.withUnsafeBufferPointer { db in
                z.withUnsafeBufferPointer { zb in
                    for (r, i) in valid.enumerated() {
                        let row = UnsafeMutableBufferPointer(rebasing: lj[(r * k)..<((r + 1) * k)])
                        let drow = UnsafeBufferPointer(rebasing: db[(r * k)..<((r + 1) * k)])
                        var s = summarize(
                            logJoint: row,
                            distances: drow,
                            backgroundDistance: background == nil ? nil : bg[r]
                        )
                        s.neighbourDistance = neighbours?.nearestDistance(
                            zb.baseAddress! + r * d,
                            scratch: ws.neighbourScratch.baseAddress!
                        )
                        results[i] = .success(s)
                    }
                }
            }
        }
        return results.map { $0! }
    }

    /// Replaces one input's log joints by -sqrt(q_k), q_k = -2 log p(z, k) - min_j c_j with
    /// c_j = -2 log p(z, j) - d_j the class constants (d_j the squared Mahalanobis distances): the calibrated
    /// posterior's logits at T = 1 (``posteriorTemperature``). Increasing in the log joint.
    @inline(__always)
    package static func rootDistanceLogits(
        _ logJoint: UnsafeMutableBufferPointer<Double>,
        distances: UnsafeBufferPointer<Double>
    ) {
        var smallest = Double.infinity
        for k in logJoint.indices {
            let c = -2 * logJoint[k] - distances[k]
            if c < smallest { smallest = c }
        }
        for k in logJoint.indices { logJoint[k] = -max(0, -2 * logJoint[k] - smallest).squareRoot() }
    }

    /// Turns log joints into the user-facing scores; leaves the posterior in `logJoint`.
    @inline(__always)
    func summarize(
        logJoint: UnsafeMutableBufferPointer<Double>,
        distances: UnsafeBufferPointer<Double>,
        backgroundDistance: Double?
    ) -> LatentScores {
        var lse = 0.0
        let entropy: Double
        if let t = posteriorTemperature {
            lse = LogSpace.logSumExp(UnsafeBufferPointer(logJoint))
            Self.rootDistanceLogits(logJoint, distances: distances)
            let inverse = 1 / t
            for k in logJoint.indices { logJoint[k] *= inverse }
            var ignored = 0.0
            entropy = LogSpace.normalize(logJoint, logNormalizer: &ignored)
        } else {
            entropy = LogSpace.normalize(logJoint, logNormalizer: &lse)
        }
        var best = 0
        var minD = Double.infinity
        for k in 0..<logJoint.count {
            if logJoint[k] > logJoint[best] { best = k }
            if distances[k] < minD { minD = distances[k] }
        }
        let rmd = backgroundDistance.map { minD - $0 } ?? .nan
        var scores = LatentScores(
            logDensity: lse,
            entropy: entropy,
            predictedComponent: best,
            predictedLabel: density.classLabels?[best],
            maxPosterior: logJoint[best],
            mahalanobis: minD,
            relativeMahalanobis: rmd
        )
        if let bins = density.targetBins {
            let (mean, spread) = bins.moments(posterior: UnsafeBufferPointer(logJoint))
            scores.prediction = mean
            scores.predictiveSpread = spread
        }
        return scores
    }
}
