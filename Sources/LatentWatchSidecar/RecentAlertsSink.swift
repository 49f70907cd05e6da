import LatentWatch
import NIOConcurrencyHelpers

/// Keeps the most recent alerts in a ring for `GET /v1/alerts`.
public final class RecentAlertsSink: AlertSink {
    public let name = "recent"
    let capacity: Int
    let ring: NIOLockedValueBox<(items: [Alert], next: Int)>

    /// A ring of `capacity` alerts.
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.ring = NIOLockedValueBox(([], 0))
    }

    public func deliver(_ alert: Alert) async throws {
        ring.withLockedValue { r in
            if r.items.count < capacity {
                r.items.append(alert)
            } else {
                r.items[r.next] = alert
            }
            r.next = (r.next + 1) % capacity
        }
    }

    /// The latest `limit` alerts, oldest first.
    public func latest(_ limit: Int) -> [Alert] {
        ring.withLockedValue { r in
            let ordered = r.items.count < capacity ? r.items : Array(r.items[r.next...] + r.items[..<r.next])
            return Array(ordered.suffix(max(0, limit)))
        }
    }
}
