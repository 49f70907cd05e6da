import LatentWatch
import Prometheus

/// What `/metrics` says about each metric: a `# HELP` line for every metric family (the monitor creates its
/// metrics through swift-metrics, which carries no help text, so the exposition is annotated here), and the
/// info gauges `latentwatch_build_info{version}` and `latentwatch_model_info{layer,fingerprint,family}`.
enum MetricsHelp {
    /// Help text by metric family name (default prefix `latentwatch`).
    static let text: [String: String] = [
        "latentwatch_inputs_total": "Inputs the monitor assessed.",
        "latentwatch_rejected_total": "Inputs the monitor refused (wrong size, NaN or infinite values, bad outputs).",
        "latentwatch_dropped_total": "Inputs dropped because the background queue was full.",
        "latentwatch_alerts_total": "Alerts raised, by kind (input, aleatoric, window, shift, resolved, disagreement).",
        "latentwatch_sink_failures_total": "Alerts a sink failed to deliver.",
        "latentwatch_sink_dropped_total": "Alerts dropped because a sink's buffer was full.",
        "latentwatch_recorder_failures_total": "Inputs the activation recorder failed to write.",
        "latentwatch_p_value": "Conformal p-value of each input's surprise, per layer (small: unusual).",
        "latentwatch_fused_p_value": "The layers' p-values fused by the alert policy's rule.",
        "latentwatch_scoring_duration_seconds": "Time to score one input on every layer.",
        "latentwatch_shift_log_evidence": "The shift detector's log evidence (alarm at its threshold).",
        "latentwatch_shift_layer_log_capital": "Log capital of each layer's martingale in the shift detector.",
        "latentwatch_queue_depth": "Inputs waiting in the monitor's background queue.",
        "latentwatch_model_replacements_total": "Times the monitor's models were replaced (reloaded).",
        "latentwatch_serve_open_connections": "Open binary-protocol connections.",
        "latentwatch_serve_connections_total": "Binary-protocol connections accepted.",
        "latentwatch_serve_refused_connections_total": "Connections refused (over the connection limit).",
        "latentwatch_serve_frames_total": "Binary-protocol frames received.",
        "latentwatch_serve_inputs_total": "Inputs received over the binary protocol and HTTP.",
        "latentwatch_serve_rejected_inputs_total": "Inputs refused by the sidecar before scoring.",
        "latentwatch_serve_dropped_inputs_total": "Inputs dropped because the ingest queue was full.",
        "latentwatch_serve_protocol_errors_total": "Malformed or refused frames, by error code.",
        "latentwatch_serve_slow_consumer_disconnects_total": "Clients disconnected for not reading their replies.",
        "latentwatch_serve_queue_bytes": "Bytes of activations waiting in the ingest queue.",
        "latentwatch_serve_http_requests_total": "HTTP requests served.",
        "latentwatch_serve_reloads_total": "Model reloads (SIGHUP or POST /v1/reload), by result (success, failure).",
        "latentwatch_serve_last_reload_successful":
            "1 when the last model reload succeeded (or none was tried), 0 when it failed.",
        "latentwatch_serve_last_reload_success_timestamp_seconds":
            "When the served models were last loaded (start or successful reload), Unix time.",
        "latentwatch_build_info": "The LatentWatch build serving (value 1).",
        "latentwatch_model_info": "The model file monitoring each layer (value 1).",
    ]

    /// Registers `latentwatch_build_info` (value 1).
    static func registerBuildInfo(registry: PrometheusCollectorRegistry) {
        registry.makeGauge(
            descriptor: descriptor("latentwatch_build_info"),
            labels: [("version", LatentWatchVersion.string)]
        ).set(to: 1.0)
    }

    /// Registers `latentwatch_model_info` for each layer (value 1) and returns the gauges, to unregister when the
    /// models are replaced.
    static func registerModelInfo(registry: PrometheusCollectorRegistry, layers: [Sidecar.Layer]) -> [Gauge] {
        layers.map { l in
            let g = registry.makeGauge(
                descriptor: descriptor("latentwatch_model_info"),
                labels: [("layer", l.name), ("fingerprint", hex(l.modelID)), ("family", l.model.family)]
            )
            g.set(to: 1.0)
            return g
        }
    }

    /// The full name and help text of one of the info gauges.
    static func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: text[name]!)
    }

    /// The model id as eight hex digits.
    static func hex(_ v: UInt32) -> String { ModelFile.fingerprintText(v) }

    /// The exposition with a `# HELP` line before every `# TYPE` line that has none (families without an entry
    /// in ``text`` get their name as help, so the output stays valid).
    static func annotate(_ exposition: [UInt8]) -> [UInt8] {
        let lines = String(decoding: exposition, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        var out: [String] = []
        out.reserveCapacity(lines.count + 32)
        for line in lines {
            if line.hasPrefix("# TYPE ") {
                let name = line.dropFirst(7).split(separator: " ").first.map(String.init) ?? ""
                if !(out.last?.hasPrefix("# HELP \(name) ") ?? false) {
                    out.append("# HELP \(name) \(text[name] ?? name)")
                }
            }
            out.append(String(line))
        }
        return Array(out.joined(separator: "\n").utf8)
    }
}
