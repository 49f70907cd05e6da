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
public final class Monitor: Service, Sendable {
    let configuration: MonitorConfiguration
    let layers: [MonitoredLayer]
    let primary: Int
    let state: LockedValue<StreamState>
    let pool = LockedValue<[LayerWorkspaces]>([])
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
        self.configuration = configuration
        self.layers = configuration.layers
        let p = configuration.primaryLayer ?? configuration.layers.count - 1
        guard p >= 0 && p < configuration.layers.count else {
            throw LatentWatchError(
                .invalidConfiguration,
                "primary layer \(p) is not one of the \(configuration.layers.count) layers"
            )
        }
        self.primary = p
        let policy = configuration.policy
        // Bonferroni: fused p <= alpha needs some layer at <= alpha / L; the corrections make the shift
        // detector's and the window's guarantees hold given the fixed calibration sets (Docs/Statistics.md).
        let corrections = policy.calibrationCorrections(
            calibrationCounts: configuration.layers.map { $0.model.calibration.distributions[.surprise]?.count ?? 0 }
        )
        self.state = LockedValue(
            StreamState(
                policy: policy,
                windowNullRate: corrections.windowNullRate,
                corrections: corrections.shift
            )
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
                inputCounts: configuration.layers.map { $0.model.preparation.inputCount }
            )
        } else {
            queue = nil
        }
    }

    /// The shift detector's alarm threshold on the log scale (nil when shift detection is off).
    public var shiftLogThreshold: Double? {
        configuration.policy.shift.map { ShiftDetector(mode: $0).logThreshold }
    }

    /// Names of the monitored layers, in order.
    public var layerNames: [String] { layers.map(\.name) }

    // MARK: Workspaces

    func takeWorkspaces() -> LayerWorkspaces {
        if let ws = pool.withLock({ $0.popLast() }) { return ws }
        return LayerWorkspaces(layers: layers)
    }

    func returnWorkspaces(_ ws: LayerWorkspaces) {
        pool.withLock { $0.append(ws) }
    }
}

/// Per-thread scoring buffers for every layer; used by one thread at a time through the monitor's pool.
final class LayerWorkspaces: @unchecked Sendable {
    let scoring: [ScoringWorkspace]
    let pValues: UnsafeMutableBufferPointer<Double>
    /// Each layer's shift martingale's log capital after the current input (for the metrics).
    let layerLogCapital: UnsafeMutableBufferPointer<Double>
    /// The current input's scores, one per layer.
    let scores: UnsafeMutableBufferPointer<LatentScores>
    /// Float32 copies of binary16 activations, one buffer per layer.
    let converted: [UnsafeMutableBufferPointer<Float>]
    /// The current input's float32 activations, one per layer (for the recorder).
    let current: UnsafeMutableBufferPointer<UnsafeBufferPointer<Float>>

    init(layers: [MonitoredLayer]) {
        scoring = layers.map { $0.model.makeWorkspace() }
        converted = layers.map {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.model.preparation.inputCount)
            b.initialize(repeating: 0)
            return b
        }
        scores = .allocate(capacity: layers.count)
        scores.initialize(
            repeating: LatentScores(
                logDensity: 0,
                entropy: 0,
                predictedComponent: 0,
                predictedLabel: nil,
                maxPosterior: 0,
                mahalanobis: 0,
                relativeMahalanobis: 0
            )
        )
        pValues = .allocate(capacity: layers.count)
        pValues.initialize(repeating: 1)
        layerLogCapital = .allocate(capacity: layers.count)
        layerLogCapital.initialize(repeating: 0)
        current = .allocate(capacity: layers.count)
        current.initialize(repeating: UnsafeBufferPointer(start: nil, count: 0))
    }

    deinit {
        pValues.deallocate()
        layerLogCapital.deallocate()
        current.deallocate()
        scores.deallocate()
        for b in converted { b.deallocate() }
    }
}
