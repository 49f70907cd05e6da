import Logging
import Metrics
import Synchronization

/// Hands alerts to the sinks: one bounded buffer per sink, drained by the monitor's `run()` on a task of its
/// own, so a slow or failing sink never blocks scoring or the other sinks. A full buffer drops (and counts)
/// the newest alert for that sink only.
struct AlertDispatcher: Sendable {
    struct Channel: Sendable {
        let sink: any AlertSink
        let stream: AsyncStream<Alert>
        let continuation: AsyncStream<Alert>.Continuation
    }

    let channels: [Channel]
    let metrics: MonitorMetrics
    /// Alerts buffered for a sink and not yet delivered (summed over sinks).
    let pending = PendingCount()

    init(sinks: [any AlertSink], bufferCapacity: Int, metrics: MonitorMetrics) {
        channels = sinks.map { sink in
            let (stream, continuation) = AsyncStream.makeStream(
                of: Alert.self,
                bufferingPolicy: .bufferingOldest(max(1, bufferCapacity))
            )
            return Channel(sink: sink, stream: stream, continuation: continuation)
        }
        self.metrics = metrics
    }

    /// Counts the alert and offers it to every sink's buffer.
    func emit(_ alert: Alert) {
        metrics.alerts[alert.kind]?.increment()
        for c in channels {
            pending.value.add(1, ordering: .relaxed)
            switch c.continuation.yield(alert) {
            case .enqueued: break
            case .dropped, .terminated:
                // A full buffer, or a sink already finished by shutdown: counted as a drop, never pending.
                pending.value.subtract(1, ordering: .relaxed)
                metrics.sinkDrops.increment()
            @unknown default:
                pending.value.subtract(1, ordering: .relaxed)
            }
        }
    }

    /// Ends every sink's stream; their drains deliver what is buffered, flush and return.
    func finish() {
        for c in channels { c.continuation.finish() }
    }
}

/// A count shared between the threads that raise alerts and the sinks' tasks.
final class PendingCount: Sendable {
    let value = Atomic<Int>(0)
}
