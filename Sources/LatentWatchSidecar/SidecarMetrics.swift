import LatentWatchWire
import Metrics

/// The server's own instruments (`latentwatch_serve_*`), next to the monitor's.
struct SidecarMetrics: Sendable {
    let openConnections: Gauge
    let connections: Counter
    let refusedConnections: Counter
    let frames: Counter
    let inputs: Counter
    let rejectedInputs: Counter
    let droppedInputs: Counter
    let protocolErrors: [WireError.Code: Counter]
    let slowConsumers: Counter
    let queueBytes: Gauge
    let httpRequests: Counter
    let reloadSuccesses: Counter
    let reloadFailures: Counter
    let lastReloadSuccessful: Gauge
    let lastReloadSuccessTime: Gauge

    init(factory: MetricsFactory, prefix: String = "latentwatch_serve") {
        openConnections = Gauge(label: "\(prefix)_open_connections", factory: factory)
        connections = Counter(label: "\(prefix)_connections_total", factory: factory)
        refusedConnections = Counter(label: "\(prefix)_refused_connections_total", factory: factory)
        frames = Counter(label: "\(prefix)_frames_total", factory: factory)
        inputs = Counter(label: "\(prefix)_inputs_total", factory: factory)
        rejectedInputs = Counter(label: "\(prefix)_rejected_inputs_total", factory: factory)
        droppedInputs = Counter(label: "\(prefix)_dropped_inputs_total", factory: factory)
        var e: [WireError.Code: Counter] = [:]
        for c in WireError.Code.known {
            e[c] = Counter(label: "\(prefix)_protocol_errors_total", dimensions: [("code", c.name)], factory: factory)
        }
        protocolErrors = e
        slowConsumers = Counter(label: "\(prefix)_slow_consumer_disconnects_total", factory: factory)
        queueBytes = Gauge(label: "\(prefix)_queue_bytes", factory: factory)
        httpRequests = Counter(label: "\(prefix)_http_requests_total", factory: factory)
        reloadSuccesses = Counter(
            label: "\(prefix)_reloads_total",
            dimensions: [("result", "success")],
            factory: factory
        )
        reloadFailures = Counter(
            label: "\(prefix)_reloads_total",
            dimensions: [("result", "failure")],
            factory: factory
        )
        lastReloadSuccessful = Gauge(label: "\(prefix)_last_reload_successful", factory: factory)
        lastReloadSuccessTime = Gauge(label: "\(prefix)_last_reload_success_timestamp_seconds", factory: factory)
    }
}
