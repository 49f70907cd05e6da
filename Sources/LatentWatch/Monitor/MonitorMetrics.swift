import Metrics

/// The monitor's swift-metrics instruments, created from the factory the host passes (never the global one
/// unless the host asks for it).
struct MonitorMetrics: Sendable {
    let inputs: Counter
    let rejected: Counter
    let dropped: Counter
    let alerts: [Alert.Kind: Counter]
    let sinkFailures: Counter
    let sinkDrops: Counter
    let recorderFailures: Counter
    let surprise: [Recorder]
    let shiftEvidence: Gauge
    let queueDepth: Gauge

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
        surprise = layers.map {
            Recorder(label: "\(prefix)_surprise", dimensions: [("layer", $0)], aggregate: true, factory: factory)
        }
        shiftEvidence = Gauge(label: "\(prefix)_shift_log_evidence", factory: factory)
        queueDepth = Gauge(label: "\(prefix)_queue_depth", factory: factory)
    }
}
