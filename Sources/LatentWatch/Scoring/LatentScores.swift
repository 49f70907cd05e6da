/// The scores of one input under a fitted model.
public struct LatentScores: Sendable, Equatable {
    /// log p(z) under the density.
    public var logDensity: Double
    /// Entropy of p(y | z) in nats (of the component posterior for mixtures): aleatoric uncertainty.
    public var entropy: Double
    /// Index of the most probable component.
    public var predictedComponent: Int
    /// Class label of the most probable class (nil for mixtures).
    public var predictedLabel: Int?
    /// Largest posterior probability.
    public var maxPosterior: Double
    /// Squared Mahalanobis distance to the nearest class or component.
    public var mahalanobis: Double
    /// Nearest-class distance minus the background distance; NaN when the model has no background.
    public var relativeMahalanobis: Double
    /// A regression model's prediction of its target from the latent vector: the mean of the predictive
    /// distribution p(y | z) over the target bins. Nil for classifiers and mixtures.
    public var prediction: Double? = nil
    /// The standard deviation of that predictive distribution: aleatoric uncertainty of a regression model.
    /// Nil for classifiers and mixtures.
    public var predictiveSpread: Double? = nil
    /// Distance from the prepared latent vector to the nearest row of the model's neighbour index; nil for models
    /// without one (``LatentModel/hasNeighbourIndex``).
    public var neighbourDistance: Double? = nil

    /// All-zero scores, to initialise buffers.
    package static let zero = LatentScores(
        logDensity: 0,
        entropy: 0,
        predictedComponent: 0,
        predictedLabel: nil,
        maxPosterior: 0,
        mahalanobis: 0,
        relativeMahalanobis: 0
    )

    /// -log p(z): epistemic uncertainty.
    public var surprise: Double { -logDensity }

    /// Creates scores.
    package init(
        logDensity: Double,
        entropy: Double,
        predictedComponent: Int,
        predictedLabel: Int?,
        maxPosterior: Double,
        mahalanobis: Double,
        relativeMahalanobis: Double
    ) {
        self.logDensity = logDensity
        self.entropy = entropy
        self.predictedComponent = predictedComponent
        self.predictedLabel = predictedLabel
        self.maxPosterior = maxPosterior
        self.mahalanobis = mahalanobis
        self.relativeMahalanobis = relativeMahalanobis
    }

    /// The value of one score kind (larger is more unusual).
    public func value(_ kind: ScoreKind) -> Double {
        switch kind {
        case .surprise: return surprise
        case .entropy: return entropy
        case .mahalanobis: return mahalanobis
        case .relativeMahalanobis: return relativeMahalanobis
        case .spread: return predictiveSpread ?? .nan
        case .disagreement: return .nan
        case .neighbour: return neighbourDistance ?? .nan
        }
    }
}
