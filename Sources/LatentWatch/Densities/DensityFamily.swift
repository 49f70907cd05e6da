import LatentWatchNumerics

/// The name of a density family, as `FitConfiguration` selects it and model files store it.
public struct DensityFamilyName: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The name ("gda", "tied", "gmm-full", "gmm-diag", ...).
    public let rawValue: String

    /// A family by name; ``LatentModelFitter`` refuses a name no registered family has.
    public init(_ rawValue: String) { self.rawValue = rawValue }

    /// A family by name, from a literal.
    public init(stringLiteral value: String) { self.rawValue = value }

    /// The name.
    public var description: String { rawValue }

    /// Class-conditional Gaussians, a full covariance per class (needs labels).
    public static let gda: DensityFamilyName = "gda"
    /// Class means with one tied covariance: Mahalanobis (needs labels).
    public static let tied: DensityFamilyName = "tied"
    /// Unsupervised Gaussian mixture with full covariances, fitted by EM.
    public static let gmmFull: DensityFamilyName = "gmm-full"
    /// Unsupervised Gaussian mixture with diagonal covariances, fitted by EM.
    public static let gmmDiagonal: DensityFamilyName = "gmm-diag"
    /// Regression: real-valued targets binned at quantiles, a full-covariance Gaussian per bin (needs targets).
    public static let regression: DensityFamilyName = "regression"
    /// Regression: real-valued targets binned at quantiles, bin means with one tied covariance (needs targets).
    public static let regressionTied: DensityFamilyName = "regression-tied"
}

/// One density family: its name, what it needs, how to fit it from the fitter's statistics and how to read
/// it back from a model file. Adding a family is one file (the density type and its `DensityFamily`) and
/// one line in ``DensityFamilyRegistry/standard``; the fitter, model files and the CLI's choices and help
/// all come from the registry.
package struct DensityFamily: Sendable {
    /// Name written into model files and given to `--family`.
    package let name: DensityFamilyName
    /// Other names accepted when fitting (for example "gmm" for "gmm-full").
    package let aliases: [String]
    /// One line for help texts.
    package let summary: String
    /// Whether fitting needs class labels.
    package let needsLabels: Bool
    /// Whether fitting needs real-valued targets (regression families); the fitter bins them into the labels the
    /// statistics pass sees (``FitConfiguration/binnedTargets``).
    package let needsTargets: Bool
    /// Whether fitting needs passes over the activations beyond the statistics (EM); such a family cannot be
    /// fitted from merged statistics alone, and the statistics pass keeps a reservoir sample for it.
    package let needsPasses: Bool
    /// Fits the density from the statistics pass (and, when ``needsPasses``, the data in `context`).
    package let fit: @Sendable (DensityFitContext) throws(LatentWatchError) -> any LatentDensity
    /// Reads the density's parameters from a model file's sections.
    package let decode: @Sendable (ModelSectionReader) throws(LatentWatchError) -> any LatentDensity

    /// A family.
    package init(
        name: DensityFamilyName,
        aliases: [String] = [],
        summary: String,
        needsLabels: Bool,
        needsTargets: Bool = false,
        needsPasses: Bool = false,
        fit: @escaping @Sendable (DensityFitContext) throws(LatentWatchError) -> any LatentDensity,
        decode: @escaping @Sendable (ModelSectionReader) throws(LatentWatchError) -> any LatentDensity
    ) {
        self.name = name
        self.aliases = aliases
        self.summary = summary
        self.needsLabels = needsLabels
        self.needsTargets = needsTargets
        self.needsPasses = needsPasses
        self.fit = fit
        self.decode = decode
    }
}

/// What the fitter hands a family: the statistics of the prepared activations, the configuration, and for
/// families that need passes the activations themselves. Notes added here go into the model's metadata.
package final class DensityFitContext {
    /// Statistics of the prepared (pooled, normalised, projected) activations.
    package let statistics: ActivationStatistics
    /// The preparation the density sees the output of.
    package let preparation: Preparation
    /// The fit's configuration.
    package let configuration: FitConfiguration
    /// The activations and the split, for families that need passes; nil when fitting from statistics.
    package let data: (source: any ActivationSource, split: SplitAssignment)?
    /// Progress handler of the fit.
    package let progress: ((FitProgress) -> Void)?
    /// Notes for the model's metadata (for example the chosen shrinkage).
    package private(set) var notes: [String] = []

    init(
        statistics: ActivationStatistics,
        preparation: Preparation,
        configuration: FitConfiguration,
        data: (source: any ActivationSource, split: SplitAssignment)?,
        progress: ((FitProgress) -> Void)?
    ) {
        self.statistics = statistics
        self.preparation = preparation
        self.configuration = configuration
        self.data = data
        self.progress = progress
    }

    /// Dimension of the latent vectors the density models.
    package var dimension: Int { preparation.outputDimension }

    /// Adds a note to the model's metadata.
    package func note(_ text: String) { notes.append(text) }
}

/// The families a fit can choose and a model file reader can decode. Passed explicitly (no global state):
/// ``standard`` holds the built-in families, and a copy can register more.
package struct DensityFamilyRegistry: Sendable {
    /// Registered families, in the order help texts list them.
    package private(set) var families: [DensityFamily]

    /// The built-in families.
    package static let standard = DensityFamilyRegistry(families: [
        .classGaussians,
        .tiedGaussian,
        .gaussianMixtureFull,
        .gaussianMixtureDiagonal,
        .outputConditional,
        .outputConditionalTied,
    ])

    /// A registry of exactly these families.
    package init(families: [DensityFamily]) { self.families = families }

    /// Adds a family (replacing one of the same name).
    package mutating func register(_ family: DensityFamily) {
        families.removeAll { $0.name == family.name }
        families.append(family)
    }

    /// The family of a name or alias; nil when none is registered.
    package func family(named name: String) -> DensityFamily? {
        families.first { $0.name.rawValue == name } ?? families.first { $0.aliases.contains(name) }
    }

    /// The family of a fit configuration, or an error naming the registered ones.
    package func family(for name: DensityFamilyName) throws(LatentWatchError) -> DensityFamily {
        guard let f = family(named: name.rawValue) else {
            throw LatentWatchError(
                .invalidConfiguration,
                "density family '\(name)' is not registered",
                remedy: "choose one of: \(families.map(\.name.rawValue).joined(separator: ", "))"
            )
        }
        return f
    }

    /// Every name and alias, for command-line choices.
    package var allNames: [String] { families.flatMap { [$0.name.rawValue] + $0.aliases } }
}
