import Foundation
import Hummingbird
import LatentWatch
import LatentWatchWire
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle

/// `latentwatch serve`: a ``Monitor`` behind a socket. Owns the Prometheus registry, the ingest queue, the
/// scoring worker, the frame server and the HTTP endpoints, and runs them with the monitor in one inner
/// `ServiceGroup`. A swift-service-lifecycle `Service`: run it in the host's `ServiceGroup`, which owns the
/// signals; its graceful shutdown drains the sidecar (everything acknowledged is assessed and recorded).
public final class Sidecar: Service, Sendable {
    /// One monitored layer: the name hosts use, its fitted model and the model file's CRC-32.
    public struct Layer: Sendable {
        /// Layer name.
        public var name: String
        /// Fitted model.
        public var model: LatentModel
        /// CRC-32 of the model file (the WELCOME's model id).
        public var modelID: UInt32

        /// Creates a layer.
        public init(name: String, model: LatentModel, modelID: UInt32) {
            self.name = name
            self.model = model
            self.modelID = modelID
        }
    }

    let configuration: SidecarConfiguration
    let monitor: Monitor
    let context: ServerContext
    let registry: PrometheusCollectorRegistry
    let recent: RecentAlertsSink
    let logger: Logger
    let onListening: @Sendable (String) -> Void

    /// Builds the sidecar.
    /// - Parameters:
    ///   - layers: monitored layers, in OBSERVE order.
    ///   - policy: alert policy.
    ///   - sinks: alert sinks besides the in-memory ring that serves `GET /v1/alerts`.
    ///   - recorder: records every assessed input (nil: none).
    ///   - configuration: sockets, limits, token.
    ///   - logger: diagnostics.
    ///   - onListening: called with `unix:PATH`, `tcp:HOST:PORT` and `http:HOST:PORT` once each listens.
    public init(
        layers: [Layer],
        policy: AlertPolicy,
        sinks: [any AlertSink] = [],
        recorder: ActivationRecorder? = nil,
        configuration: SidecarConfiguration,
        logger: Logger,
        onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["latentwatch_p_value"] = MonitorMetricsBuckets.pValue
        factory.valueHistogramBuckets["latentwatch_fused_p_value"] = MonitorMetricsBuckets.pValue
        factory.durationHistogramBuckets["latentwatch_scoring_duration_seconds"] =
            MonitorMetricsBuckets.scoringSeconds.map { .nanoseconds(Int64($0 * 1e9)) }
        MetricsHelp.registerInfo(registry: registry, layers: layers)
        let recent = RecentAlertsSink(capacity: configuration.recentAlerts)
        self.recent = recent
        self.monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: layers.map { MonitoredLayer(name: $0.name, model: $0.model) },
                policy: policy,
                recorder: recorder
            ),
            sinks: [recent] + sinks,
            logger: logger,
            metricsFactory: factory
        )
        let queue = IngestQueue(capacityBytes: configuration.queueBytes)
        self.context = ServerContext(
            configuration: configuration,
            queue: queue,
            metrics: SidecarMetrics(factory: factory),
            layers: layers.map {
                WireLayer(name: $0.name, elements: $0.model.preparation.inputCount, modelID: $0.modelID)
            },
            models: layers.map {
                ServerContext.ModelSummary(
                    layer: $0.name,
                    fingerprint: MetricsHelp.hex($0.modelID),
                    family: $0.model.family,
                    components: $0.model.componentCount,
                    posteriorTemperature: $0.model.posteriorTemperature
                )
            }
        )
    }

    /// The layers as announced in the WELCOME.
    public var layers: [WireLayer] { context.welcome.layers }

    /// Runs until the graceful shutdown of the group that runs it (or cancellation), then drains and returns.
    /// Installs no signal handlers.
    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let worker = ScoringWorker(
            monitor: monitor,
            queue: context.queue,
            layerCount: context.elements.count
        )
        let frames = FrameServer(context: context, group: group, logger: logger, onListening: onListening)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: monitor), .init(service: worker),
        ]
        if configuration.socketPath != nil || configuration.tcp != nil { services.append(.init(service: frames)) }
        if let http = configuration.http {
            let onListening = self.onListening
            let app = Application(
                router: HTTPEndpoints.router(context: context, registry: registry, alerts: recent),
                configuration: .init(address: .hostname(http.host, port: http.port), serverName: "latentwatch"),
                onServerRunning: { channel in
                    onListening("http:\(http.host):\(channel.localAddress?.port ?? http.port)")
                },
                eventLoopGroupProvider: .shared(group),
                logger: logger
            )
            services.append(.init(service: app))
        }
        let serviceGroup = ServiceGroup(
            configuration: .init(services: services, logger: logger)
        )
        try await serviceGroup.run()
    }
}
