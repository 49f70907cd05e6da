/// One monitored layer: a name the host uses and the fitted model of its activations.
public struct MonitoredLayer: Sendable {
    /// Layer name (as in the model file, or the host's own).
    public var name: String
    /// The fitted model.
    public var model: LatentModel

    /// Creates a monitored layer.
    public init(name: String? = nil, model: LatentModel) {
        self.name = name ?? model.metadata.layer
        self.model = model
    }
}

/// How a monitor runs its scoring.
public enum MonitorMode: Sendable, Equatable {
    /// Score on the caller's thread and return the assessment.
    case inline
    /// Copy activations into a bounded queue and score them in batches on a worker; deliver through sinks
    /// and the assessment handler.
    case background(capacity: Int = 4096, batchSize: Int = 32, whenFull: OverflowPolicy = .dropNewest)
}

/// What a full background queue does with a new input.
public enum OverflowPolicy: String, Sendable, Equatable {
    /// Drop the new input and count it.
    case dropNewest
    /// Refuse it with ``LatentWatchError/Code/queueFull`` and count it.
    case reject
}

/// Everything a monitor needs besides its sinks, logger and metrics factory.
public struct MonitorConfiguration: Sendable {
    /// Monitored layers, in the order the host passes their activations.
    public var layers: [MonitoredLayer]
    /// Alert policy.
    public var policy: AlertPolicy
    /// Inline or background scoring.
    public var mode: MonitorMode
    /// Index of the layer whose p(y | z) gives the aleatoric entropy and the predicted class
    /// (default: the last layer).
    public var primaryLayer: Int?
    /// Alerts buffered per sink before new ones are dropped (and counted).
    public var sinkBufferCapacity: Int
    /// Prefix of metric labels.
    public var metricsPrefix: String
    /// Records the activations of assessed inputs (sampled per its configuration; nil: none). Its layers
    /// must match the monitored layers' input sizes. Failures are logged and counted, never thrown.
    public var recorder: ActivationRecorder?
    /// The model outputs hosts may pass with each input: kind and count (nil: none are expected).
    public var outputs: (kind: ModelOutputKind, count: Int)?

    /// Creates a configuration.
    public init(
        layers: [MonitoredLayer],
        policy: AlertPolicy = AlertPolicy(),
        mode: MonitorMode = .inline,
        primaryLayer: Int? = nil,
        sinkBufferCapacity: Int = 4096,
        metricsPrefix: String = "latentwatch",
        recorder: ActivationRecorder? = nil,
        outputs: (kind: ModelOutputKind, count: Int)? = nil
    ) {
        self.recorder = recorder
        self.outputs = outputs
        self.layers = layers
        self.policy = policy
        self.mode = mode
        self.primaryLayer = primaryLayer
        self.sinkBufferCapacity = sinkBufferCapacity
        self.metricsPrefix = metricsPrefix
    }
}
