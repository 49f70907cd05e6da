import Metrics

/// The monitor's swift-metrics instruments, created from the factory the host passes (never the global one
/// unless the host asks for it). Names (with the default prefix `latentwatch`):
/// - `_inputs_total`, `_rejected_total`, `_dropped_total`, `_alerts_total{kind}`, `_sink_failures_total`,
///   `_sink_dropped_total`, `_recorder_failures_total`: counters;
/// - `_p_value{layer}`: each layer's epistemic p-value (the surprise's, or combined with a neighbour index; a histogram when the factory aggregates;
///   ``MonitorMetricsBuckets`` has the buckets meant for it); `_fused_p_value`: the fused p-value;
/// - `_scoring_duration_seconds`: scoring one input on every layer (a timer);
/// - `_shift_log_evidence`: the shift detector's log evidence (gauge); `_shift_layer_log_capital{layer}`: the log
///   capital of each layer's martingale in the layer mixture (gauge);
/// - `_queue_depth`: inputs waiting in background mode (gauge);
/// - `_model_replacements_total`: times ``Monitor/replaceModels(_:)`` swapped the models (counter).
struct MonitorMetrics: Sendable {
    let inputs: Counter
    let rejected: Counter
    let dropped: Counter
    let alerts: [Alert.Kind: Counter]
    let sinkFailures: Counter
    let sinkDrops: Counter
    let recorderFailures: Counter
    let pValue: [Recorder]
    let fusedPValue: Recorder
    let scoringDuration: Timer
    let shiftEvidence: Gauge
    let layerLogCapital: [Gauge]
    let queueDepth: Gauge
    let modelReplacements: Counter

    init(prefix: String, layers: [String], factory: any MetricsFactory) {
        inputs = Counter(label: "\(prefix)_inputs_total", factory: factory)
        rejected = Counter(label: "\(prefix)_rejected_total", factory: factory)
        dropped = Counter(label: "\(prefix)_dropped_total", factory: factory)
        var a: [Alert.Kind: Counter] = [:]
        for kind in Alert.Kind.allCases {
            a[kind] = Counter(label: "\(prefix)_alerts_total", dimensions: [("kind", kind.rawValue)], factory: factory)
        }
        alerts = a
        sinkFailures = Counter(label: "\(prefix)_sink_failures_total", factory: factory)
        sinkDrops = Counter(label: "\(prefix)_sink_dropped_total", factory: factory)
        recorderFailures = Counter(label: "\(prefix)_recorder_failures_total", factory: factory)
        pValue = layers.map {
            Recorder(label: "\(prefix)_p_value", dimensions: [("layer", $0)], aggregate: true, factory: factory)
        }
        fusedPValue = Recorder(label: "\(prefix)_fused_p_value", aggregate: true, factory: factory)
        scoringDuration = Timer(label: "\(prefix)_scoring_duration_seconds", factory: factory)
        shiftEvidence = Gauge(label: "\(prefix)_shift_log_evidence", factory: factory)
        layerLogCapital = layers.map {
            Gauge(label: "\(prefix)_shift_layer_log_capital", dimensions: [("layer", $0)], factory: factory)
        }
        queueDepth = Gauge(label: "\(prefix)_queue_depth", factory: factory)
        modelReplacements = Counter(label: "\(prefix)_model_replacements_total", factory: factory)
    }
}

/// Histogram buckets meant for the monitor's metrics, for a host that sets up its metrics backend (the
/// sidecar gives them to its Prometheus factory).
public enum MonitorMetricsBuckets {
    /// For `latentwatch_p_value` and `latentwatch_fused_p_value`: from 1e-4 (so alerts at alpha = 0.001 and
    /// below stay visible) to 1, about three per decade.
    public static let pValue: [Double] = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]

    /// For `latentwatch_scoring_duration_seconds`, in seconds: 10 us to 100 ms.
    public static let scoringSeconds: [Double] = [
        1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
    ]
}
