/// The scores LatentWatch computes for every input. Larger values are more unusual for all of them.
public enum ScoreKind: String, Sendable, Codable, CaseIterable {
    /// -log p(z): epistemic uncertainty.
    case surprise
    /// Entropy of p(y | z) (or of the component posterior for mixtures): aleatoric uncertainty.
    case entropy
    /// Squared Mahalanobis distance to the nearest class or component.
    case mahalanobis
    /// Nearest-class squared distance minus the distance under the background Gaussian (Ren et al. 2021).
    case relativeMahalanobis = "relative_mahalanobis"
    /// Standard deviation of a regression model's predictive distribution of its target: aleatoric uncertainty
    /// when the output is a number (absent for classifiers).
    case spread
    /// |host prediction - prediction|: how far a regression host's own output lies from the model's prediction of
    /// the target, in the target's units. The model alone cannot compute it (``LatentScores/value(_:)`` is NaN);
    /// a monitor given the host's prediction (``ModelOutputKind/prediction``) does, and calibrates it against
    /// ``LatentModelFitter/calibrateDisagreement(_:calibration:hostPredictions:)``'s calibration.
    case disagreement
    /// Euclidean distance from the prepared latent vector to the nearest fitting row the model's neighbour index
    /// keeps (deep nearest neighbours): epistemic uncertainty, for models fitted with ``FitConfiguration/neighbours``
    /// (NaN otherwise).
    case neighbour = "neighbour_distance"
}
