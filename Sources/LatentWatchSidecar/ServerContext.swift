import LatentWatchWire
import NIOConcurrencyHelpers
import Synchronization

/// What every connection shares: configuration, queue, metrics, the WELCOME and the set of open
/// connections.
final class ServerContext: Sendable {
    let configuration: SidecarConfiguration
    let queue: IngestQueue
    let metrics: SidecarMetrics
    let welcome: Welcome
    let elements: [Int]
    /// The loaded models, as `/healthz` lists them.
    let models: [ModelSummary]
    let draining = Atomic<Bool>(false)
    let connections = NIOLockedValueBox<[ObjectIdentifier: Connection]>([:])

    /// What `/healthz` says about one loaded model.
    struct ModelSummary: Sendable {
        let layer: String
        let fingerprint: String
        let family: String
        let components: Int
        let posteriorTemperature: Double?
    }

    init(
        configuration: SidecarConfiguration,
        queue: IngestQueue,
        metrics: SidecarMetrics,
        layers: [WireLayer],
        models: [ModelSummary] = []
    ) {
        self.configuration = configuration
        self.models = models
        self.queue = queue
        self.metrics = metrics
        self.elements = layers.map(\.elements)
        self.welcome = Welcome(
            maxFrame: configuration.maxFrameBytes,
            maxRows: configuration.maxRows,
            ackEvery: configuration.ackEvery,
            layers: layers
        )
    }

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
