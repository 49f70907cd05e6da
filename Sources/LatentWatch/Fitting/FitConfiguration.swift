import LatentWatchNumerics

/// Options of the EM fit of a Gaussian mixture.
public struct MixtureOptions: Sendable, Equatable {
    /// How EM starts.
    package enum Initialization: Sendable, Equatable {
        /// k-means++ seeding and Lloyd iterations on a reservoir sample of the data.
        case kMeansPlusPlus
        /// Explicit parameters: weights [K], means [K * D], covariances [K * D * D] (gmm-full) or [K * D]
        /// (gmm-diag).
        case explicit(weights: [Double], means: [Double], covariances: [Double])
    }

    /// Number of components K.
    public var components: Int
    /// Seed of the k-means++ initialisation (restart r uses seed + r).
    public var seed: UInt64
    /// Stop when the mean log-likelihood changes by less than this.
    public var tolerance: Double
    /// Maximum EM iterations per restart.
    public var maxIterations: Int
    /// Number of restarts; the best final log-likelihood wins.
    public var restarts: Int
    /// Initialisation.
    package var initialization: Initialization = .kMeansPlusPlus
    /// Activations kept (reservoir sample) for the k-means++ initialisation.
    public var reservoirSize: Int

    /// Defaults: 8 components, seed 0, tolerance 1e-3, 100 iterations, 1 restart, k-means++.
    public init(
        components: Int = 8,
        seed: UInt64 = 0,
        tolerance: Double = 1e-3,
        maxIterations: Int = 100,
        restarts: Int = 1,
        reservoirSize: Int = 10_000
    ) {
        self.components = components
        self.seed = seed
        self.tolerance = tolerance
        self.maxIterations = maxIterations
        self.restarts = restarts
        self.reservoirSize = reservoirSize
    }

    /// Options with an explicit initialisation (reference tests start EM where scikit-learn does).
    package init(
        components: Int,
        tolerance: Double,
        maxIterations: Int,
        initialization: Initialization
    ) {
        self.init(components: components, tolerance: tolerance, maxIterations: maxIterations)
        self.initialization = initialization
    }
}

/// Everything a fit needs besides the data.
public struct FitConfiguration: Sendable {
    /// Density family: "gda" (the default), "tied", "gmm-full", "gmm-diag", or another registered family.
    public var family: DensityFamilyName
    /// The families ``family`` is looked up in.
    package var families: DensityFamilyRegistry = .standard
    /// Pooling, normalisation, PCA.
    public var preparation: PreparationOptions
    /// Covariance regularisation (class Gaussians, tied and background).
    public var regularization: Regularization
    /// Regularisation of mixture components (lambda fixed; default: 1e-2 of the average variance of the data added
    /// to each component's diagonal, which gave the best mean OOD AUROC on every text layer of Docs/Evaluation.md
    /// and was within 0.008 of the best on the image layers).
    public var mixtureRegularization: Regularization
    /// Mixture options (families gmm-full and gmm-diag).
    public var mixture: MixtureOptions
    /// Fraction carved off for calibration when no calibration source is given.
    public var calibrationFraction: Double
    /// Seed of the split assignment.
    public var splitSeed: UInt64
    /// Parameter precision of the fitted model.
    public var precision: ElementType
    /// Fit the background Gaussian for relative Mahalanobis.
    public var fitBackground: Bool
    /// Name of the layer, stored in the model.
    public var layerName: String
    /// Calibrate the class posterior p(y | z) on the labelled calibration inputs
    /// (``LatentModel/posteriorTemperature``); without labels, or when off, it stays Bayes' rule on the density.
    /// For regression families, the posterior over target bins, on the calibration inputs' targets.
    public var calibratePosterior: Bool
    /// Regression families: the number of quantile bins the targets are cut into (fewer when targets repeat or a
    /// bin would hold fewer than 2 fitting inputs).
    public var targetBinCount: Int = 10
    /// Regression families: the bins the fitter cut the targets into, set by the fitter.
    package var binnedTargets: TargetBins? = nil
    /// A neighbour index beside the density (``LatentModel/hasNeighbourIndex``; the default options), or nil for
    /// none. With it, the model's epistemic p-value combines the surprise's with the distance to the nearest stored
    /// fitting row's (``LatentModel/epistemicPValue(_:)``; Docs/Evaluation.md has the evidence for the default).
    public var neighbours: NeighbourOptions? = NeighbourOptions()

    /// Defaults: GDA, flatten, held-out shrinkage, 20 % calibration, float32, background on, posterior calibrated,
    /// a neighbour index of the default options.
    public init(
        family: DensityFamilyName = "gda",
        preparation: PreparationOptions = PreparationOptions(),
        regularization: Regularization = Regularization(),
        mixtureRegularization: Regularization = Regularization(shrinkage: .fixed(0), floorRatio: 1e-2),
        mixture: MixtureOptions = MixtureOptions(),
        calibrationFraction: Double = 0.2,
        splitSeed: UInt64 = 0,
        precision: ElementType = .float32,
        fitBackground: Bool = true,
        layerName: String = "layer",
        calibratePosterior: Bool = true
    ) {
        self.family = family
        self.preparation = preparation
        self.regularization = regularization
        self.mixtureRegularization = mixtureRegularization
        self.mixture = mixture
        self.calibrationFraction = calibrationFraction
        self.splitSeed = splitSeed
        self.precision = precision
        self.fitBackground = fitBackground
        self.layerName = layerName
        self.calibratePosterior = calibratePosterior
    }
}

/// Progress of a fit, for a caller-supplied handler.
public struct FitProgress: Sendable {
    /// What the fit is doing.
    public enum Stage: String, Sendable {
        /// The first pass: sufficient statistics of the prepared activations.
        case statistics
        /// Fitting the PCA projection.
        case projection
        /// Choosing the covariance shrinkage and fitting the density.
        case regularization
        /// An EM iteration of a mixture (``FitProgress/iteration``, ``FitProgress/restart``).
        case expectationMaximization = "em"
        /// Scoring the held-out calibration inputs.
        case calibration
        /// The model is complete.
        case done
    }
    /// Stage.
    public var stage: Stage
    /// Samples read so far in this pass.
    public var samples: Int
    /// EM iteration (1-based) when in EM.
    public var iteration: Int
    /// EM restart (0-based).
    public var restart: Int
    /// Mean log-likelihood at the last EM iteration.
    public var logLikelihood: Double
}

extension FitConfiguration {
    /// Whether the configured family is fitted from real-valued targets (a regression family).
    package var fitsTargets: Bool { families.family(named: family.rawValue)?.needsTargets == true }

    /// Rows the statistics pass keeps in its reservoir sample: a mixture's k-means++ start and the neighbour index
    /// share it (the smaller sample is a prefix of the larger, both ordered by key).
    package func reservoirCapacity(pooledDimension p: Int) -> Int {
        max(mixtureReservoir, neighbours?.rows(pooledDimension: p) ?? 0)
    }

    /// Rows a mixture's k-means++ start takes from the reservoir (0 for the other families).
    package var mixtureReservoir: Int {
        (families.family(named: family.rawValue)?.needsPasses ?? false) ? mixture.reservoirSize : 0
    }

    /// The shrinkage EM applies to mixture components (only a fixed lambda applies; 0 otherwise).
    var mixtureLambda: Double {
        if case .fixed(let l) = mixtureRegularization.shrinkage { return l }
        return 0
    }
}
