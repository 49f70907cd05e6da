import Foundation
import LatentWatchNumerics
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Watches a model's forward pass: scores the activations of each monitored layer, fuses the layers'
/// calibrated p-values, runs the stream detectors and hands alerts to the sinks.
///
/// Thread-safe: many threads may call ``assess(_:requestID:)`` (inline mode) or ``submit(_:requestID:)``
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
    let channels: [SinkChannel]
    let metrics: MonitorMetrics
    let logger: Logger
    let queue: InputQueue?
    let onAssessment: (@Sendable (Assessment) -> Void)?
    let closed = Atomic<Bool>(false)

    struct SinkChannel: Sendable {
        let sink: any AlertSink
        let stream: AsyncStream<Alert>
        let continuation: AsyncStream<Alert>.Continuation
    }

    /// Creates a monitor.
    /// - Parameters:
    ///   - configuration: layers, policy, mode.
    ///   - sinks: alert destinations (each isolated from the others).
    ///   - logger: the monitor's own diagnostics (sink failures, drops).
    ///   - metricsFactory: where counters, the surprise histogram and gauges go (for example the host's
    ///     Prometheus factory). Nothing is recorded when nil.
    ///   - onAssessment: called with every assessment made in background mode, on the worker.
    public init(
        configuration: MonitorConfiguration,
        sinks: [any AlertSink] = [],
        logger: Logger = Logger(label: "latentwatch.monitor"),
        metricsFactory: MetricsFactory? = nil,
        onAssessment: (@Sendable (Assessment) -> Void)? = nil
    ) throws(LatentWatchError) {
        guard !configuration.layers.isEmpty else {
            throw LatentWatchError(.layerCountMismatch, "a monitor needs at least one layer")
        }
        self.configuration = configuration
        self.layers = configuration.layers
        let p = configuration.primaryLayer ?? configuration.layers.count - 1
        guard p >= 0 && p < configuration.layers.count else {
            throw LatentWatchError(
                .layerCountMismatch,
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
                pValueSlack: corrections.pValueSlack
            )
        )
        self.channels = sinks.map { sink in
            let (stream, continuation) = AsyncStream.makeStream(
                of: Alert.self,
                bufferingPolicy: .bufferingOldest(max(1, configuration.sinkBufferCapacity))
            )
            return SinkChannel(sink: sink, stream: stream, continuation: continuation)
        }
        self.metrics = MonitorMetrics(
            prefix: configuration.metricsPrefix,
            layers: configuration.layers.map(\.name),
            factory: metricsFactory ?? NOOPMetricsHandler.instance
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

    // MARK: Inline

    /// Scores one input on the caller's thread (either mode) and feeds the stream detectors.
    /// `activations[i]` holds the raw activation of layer i, in the shape its model declares.
    public func assess(
        _ activations: [UnsafeBufferPointer<Float>],
        requestID: String? = nil
    ) throws(LatentWatchError)
        -> Assessment
    {
        var a = Assessment()
        try assess(activations, requestID: requestID, into: &a)
        return a
    }

    /// Scores one input and writes the assessment into `result`, reusing its storage. With one `result`
    /// kept per thread (and the activations array reused too), a call allocates nothing in steady state,
    /// unless it raises an alert or the recorder writes a chunk.
    ///
    /// `outputs` are the classifier's logits or probabilities for this input, as configured in
    /// ``MonitorConfiguration/outputs``: the assessment then carries their summary (``OutputSummary``) and
    /// the ``Assessment/Flags/disagreement`` flag when they predict another class than p(y | z).
    public func assess(
        _ activations: [UnsafeBufferPointer<Float>],
        outputs: UnsafeBufferPointer<Float>? = nil,
        requestID: String? = nil,
        into result: inout Assessment
    ) throws(LatentWatchError) {
        try checkLayerCount(activations.count)
        let summary = try summariseOutputs(outputs)
        try assessCore(requestID: requestID, outputs: outputs, summary: summary, into: &result) { activations[$0] }
    }

    /// Multi-layer assessment with model outputs, returning a new assessment.
    public func assess(
        _ activations: [UnsafeBufferPointer<Float>],
        outputs: UnsafeBufferPointer<Float>?,
        requestID: String? = nil
    ) throws(LatentWatchError) -> Assessment {
        var a = Assessment()
        try assess(activations, outputs: outputs, requestID: requestID, into: &a)
        return a
    }

    func summariseOutputs(_ outputs: UnsafeBufferPointer<Float>?) throws(LatentWatchError) -> OutputSummary? {
        guard let outputs else { return nil }
        guard let expected = configuration.outputs else {
            metrics.rejected.increment()
            throw LatentWatchError(.invalidOutputs, "outputs were passed, but the monitor is not configured for them")
        }
        guard outputs.count == expected.count else {
            metrics.rejected.increment()
            throw LatentWatchError(
                .invalidOutputs,
                "expected \(expected.count) outputs (\(expected.kind.rawValue)), got \(outputs.count)"
            )
        }
        guard let s = OutputSummary.summarise(outputs, kind: expected.kind) else {
            metrics.rejected.increment()
            throw LatentWatchError(.invalidOutputs, "outputs hold NaN/Inf or negative probabilities")
        }
        return s
    }

    /// Single-layer form of ``assess(_:requestID:into:)``: no array needed.
    public func assess(
        _ activation: UnsafeBufferPointer<Float>,
        requestID: String? = nil,
        into result: inout Assessment
    ) throws(LatentWatchError) {
        try checkLayerCount(1)
        try assessCore(requestID: requestID, outputs: nil, summary: nil, into: &result) { _ in activation }
    }

    func assessCore(
        requestID: String?,
        outputs: UnsafeBufferPointer<Float>?,
        summary: OutputSummary?,
        into result: inout Assessment,
        _ activation: (Int) -> UnsafeBufferPointer<Float>
    ) throws(LatentWatchError) {
        let ws = takeWorkspaces()
        defer { returnWorkspaces(ws) }
        for i in 0..<layers.count {
            do {
                ws.scores[i] = try layers[i].model.score(activation(i), workspace: ws.scoring[i])
            } catch {
                metrics.rejected.increment()
                throw LatentWatchError(.invalidActivation, "layer '\(layers[i].name)': \(error.message)")
            }
        }
        conclude(requestID: requestID, ws: ws, into: &result)
        result.output = summary
        if let summary, let predicted = result.predictedLabel {
            // Output index i is class i of the primary layer's model (its sorted class labels).
            let labels = layers[primary].model.density.classLabels
            let outputLabel =
                labels.map { summary.predicted < $0.count ? $0[summary.predicted] : -1 } ?? summary.predicted
            if outputLabel != predicted { result.flags.insert(.disagreement) }
        }
        if configuration.recorder != nil {
            record((0..<layers.count).map(activation), outputs: outputs, assessment: result)
        }
    }

    /// Hands an assessed input to the recorder; a failure is logged and counted.
    func record(
        _ activations: [UnsafeBufferPointer<Float>],
        outputs: UnsafeBufferPointer<Float>? = nil,
        assessment a: Assessment
    ) {
        guard let recorder = configuration.recorder else { return }
        do {
            try recorder.record(activations, outputs: outputs, requestID: a.requestID, index: a.index)
        } catch {
            metrics.recorderFailures.increment()
            logger.warning("recording an input failed", metadata: ["error": "\(error)", "index": "\(a.index)"])
        }
    }

    /// Scores one input given as IEEE binary16 activations (converted into per-thread buffers).
    public func assess(
        half activations: [UnsafeBufferPointer<Float16>],
        requestID: String? = nil
    ) throws(LatentWatchError)
        -> Assessment
    {
        try checkLayerCount(activations.count)
        let ws = takeWorkspaces()
        defer { returnWorkspaces(ws) }
        for i in 0..<layers.count {
            do {
                try layers[i].model.validate(half: activations[i])
                let src = activations[i]
                UnsafeRawPointer(src.baseAddress!).withMemoryRebound(to: UInt16.self, capacity: src.count) {
                    HalfConversion.convert($0, to: ws.converted[i].baseAddress!, count: src.count)
                }
                ws.scores[i] = try layers[i].model.score(UnsafeBufferPointer(ws.converted[i]), workspace: ws.scoring[i])
            } catch {
                metrics.rejected.increment()
                throw LatentWatchError(.invalidActivation, "layer '\(layers[i].name)': \(error.message)")
            }
        }
        let a = conclude(requestID: requestID, ws: ws)
        if configuration.recorder != nil {
            record(
                (0..<layers.count).map {
                    UnsafeBufferPointer(start: ws.converted[$0].baseAddress, count: activations[$0].count)
                },
                assessment: a
            )
        }
        return a
    }

    /// Single-layer convenience.
    public func assess(
        _ activation: UnsafeBufferPointer<Float>,
        requestID: String? = nil
    ) throws(LatentWatchError)
        -> Assessment
    {
        var a = Assessment()
        try assess(activation, requestID: requestID, into: &a)
        return a
    }

    /// Fuses, updates the stream, raises alerts and builds the assessment of the input scored into
    /// `ws.scores`.
    func conclude(requestID: String?, ws: LayerWorkspaces) -> Assessment {
        var a = Assessment()
        conclude(requestID: requestID, ws: ws, into: &a)
        return a
    }

    /// Fuses, updates the stream, raises alerts and writes the assessment into `result` in place (its
    /// `layers` storage is reused when it already has one entry per layer).
    func conclude(requestID: String?, ws: LayerWorkspaces, into result: inout Assessment) {
        let scores = ws.scores
        let policy = configuration.policy
        if result.layers.count != layers.count {
            result.layers = layers.map { Assessment.Layer(name: $0.name, surprise: 0, pValue: 1) }
        }
        for i in 0..<layers.count {
            let s = scores[i].surprise
            let p = layers[i].model.calibration.pValue(.surprise, s) ?? 1
            ws.pValues[i] = p
            metrics.surprise[i].record(s)
            if result.layers[i].name != layers[i].name { result.layers[i].name = layers[i].name }
            result.layers[i].surprise = s
            result.layers[i].pValue = p
        }
        let fused = policy.fusion.fuse(UnsafeBufferPointer(ws.pValues))
        let prim = scores[primary]
        let entropyP = layers[primary].model.calibration.pValue(.entropy, prim.entropy)
        let (index, events, evidence) = state.withLock { s in
            let r = s.observe(fused, layers: UnsafeBufferPointer(ws.pValues))
            return (r.index, r.events, s.shift?.logEvidence)
        }
        metrics.inputs.increment()
        if let evidence, evidence.isFinite { metrics.shiftEvidence.record(evidence) }
        var flags: Assessment.Flags = []
        let now = Date().timeIntervalSince1970
        if fused <= policy.inputAlpha {
            flags.insert(.outOfDistribution)
            emit(
                Alert(
                    kind: .input,
                    index: index,
                    requestID: requestID,
                    pValue: fused,
                    detail: "input \(index) is out of distribution (fused p = \(fused))",
                    time: now
                )
            )
        }
        if let a = policy.aleatoricAlpha, let ep = entropyP, ep <= a {
            flags.insert(.ambiguous)
            emit(
                Alert(
                    kind: .aleatoric,
                    index: index,
                    requestID: requestID,
                    pValue: ep,
                    detail: "input \(index) is ambiguous (entropy \(prim.entropy), p = \(ep))",
                    time: now
                )
            )
        }
        switch events.window {
        case .fired(let count):
            emit(
                Alert(
                    kind: .window,
                    index: index,
                    requestID: requestID,
                    pValue: nil,
                    detail: "\(count) of the last \(policy.window?.length ?? 0) inputs have p <= \(policy.inputAlpha)",
                    time: now
                )
            )
        case .resolved:
            emit(
                Alert(
                    kind: .resolved,
                    index: index,
                    episode: .window,
                    detail: "the rate of low p-values is back to normal",
                    time: now
                )
            )
        case .none: break
        }
        if events.shiftFired {
            emit(
                Alert(
                    kind: .shift,
                    index: index,
                    requestID: requestID,
                    pValue: nil,
                    detail: "distribution shift detected (conformal test martingale)",
                    time: now
                )
            )
        }
        if events.shiftResolved {
            emit(
                Alert(
                    kind: .resolved,
                    index: index,
                    episode: .shift,
                    detail: "no further shift alarms for the cooldown",
                    time: now
                )
            )
        }
        if events.windowOpen { flags.insert(.windowAlarm) }
        if events.shiftOpen { flags.insert(.shiftAlarm) }
        result.index = index
        result.requestID = requestID
        result.fusedPValue = fused
        result.entropy = prim.entropy
        result.entropyPValue = entropyP
        result.predictedLabel = prim.predictedLabel
        result.flags = flags
        result.shiftLogEvidence = evidence
    }

    func emit(_ alert: Alert) {
        metrics.alerts[alert.kind]?.increment()
        for c in channels {
            if case .dropped = c.continuation.yield(alert) { metrics.sinkDrops.increment() }
        }
    }

    /// Refuses (and counts) a call whose number of activations differs from the number of layers.
    func checkLayerCount(_ n: Int) throws(LatentWatchError) {
        guard n == layers.count else {
            metrics.rejected.increment()
            throw LatentWatchError(
                .layerCountMismatch,
                "got \(n) activations for \(layers.count) monitored layers (\(layerNames))"
            )
        }
    }

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
    /// The current input's scores, one per layer.
    let scores: UnsafeMutableBufferPointer<LatentScores>
    /// Float32 copies of binary16 activations, one buffer per layer.
    let converted: [UnsafeMutableBufferPointer<Float>]

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
    }

    deinit {
        pValues.deallocate()
        scores.deallocate()
        for b in converted { b.deallocate() }
    }
}
