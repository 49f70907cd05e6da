/// How raw activations become the latent vector z a density is fitted on. Fitted with the density and
/// stored in the model, so the caller always hands raw activations of the declared shape.
public struct PreparationOptions: Sendable, Equatable, Codable {
    /// Reduction of a multi-dimensional activation to a vector.
    public enum Pooling: String, Sendable, Codable, CaseIterable {
        /// Flatten every element (row-major).
        case flatten
        /// Global average pooling of a [C, H, W] map (or [C, ...]) to C values.
        case globalAverage = "global-average"
        /// Mean over tokens of a [T, C] sequence to C values.
        case meanTokens = "mean-tokens"
    }

    /// Principal-component projection after pooling and normalisation.
    public enum Projection: Sendable, Equatable, Codable {
        /// No projection.
        case none
        /// Keep this many leading components.
        case components(Int)
        /// Keep the fewest leading components that explain at least this fraction of variance (0, 1].
        case varianceFraction(Double)
    }

    /// Pooling of the raw activation.
    public var pooling: Pooling
    /// Divide each pooled vector by its Euclidean norm (all-zero vectors stay zero).
    public var l2Normalize: Bool
    /// Optional PCA.
    public var projection: Projection

    /// Defaults: flatten, no normalisation, no projection.
    public init(pooling: Pooling = .flatten, l2Normalize: Bool = false, projection: Projection = .none) {
        self.pooling = pooling
        self.l2Normalize = l2Normalize
        self.projection = projection
    }
}
