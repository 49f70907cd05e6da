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
    /// The policy's fusion (``AlertPolicy/fusion``), for `/healthz`.
    let fusionRule: PValueFusion
    let context: ServerContext
    let registry: PrometheusCollectorRegistry
    let recent: RecentAlertsSink
    let logger: Logger
    let onListening: @Sendable (String) -> Void
    /// Reads the replacement models for ``reload()`` (nil: this sidecar cannot reload).
    let loadModels: (@Sendable () throws -> [Layer])?
    /// The `latentwatch_model_info` gauges of the models served; held while a reload runs, so reloads are serial.
    let modelInfo: LockedValue<[Gauge]>

    /// Builds the sidecar.
    /// - Parameters:
    ///   - layers: monitored layers, in OBSERVE order.
    ///   - policy: alert policy.
    ///   - sinks: alert sinks besides the in-memory ring that serves `GET /v1/alerts`.
    ///   - recorder: records every assessed input (nil: none).
    ///   - configuration: sockets, limits, token.
    ///   - logger: diagnostics.
    ///   - onListening: called with `unix:PATH`, `tcp:HOST:PORT` and `http:HOST:PORT` once each listens.
    ///   - loadModels: reads the models again for ``reload()`` (SIGHUP, `POST /v1/reload`), for example from the
    ///     same files; nil when the sidecar cannot reload.
    public init(
        layers: [Layer],
        policy: AlertPolicy,
        sinks: [any AlertSink] = [],
        recorder: ActivationRecorder? = nil,
        configuration: SidecarConfiguration,
        logger: Logger,
        onListening: @escaping @Sendable (String) -> Void = { _ in },
        loadModels: (@Sendable () throws -> [Layer])? = nil
    ) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
        self.loadModels = loadModels
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["latentwatch_p_value"] = MonitorMetricsBuckets.pValue
        factory.valueHistogramBuckets["latentwatch_fused_p_value"] = MonitorMetricsBuckets.pValue
        factory.durationHistogramBuckets["latentwatch_scoring_duration_seconds"] =
            MonitorMetricsBuckets.scoringSeconds.map { .nanoseconds(Int64($0 * 1e9)) }
        MetricsHelp.registerBuildInfo(registry: registry)
        self.modelInfo = LockedValue(MetricsHelp.registerModelInfo(registry: registry, layers: layers))
        let recent = RecentAlertsSink(capacity: configuration.recentAlerts)
        self.recent = recent
        self.fusionRule = policy.fusion
        // A regression model at the primary (last) layer takes the host's predictions when a client sends them.
        let takesPredictions = layers.last?.model.targetBinCount != nil
        self.monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: layers.map { MonitoredLayer(name: $0.name, model: $0.model) },
                policy: policy,
                recorder: recorder,
                outputs: takesPredictions ? (.prediction, 1) : nil
            ),
            sinks: [recent] + sinks,
            logger: logger,
            metricsFactory: factory
        )
        let queue = IngestQueue(capacityBytes: configuration.queueBytes)
        let metrics = SidecarMetrics(factory: factory)
        self.context = ServerContext(
            configuration: configuration,
            queue: queue,
            metrics: metrics,
            layers: Self.wireLayers(layers),
            models: Self.summaries(layers),
            fusion: Self.fusion(policy.fusion, monitor.jointCalibration, layers: layers.count),
            takesPredictions: takesPredictions
        )
        metrics.lastReloadSuccessful.record(1)
        metrics.lastReloadSuccessTime.record(Date().timeIntervalSince1970)
    }

    static func wireLayers(_ layers: [Layer]) -> [WireLayer] {
        layers.map { WireLayer(name: $0.name, elements: $0.model.preparation.inputCount, modelID: $0.modelID) }
    }

    static func summaries(_ layers: [Layer]) -> [ServerContext.ModelSummary] {
        layers.map {
            ServerContext.ModelSummary(
                layer: $0.name,
                fingerprint: MetricsHelp.hex($0.modelID),
                family: $0.model.family,
                components: $0.model.componentCount,
                posteriorTemperature: $0.model.posteriorTemperature,
                jointCount: $0.model.jointCalibration?.count
            )
        }
    }

    /// How the monitor fuses the layers' p-values, for `/healthz`: the joint calibration it uses (its statistic and
    /// calibration inputs), or the rule.
    static func fusion(_ rule: PValueFusion, _ joint: JointCalibration?, layers: Int) -> [String: String] {
        if layers < 2 { return ["method": "none (one layer)"] }
        if let joint {
            return [
                "method": "joint-calibration", "statistic": joint.statistic.rawValue,
                "calibration_inputs": "\(joint.count)", "policy": rule.rawValue,
            ]
        }
        return ["method": rule == .cauchy ? "cauchy" : "bonferroni", "policy": rule.rawValue]
    }

    /// Reads the models again (with the `loadModels` given at creation) and swaps them in atomically
    /// (``Monitor/replaceModels(_:)``): every input is assessed by the old models or the new ones, none is lost. New
    /// connections' WELCOME carries the new model ids; open connections keep going (layer names and sizes do not
    /// change). A replacement that cannot be read, or does not fit the layers (names, activation sizes), changes
    /// nothing: the old models keep serving, and the failure is logged, counted in
    /// `latentwatch_serve_reloads_total{result="failure"}`, shown by `latentwatch_serve_last_reload_successful` 0 and
    /// `/healthz`, and thrown. Reloads run one at a time.
    /// - Returns: the model generation now served (one more per successful reload).
    @discardableResult
    public func reload() throws(LatentWatchError) -> Int {
        try modelInfo.withLock { (info) throws(LatentWatchError) -> Int in
            let now = Date().timeIntervalSince1970
            do throws(LatentWatchError) {
                guard let loadModels else {
                    throw LatentWatchError(
                        .invalidConfiguration,
                        "this sidecar was created without a way to load models again",
                        remedy: "pass loadModels when creating the Sidecar"
                    )
                }
                let layers: [Layer]
                do { layers = try loadModels() } catch let e as LatentWatchError { throw e } catch {
                    throw LatentWatchError(.io, "\(error)", remedy: "fix or replace the model files, then reload again")
                }
                try monitor.replaceModels(layers.map { MonitoredLayer(name: $0.name, model: $0.model) })
                for g in info { registry.unregisterGauge(g) }
                info = MetricsHelp.registerModelInfo(registry: registry, layers: layers)
                let generation = context.served.withLockedValue { s -> Int in
                    s.welcome.layers = Self.wireLayers(layers)
                    s.models = Self.summaries(layers)
                    s.fusion = Self.fusion(fusionRule, monitor.jointCalibration, layers: layers.count)
                    s.generation += 1
                    s.lastReload = ServerContext.ReloadStatus(successful: true, time: now, error: nil)
                    return s.generation
                }
                context.metrics.reloadSuccesses.increment()
                context.metrics.lastReloadSuccessful.record(1)
                context.metrics.lastReloadSuccessTime.record(now)
                logger.info(
                    "models reloaded",
                    metadata: [
                        "generation": "\(generation)",
                        "fingerprints":
                            "\(layers.map { "\($0.name)=\(MetricsHelp.hex($0.modelID))" }.joined(separator: ","))",
                    ]
                )
                return generation
            } catch {
                context.served.withLockedValue {
                    $0.lastReload = ServerContext.ReloadStatus(successful: false, time: now, error: error.message)
                }
                context.metrics.reloadFailures.increment()
                context.metrics.lastReloadSuccessful.record(0)
                logger.error(
                    "reloading the models failed; the previous models keep serving",
                    metadata: ["error": "\(error.message)"]
                )
                throw error
            }
        }
    }

    /// The layers as announced in the WELCOME.
    public var layers: [WireLayer] { context.welcome.layers }

    /// ``reload()`` on a thread of its own: reading and decoding model files blocks, so it runs neither on the event
    /// loops nor on the cooperative pool. Used by SIGHUP and `POST /v1/reload`.
    public func reloadOnOwnThread() async -> Result<Int, LatentWatchError> {
        await withCheckedContinuation { done in
            Thread.detachNewThread {
                done.resume(returning: Result { () throws(LatentWatchError) -> Int in try self.reload() })
            }
        }
    }

    /// How many times the models were reloaded.
    public var modelGeneration: Int { context.served.withLockedValue { $0.generation } }

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
                router: HTTPEndpoints.router(
                    context: context,
                    registry: registry,
                    alerts: recent,
                    reload: { [self] in await reloadOnOwnThread() }
                ),
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
