/// Calibration of every score on held-out in-distribution data.
public struct Calibration: Sendable, Equatable {
    /// Distribution per score kind.
    public let distributions: [ScoreKind: EmpiricalDistribution]

    /// Creates a calibration from distributions.
    public init(distributions: [ScoreKind: EmpiricalDistribution]) {
        self.distributions = distributions
    }

    /// No calibration (p-values unavailable).
    public static let none = Calibration(distributions: [:])

    /// The conformal p-value of a score, or nil when that score was not calibrated.
    public func pValue(_ kind: ScoreKind, _ score: Double) -> Double? {
        distributions[kind]?.pValue(score)
    }

    /// The score threshold for a target false-positive rate, or nil when not calibrated.
    public func threshold(_ kind: ScoreKind, falsePositiveRate alpha: Double) -> Double? {
        distributions[kind]?.threshold(falsePositiveRate: alpha)
    }
}
