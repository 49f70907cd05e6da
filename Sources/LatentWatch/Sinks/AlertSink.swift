/// Where alerts go: the seam every alert destination implements. A monitor gives each sink its own bounded
/// buffer and task, so a slow or failing sink is counted and isolated and never blocks scoring or the other
/// sinks. Adding a destination is adding a type that conforms.
public protocol AlertSink: Sendable {
    /// A short name for logs and metrics.
    var name: String { get }
    /// Delivers alerts (in order). Throwing counts a failure; delivery goes on with the next alerts.
    func deliver(_ alert: Alert) async throws
    /// Called once when the monitor shuts down, after the last delivery.
    func flush() async throws
}

extension AlertSink {
    public func flush() async throws {}
}

/// Calls a closure for every alert.
public struct CallbackSink: AlertSink {
    public let name: String
    let body: @Sendable (Alert) async throws -> Void

    /// A sink that calls `body`.
    public init(name: String = "callback", _ body: @escaping @Sendable (Alert) async throws -> Void) {
        self.name = name
        self.body = body
    }

    public func deliver(_ alert: Alert) async throws { try await body(alert) }
}

/// Keeps every alert in memory, in delivery order: for replays, tools and tests that read alerts back.
package final class CollectingSink: AlertSink {
    package let name: String
    let store = LockedValue<[Alert]>([])

    /// Creates an empty sink.
    package init(name: String = "memory") { self.name = name }

    package func deliver(_ alert: Alert) async throws { store.withLock { $0.append(alert) } }

    /// The alerts delivered so far.
    package var alerts: [Alert] { store.withLock { $0 } }
}
