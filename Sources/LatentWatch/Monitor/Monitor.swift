import Foundation
import LatentWatchNumerics
public import Logging
public import Metrics
public import ServiceLifecycle

/// Watches a model's forward pass: scores the activations of each monitored layer, fuses the layers'
/// calibrated p-values, runs the stream detectors and hands alerts to the sinks.
///
/// Thread-safe: many threads may call ``assess(_:outputs:requestID:into:)`` (either mode) or ``submit(_:requestID:)``
/// (background mode) at once. Scoring never happens under a lock; the lock covers only the O(1) stream
/// update (and, in background mode, copying into the queue). Run the monitor as a swift-service-lifecycle
/// `Service` in the host's `ServiceGroup`: its `run()` delivers alerts to the sinks and, in background mode,
/// scores the queue; graceful shutdown drains the queue and flushes the sinks.
///
/// The models can be replaced while the monitor runs (``replaceModels(_:)``): every input is scored, calibrated and
/// concluded by exactly one set of models.
public final class Monitor: Service, Sendable {
    let configuration: MonitorConfiguration
    /// The models in use and the scoring workspaces made for them.
    let models: LockedValue<ModelSlot>
    /// Each layer's activation size (fixed for the monitor's life: a replacement must keep them).
    let inputCounts: [Int]
    let primary: Int
    let state: LockedValue<StreamState>
    let alerts: AlertDispatcher
    let metrics: MonitorMetrics
    let logger: Logger
    let queue: InputQueue?
    let onAssessment: (@Sendable (Assessment) -> Void)?
    /// Inputs the background worker has finished.
    let completed = PendingCount()

    /// Finished by ``shutDown()``: an inline monitor's `run()` waits on it instead of polling.
    let shutdownSignal = AsyncStream<Void>.makeStream()

    /// Creates a monitor.
    /// - Parameters:
    ///   - configuration: layers, policy, mode.
    ///   - sinks: alert destinations (each isolated from the others).
    ///   - logger: the monitor's own diagnostics (sink failures, drops).
    ///   - metricsFactory: where counters, the p-value histograms, the scoring timer and gauges go (for example the host's
    ///     Prometheus factory). Nothing is recorded when nil.
    ///   - onAssessment: called with every assessment made in background mode, on the worker.
    public init(
        configuration: MonitorConfiguration,
        sinks: [any AlertSink] = [],
        logger: Logger = Logger(label: "latentwatch.monitor"),
        metricsFactory: (any MetricsFactory)? = nil,
        onAssessment: (@Sendable (Assessment) -> Void)? = nil
    ) throws(LatentWatchError) {
        guard !configuration.layers.isEmpty else {
            throw LatentWatchError(.invalidConfiguration, "a monitor needs at least one layer")
        }
        guard configuration.policy.jumpRate >= 0 && configuration.policy.jumpRate <= 1 else {
            throw LatentWatchError(
                .invalidConfiguration,
                "the shift detector's jump rate is \(configuration.policy.jumpRate)",
                remedy: "choose a jump rate in [0, 1] (the default is 0.001)"
            )
        }
        ComputeCheck.warnOnce(logger)
        let joint = try configuration.policy.fusion.jointCalibration(for: configuration.layers) {
            logger.warning("\($0)")
        }
        self.configuration = configuration
        self.models = LockedValue(
            ModelSlot(set: ModelSet(generation: 0, layers: configuration.layers, joint: joint), pool: [])
        )
        self.inputCounts = configuration.layers.map { $0.model.preparation.inputCount }
        self.layerNames = configuration.layers.map(\.name)
        let p = configuration.primaryLayer ?? configuration.layers.count - 1
        guard p >= 0 && p < configuration.layers.count else {
            throw LatentWatchError(
                .invalidConfiguration,
                "primary layer \(p) is not one of the \(configuration.layers.count) layers"
            )
        }
        if let outputs = configuration.outputs, outputs.kind == .prediction {
            guard outputs.count == 1 else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "outputs of kind prediction have count \(outputs.count); a host passes one prediction per input",
                    remedy: "configure outputs (kind: .prediction, count: 1) (multi-output targets are not supported)"
                )
            }
            guard configuration.layers[p].model.targetBinCount != nil else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "outputs of kind prediction need a regression model at the primary layer "
                        + "'\(configuration.layers[p].name)' (family '\(configuration.layers[p].model.family)')",
                    remedy: "monitor a model fitted with a regression family and targets, or pass logits or "
                        + "probabilities"
                )
            }
        }
        self.primary = p
        self.state = LockedValue(
            StreamState(policy: configuration.policy, layers: configuration.layers, joint: joint, generation: 0)
        )
        self.metrics = MonitorMetrics(
            prefix: configuration.metricsPrefix,
            layers: configuration.layers.map(\.name),
            factory: metricsFactory ?? NOOPMetricsHandler.instance
        )
        self.alerts = AlertDispatcher(
            sinks: sinks,
            bufferCapacity: configuration.sinkBufferCapacity,
            metrics: metrics
        )
        self.logger = logger
        self.onAssessment = onAssessment
        if case .background(let capacity, let batch, let whenFull) = configuration.mode {
            queue = InputQueue(
                capacity: max(1, capacity),
                batchSize: max(1, batch),
                whenFull: whenFull,
                inputCounts: inputCounts
            )
        } else {
            queue = nil
        }
    }

    /// The shift detector's alarm threshold on the log scale (nil when shift detection is off).
    public var shiftLogThreshold: Double? {
        configuration.policy.shiftLogThreshold(layers: layerNames.count)
    }

    /// Names of the monitored layers, in order.
    public let layerNames: [String]

    /// The models in use, in layer order.
    public var currentLayers: [MonitoredLayer] { models.withLock { $0.set.layers } }

    /// The joint calibration the monitor fuses the layers' p-values with (``PValueFusion/automatic`` or
    /// ``PValueFusion/calibrated`` over models calibrated together), or nil when it fuses by Bonferroni or Cauchy.
    public var jointCalibration: JointCalibration? { models.withLock { $0.set.joint } }

    /// How many times the models were replaced (0 for the models the monitor was created with).
    public var modelGeneration: Int { models.withLock { $0.set.generation } }

    // MARK: Workspaces

    /// Workspaces for the current models: from the pool, or new (allocated only until the pool holds one per
    /// concurrent caller).
    func takeWorkspaces() -> LayerWorkspaces {
        let (ws, set) = models.withLock { slot -> (LayerWorkspaces?, ModelSet) in (slot.pool.popLast(), slot.set) }
        return ws ?? LayerWorkspaces(set)
    }

    /// Puts workspaces back into the pool, unless they were made for models since replaced.
    func returnWorkspaces(_ ws: LayerWorkspaces) {
        models.withLock { slot in
            if slot.set.generation == ws.generation { slot.pool.append(ws) }
        }
    }
}

/// One generation of a monitor's models.
final class ModelSet: Sendable {
    /// 0 for the monitor's first models, one more at each replacement.
    let generation: Int
    let layers: [MonitoredLayer]
    /// The joint calibration the layers' p-values are fused with, or nil (``PValueFusion/jointCalibration(for:)``).
    let joint: JointCalibration?

    init(generation: Int, layers: [MonitoredLayer], joint: JointCalibration?) {
        self.generation = generation
        self.layers = layers
        self.joint = joint
    }
}

/// The current models and the idle workspaces made for them.
struct ModelSlot: Sendable {
    var set: ModelSet
    var pool: [LayerWorkspaces]
}

/// Per-thread scoring buffers for every layer of one model generation; used by one thread at a time through the
/// monitor's pool. Carries the models it was made for, so an input is scored, calibrated and concluded by one set.
final class LayerWorkspaces: @unchecked Sendable {
    /// The generation of ``layers``.
    let generation: Int
    /// The models this input is scored with.
    let layers: [MonitoredLayer]
    /// Their joint calibration, when the monitor fuses with it.
    let joint: JointCalibration?
    let scoring: [ScoringWorkspace]
    let pValues: UnsafeMutableBufferPointer<Double>
    /// The joint calibration's member p-values of the current input (each layer's surprise, and neighbour distance
    /// where its model keeps an index; ``JointCalibration/memberKinds(of:)``).
    let memberPValues: UnsafeMutableBufferPointer<Double>
    /// Each layer's shift martingale's log capital after the current input (for the metrics).
    let layerLogCapital: UnsafeMutableBufferPointer<Double>
    /// The current input's scores, one per layer.
    let scores: UnsafeMutableBufferPointer<LatentScores>
    /// Float32 copies of binary16 activations, one buffer per layer.
    let converted: [UnsafeMutableBufferPointer<Float>]
    /// The current input's float32 activations, one per layer (for the recorder).
    let current: UnsafeMutableBufferPointer<UnsafeBufferPointer<Float>>

    init(_ set: ModelSet) {
        generation = set.generation
        layers = set.layers
        joint = set.joint
        scoring = layers.map { $0.model.makeWorkspace() }
        converted = layers.map {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.model.preparation.inputCount)
            b.initialize(repeating: 0)
            return b
        }
        scores = .allocate(capacity: layers.count)
        scores.initialize(repeating: .zero)
        pValues = .allocate(capacity: layers.count)
        pValues.initialize(repeating: 1)
        memberPValues = .allocate(capacity: max(1, JointCalibration.memberCount(of: layers.map(\.model))))
        memberPValues.initialize(repeating: 1)
        layerLogCapital = .allocate(capacity: layers.count)
        layerLogCapital.initialize(repeating: 0)
        current = .allocate(capacity: layers.count)
        current.initialize(repeating: UnsafeBufferPointer(start: nil, count: 0))
    }

    deinit {
        pValues.deallocate()
        memberPValues.deallocate()
        layerLogCapital.deallocate()
        current.deallocate()
        scores.deallocate()
        for b in converted { b.deallocate() }
    }
}
