/// What the monitor concluded about one input.
public struct Assessment: Sendable, Equatable {
    /// Flags raised by this input.
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The fused epistemic p-value is at most the policy's alpha.
        public static let outOfDistribution = Flags(rawValue: 1)
        /// The aleatoric p-value is at most the aleatoric alpha: of the entropy of p(y | z) for classifiers, of
        /// the predictive spread for regression models.
        public static let ambiguous = Flags(rawValue: 2)
        /// A window-rate episode is open.
        public static let windowAlarm = Flags(rawValue: 4)
        /// A shift episode is open.
        public static let shiftAlarm = Flags(rawValue: 8)
        /// The classifier's outputs predict a different class than p(y | z) at the primary layer; for a
        /// regression model, the disagreement p-value of the host's prediction is at most
        /// ``AlertPolicy/disagreementAlpha``.
        public static let disagreement = Flags(rawValue: 16)
    }

    /// One layer's part.
    public struct Layer: Sendable, Equatable {
        /// Layer name.
        public var name: String
        /// -log p(z).
        public var surprise: Double
        /// The layer's epistemic p-value (``LatentModel/epistemicPValue(_:)``): the surprise's conformal p-value, or
        /// with a neighbour index that of the surprise and the neighbour distance combined.
        public var pValue: Double
    }

    /// Sequence number in the monitor's stream.
    public var index: Int
    /// The host's request id.
    public var requestID: String?
    /// Per-layer surprise and p-value, in the monitor's layer order.
    public var layers: [Layer]
    /// Layers' p-values fused by the policy's rule.
    public var fusedPValue: Double
    /// Entropy of p(y | z) at the primary layer (nats).
    public var entropy: Double
    /// Conformal p-value of that entropy, when calibrated.
    public var entropyPValue: Double?
    /// Class predicted from p(y | z) at the primary layer (nil for mixtures and regression models).
    public var predictedLabel: Int?
    /// A regression model's prediction of the target from the primary layer (nil for classifiers and mixtures).
    public var prediction: Double? = nil
    /// The standard deviation of that prediction's predictive distribution (nil for classifiers and mixtures).
    public var predictiveSpread: Double? = nil
    /// Conformal p-value of the predictive spread, when calibrated: the aleatoric p-value of regression models.
    public var spreadPValue: Double? = nil
    /// The conformal prediction interval of the target at ``AlertPolicy/predictionIntervalLevel``
    /// (``LatentModel/predictionInterval(prediction:spread:level:)``); nil for classifiers, mixtures, regression
    /// models fitted without calibration targets, and when the policy's level is nil.
    public var predictionInterval: ClosedRange<Double>? = nil
    /// The host's own prediction of the target, when it passed one (``ModelOutputKind/prediction``).
    public var hostPrediction: Double? = nil
    /// |host prediction - ``prediction``|: how far the host's output lies from the latent density's prediction
    /// (nil without a host prediction or a regression model).
    public var disagreement: Double? = nil
    /// Conformal p-value of that distance, when the model's disagreement is calibrated
    /// (``LatentModelFitter/calibrateDisagreement(_:calibration:hostPredictions:)``).
    public var disagreementPValue: Double? = nil
    /// Flags.
    public var flags: Flags
    /// The shift detector's evidence after this input, on the log scale (log capital in anytime mode, log
    /// Shiryaev-Roberts statistic in change mode); compare with ``Monitor/shiftLogThreshold``. Nil when off.
    public var shiftLogEvidence: Double? = nil
    /// The classifier's outputs summarised (confidence, entropy, energy), when the host passed them.
    public var output: OutputSummary? = nil

    /// An empty assessment, to be filled by ``Monitor/assess(_:requestID:into:)``.
    public init() {
        index = -1
        requestID = nil
        layers = []
        fusedPValue = 1
        entropy = 0
        entropyPValue = nil
        predictedLabel = nil
        flags = []
        output = nil
    }

    init(
        index: Int,
        requestID: String?,
        layers: [Layer],
        fusedPValue: Double,
        entropy: Double,
        entropyPValue: Double?,
        predictedLabel: Int?,
        flags: Flags,
        shiftLogEvidence: Double? = nil
    ) {
        self.index = index
        self.requestID = requestID
        self.layers = layers
        self.fusedPValue = fusedPValue
        self.entropy = entropy
        self.entropyPValue = entropyPValue
        self.predictedLabel = predictedLabel
        self.flags = flags
        self.shiftLogEvidence = shiftLogEvidence
    }
}
