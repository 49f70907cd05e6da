import LatentWatchWire
import NIOConcurrencyHelpers
import Synchronization

/// What every connection shares: configuration, queue, metrics, the WELCOME and the set of open
/// connections.
final class ServerContext: Sendable {
    let configuration: SidecarConfiguration
    let queue: IngestQueue
    let metrics: SidecarMetrics
    /// Each layer's activation size (a reload keeps them).
    let elements: [Int]
    /// Whether the monitor takes the host's predictions: the primary (last) layer's model is a regression model
    /// (a reload must keep it one).
    let takesPredictions: Bool
    /// The models being served, their WELCOME and the last reload's outcome (a reload replaces them).
    let served: NIOLockedValueBox<Served>
    let draining = Atomic<Bool>(false)
    /// An HTTP reload is running.
    let reloading = Atomic<Bool>(false)
    let connections = NIOLockedValueBox<[ObjectIdentifier: Connection]>([:])

    /// What `/healthz` says about one loaded model.
    struct ModelSummary: Sendable {
        let layer: String
        let fingerprint: String
        let family: String
        let components: Int
        let posteriorTemperature: Double?
        /// Inputs of the joint calibration the model carries, or nil.
        let jointCount: Int?
    }

    /// The outcome of the last reload.
    struct ReloadStatus: Sendable {
        let successful: Bool
        /// Seconds since 1970.
        let time: Double
        let error: String?
    }

    /// What is served now.
    struct Served: Sendable {
        var welcome: Welcome
        var models: [ModelSummary]
        /// How the monitor fuses the layers' p-values now (`/healthz`'s `fusion`).
        var fusion: [String: String] = [:]
        /// 0 for the models the server started with, one more per successful reload.
        var generation = 0
        var lastReload: ReloadStatus?
    }

    init(
        configuration: SidecarConfiguration,
        queue: IngestQueue,
        metrics: SidecarMetrics,
        layers: [WireLayer],
        models: [ModelSummary] = [],
        fusion: [String: String] = [:],
        takesPredictions: Bool = false
    ) {
        self.configuration = configuration
        self.takesPredictions = takesPredictions
        self.queue = queue
        self.metrics = metrics
        self.elements = layers.map(\.elements)
        self.served = NIOLockedValueBox(
            Served(
                welcome: Welcome(
                    maxFrame: configuration.maxFrameBytes,
                    maxRows: configuration.maxRows,
                    ackEvery: configuration.ackEvery,
                    layers: layers
                ),
                models: models,
                fusion: fusion
            )
        )
    }

    /// The WELCOME a new connection gets (its model ids change with a reload; names and sizes do not).
    var welcome: Welcome { served.withLockedValue { $0.welcome } }

    /// Registers a connection unless the limit is reached.
    func register(_ c: Connection) -> Bool {
        let ok = connections.withLockedValue { all -> Bool in
            guard all.count < configuration.maxConnections else { return false }
            all[ObjectIdentifier(c)] = c
            return true
        }
        if ok {
            metrics.connections.increment()
            metrics.openConnections.record(connections.withLockedValue { $0.count })
        } else {
            metrics.refusedConnections.increment()
        }
        return ok
    }

    func unregister(_ c: Connection) {
        let n = connections.withLockedValue { all -> Int in
            all[ObjectIdentifier(c)] = nil
            return all.count
        }
        metrics.openConnections.record(n)
    }
}
