/// The calibration of a fused statistic of several layers' p-values, made on the inputs every layer was
/// calibrated on, so that the fused p-value is itself a conformal p-value: valid as the per-layer ones are, and
/// ranking inputs as well as the statistic does.
///
/// Its members are scores: each layer's surprise, and for a layer whose model keeps a neighbour index its
/// neighbour distance too (``kinds``), so the statistic combines every score the layers alert on in one step.
/// Each member model carries the same joint calibration (``LatentModel/jointCalibration``). For each of the m
/// joint calibration inputs i and each member l it holds the statistic T_i of the leave-one-out p-values
/// p_il = (1 + #{j != i : s_jl >= s_il}) / (m_l + 1), the rank of input i's score among the member's other
/// calibration scores. A new input's statistic T uses its ordinary per-layer p-values, and its fused p-value is
/// (1 + #{i : T_i >= T}) / (m + 1). Together with the new input, input i's p-value among the others would be at
/// least p_il, so the stored T_i are at least the exchangeable values and the fused p-value is conservative:
/// P(p <= alpha) <= alpha for an in-distribution input (Docs/Statistics.md).
///
/// A monitor uses it when every monitored layer's model carries it and the members' surprise calibrations are the
/// ones it was made with (``memberChecksums``).
public struct JointCalibration: Sendable, Equatable {
    /// How the layers' p-values combine into the statistic (larger is more unusual).
    public enum Statistic: String, Sendable, Codable, CaseIterable {
        /// mean_l tan((1/2 - p_l) pi) (Cauchy combination, Liu and Xie 2020).
        case cauchy
        /// -sum_l log p_l (Fisher).
        case fisher
    }

    /// The statistic.
    public let statistic: Statistic
    /// Each member's layer name (as its model file stores it), in the order they were calibrated: a layer whose
    /// model keeps a neighbour index appears twice, for its surprise and its neighbour distance.
    public let layers: [String]
    /// The score each member ranks (``ScoreKind/surprise`` or ``ScoreKind/neighbour``), one per entry of ``layers``.
    public let kinds: [ScoreKind]
    /// For each member, ``checksum(of:kind:)`` of its score's calibration when the joint calibration was made.
    package let memberChecksums: [UInt32]
    /// The statistic on the joint calibration inputs.
    package let distribution: EmpiricalDistribution

    /// Joint calibration inputs m.
    public var count: Int { distribution.count }

    /// The member layers' names, each once, in calibration order.
    public var layerNames: [String] {
        var seen = Set<String>()
        return layers.filter { seen.insert($0).inserted }
    }

    package init(
        statistic: Statistic,
        layers: [String],
        kinds: [ScoreKind]? = nil,
        memberChecksums: [UInt32],
        distribution: EmpiricalDistribution
    ) {
        self.statistic = statistic
        self.layers = layers
        self.kinds = kinds ?? layers.map { _ in .surprise }
        self.memberChecksums = memberChecksums
        self.distribution = distribution
    }

    /// The statistic of one input's per-layer p-values (any order; the statistics are symmetric). Allocates nothing.
    @inlinable
    package static func value(_ statistic: Statistic, _ p: UnsafeBufferPointer<Double>) -> Double {
        var t = 0.0
        switch statistic {
        case .cauchy:
            for v in p {
                let q = min(max(v, 1e-300), 1 - 1e-16)
                t += _tan((0.5 - q) * Double.pi)
            }
            return t / Double(max(1, p.count))
        case .fisher:
            for v in p { t -= _log(min(max(v, 1e-300), 1)) }
            return t
        }
    }

    /// The fused conformal p-value of one input's per-layer p-values. Allocates nothing.
    package func pValue(_ p: UnsafeBufferPointer<Double>) -> Double {
        distribution.pValue(Self.value(statistic, p))
    }

    /// The scores of a model that join a joint calibration: its surprise, and its neighbour distance when the model
    /// keeps a neighbour index with a combined calibration (the scores its epistemic p-value combines).
    package static func memberKinds(of model: LatentModel) -> [ScoreKind] {
        model.jointWithNeighbourDistance ? [.surprise, .neighbour] : [.surprise]
    }

    /// The checksum that ties a member to the joint calibration: CRC-32 of the model's calibration of that score
    /// (count, stored values and ranks), or nil when the model has none.
    package static func checksum(of model: LatentModel, kind: ScoreKind) -> UInt32? {
        guard let d = model.calibration.distributions[kind] else { return nil }
        var crc = withUnsafeBytes(of: UInt64(d.count).littleEndian) { CRC32.checksum($0) }
        for v in d.values {
            crc = withUnsafeBytes(of: v.bitPattern.littleEndian) { CRC32.checksum($0, continuing: crc) }
        }
        for r in d.ranks { crc = withUnsafeBytes(of: r.littleEndian) { CRC32.checksum($0, continuing: crc) } }
        return crc
    }

    /// Whether `models` (in any order) are exactly this calibration's members: each carries it and the
    /// calibrations of its member scores (``memberKinds(of:)``) match the checksums, one member each.
    package func matches(_ models: [LatentModel]) -> Bool {
        guard models.count >= 2 else { return false }
        var remaining = Array(zip(kinds, memberChecksums))
        for m in models {
            guard m.jointCalibration == self else { return false }
            for kind in Self.memberKinds(of: m) {
                guard let c = Self.checksum(of: m, kind: kind),
                    let i = remaining.firstIndex(where: { $0.0 == kind && $0.1 == c })
                else { return false }
                remaining.remove(at: i)
            }
        }
        return remaining.isEmpty
    }

    /// Member p-values a monitor of `models` fills per input (``memberKinds(of:)`` of each).
    package static func memberCount(of models: [LatentModel]) -> Int {
        models.reduce(0) { $0 + memberKinds(of: $1).count }
    }

    /// Builds the joint calibration of `models` from each input's surprise on every layer: `surprises[l][i]` is
    /// input i's surprise under model l, and the inputs must be the ones each model's surprise calibration holds,
    /// in the same order on every layer (checked: the layer's finite surprises must give its stored distribution).
    /// A model with a neighbour index joins with its neighbour distance too (`neighbourDistances[l][i]`, checked
    /// against its calibration the same way).
    package static func make(
        models: [LatentModel],
        surprises: [[Double]],
        neighbourDistances: [[Double]] = [],
        statistic: Statistic
    ) throws(LatentWatchError) -> JointCalibration {
        guard models.count >= 2, surprises.count == models.count else {
            throw LatentWatchError(
                .invalidConfiguration,
                "a joint calibration needs two or more layers, got \(models.count)",
                remedy: "pass every monitored layer's model and its calibration inputs"
            )
        }
        let m = surprises[0].count
        var checksums: [UInt32] = []
        var dists: [EmpiricalDistribution] = []
        var memberScores: [[Double]] = []
        var memberLayers: [String] = []
        var memberKinds: [ScoreKind] = []
        for (l, model) in models.enumerated() {
            for kind in Self.memberKinds(of: model) {
                let scores =
                    kind == .surprise ? surprises[l] : (l < neighbourDistances.count ? neighbourDistances[l] : [])
                let (d, c) = try checkedMember(model, kind: kind, scores: scores, count: m, first: models[0])
                checksums.append(c)
                dists.append(d)
                memberScores.append(scores)
                memberLayers.append(model.layer)
                memberKinds.append(kind)
            }
        }
        return make(
            layers: memberLayers,
            kinds: memberKinds,
            memberChecksums: checksums,
            distributions: dists,
            surprises: memberScores,
            statistic: statistic
        )
    }

    /// One member's calibration and checksum, after checking that `scores` are the ones it was made from.
    private static func checkedMember(
        _ model: LatentModel,
        kind: ScoreKind,
        scores: [Double],
        count m: Int,
        first: LatentModel
    ) throws(LatentWatchError) -> (EmpiricalDistribution, UInt32) {
        let what = kind == .surprise ? "surprise" : "neighbour distance"
        guard scores.count == m else {
            throw LatentWatchError(
                .invalidConfiguration,
                "layer '\(model.layer)' has \(scores.count) calibration inputs (\(what)s), layer '\(first.layer)' \(m)",
                remedy: "pass the same inputs' activations for every layer, in the same order"
            )
        }
        guard let d = model.calibration.distributions[kind], let c = checksum(of: model, kind: kind) else {
            throw LatentWatchError(
                .invalidConfiguration,
                "the model of layer '\(model.layer)' holds no \(what) calibration",
                remedy: "fit it with calibration inputs"
            )
        }
        let given = EmpiricalDistribution(scores: scores)
        guard given == d else {
            // Scores a little off everywhere, rather than other inputs: the parameters were converted.
            let close =
                given.count == d.count && given.values.count == d.values.count
                && zip(given.values, d.values).allSatisfy { abs($0 - $1) <= 1e-2 * (1 + abs($1)) }
            throw LatentWatchError(
                .invalidConfiguration,
                "the calibration inputs given for layer '\(model.layer)' are not the ones its model was "
                    + "calibrated on (\(d.count) inputs)"
                    + (close
                        ? ", or the model's parameters were converted to another precision after calibration "
                            + "(its scores of them differ slightly)" : ""),
                remedy: close
                    ? "calibrate jointly before writing the model at another precision, or fit at that precision "
                        + "(--precision float16)"
                    : "pass the activations the fit calibrated on: its --calibration file, or its activations "
                        + "with the same split seed when the fit carved the calibration inputs off them"
            )
        }
        return (d, c)
    }

    /// Builds the joint calibration from each layer's calibration distribution and the calibration inputs'
    /// surprises on every layer (`surprises[l][i]`), unchecked: input i's p-value on layer l leaves input i out of
    /// the layer's count.
    package static func make(
        layers: [String],
        kinds: [ScoreKind]? = nil,
        memberChecksums: [UInt32],
        distributions dists: [EmpiricalDistribution],
        surprises: [[Double]],
        statistic: Statistic
    ) -> JointCalibration {
        let m = surprises.first?.count ?? 0
        var t: [Double] = []
        t.reserveCapacity(m)
        var p = [Double](repeating: 1, count: dists.count)
        for i in 0..<m {
            for l in 0..<dists.count {
                let s = surprises[l][i]
                let d = dists[l]
                let others = d.countAtLeast(s) - (s.isFinite ? 1 : 0)
                p[l] = s.isNaN ? 0 : max(1, 1 + others) / Double(d.count + 1)
            }
            t.append(p.withUnsafeBufferPointer { value(statistic, $0) })
        }
        return JointCalibration(
            statistic: statistic,
            layers: layers,
            kinds: kinds,
            memberChecksums: memberChecksums,
            distribution: EmpiricalDistribution(scores: t)
        )
    }
}
