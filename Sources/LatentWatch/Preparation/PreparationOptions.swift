/// How raw activations become the latent vector z a density is fitted on. Fitted with the density and
/// stored in the model, so the caller always hands raw activations of the declared shape.
public struct PreparationOptions: Sendable, Equatable {
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
    public enum Projection: Sendable, Equatable {
        /// No projection.
        case none
        /// Keep this many leading components.
        case components(Int)
        /// Keep the fewest leading components that explain at least this fraction of variance (0, 1].
        case varianceFraction(Double)
    }

    /// Pooling of the raw activation.
    public var pooling: Pooling
    /// Divide each pooled vector by its Euclidean norm (all-zero vectors stay zero). On by default: on the
    /// real image and text models of Docs/Evaluation.md it raised the class-Gaussian mean OOD AUROC on every
    /// layer (+0.010 to +0.023, and from 0.55 to 0.94 on un-normalised sentence embeddings).
    public var l2Normalize: Bool
    /// Optional PCA.
    public var projection: Projection

    /// Defaults: flatten, L2 normalisation, no projection (PCA lost up to 0.04 AUROC on image and fell below
    /// chance on text in Docs/Evaluation.md). Use ``raw`` for no preparation at all.
    public init(pooling: Pooling = .flatten, l2Normalize: Bool = true, projection: Projection = .none) {
        self.pooling = pooling
        self.l2Normalize = l2Normalize
        self.projection = projection
    }

    /// No pooling beyond flattening, no normalisation, no projection: the density sees the activation as it is.
    public static let raw = PreparationOptions(l2Normalize: false)
}
