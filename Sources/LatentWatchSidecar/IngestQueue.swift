import Foundation
import LatentWatchWire
import NIOCore

/// Who gets told when the worker has handled a batch: a connection or an HTTP request.
protocol BatchOwner: AnyObject, Sendable {
    /// Called on the worker thread after every input of `batch` was assessed. `results` holds one row per
    /// input when the batch asked for a reply, and is empty otherwise.
    func handled(_ batch: IngestBatch, results: [WireAssessment])
}

/// Inputs of one OBSERVE (or one HTTP request), copied into float32 and waiting for the worker.
struct IngestBatch: Sendable {
    let owner: any BatchOwner
    let sequence: UInt64
    let reply: Bool
    let rows: Int
    let requestIDs: [String?]
    /// Layer blocks back to back: layer i starts at `offsets[i]` and holds `rows × elements[i]` floats.
    let payload: [Float]
    let offsets: [Int]
    let elements: [Int]
    /// The host's prediction of each input, when the OBSERVE (or request) carried them.
    var predictions: [Float]? = nil

    /// Bytes this batch counts against the queues.
    var bytes: Int { (payload.count + (predictions?.count ?? 0)) * 4 + 64 }
}

/// The bounded queue between the connections and the single scoring worker. Bounded in bytes; FIFO, so
/// each connection's frames are assessed in the order they arrived.
final class IngestQueue: @unchecked Sendable {
    let capacityBytes: Int
    private let condition = NSCondition()
    private var items = CircularBuffer<IngestBatch>(initialCapacity: 64)
    private var bytes = 0
    private var busy = false
    private var closed = false

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    /// Queues a batch. Unless `force`, fails when it does not fit; always fails once closed.
    func push(_ batch: IngestBatch, force: Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return false }
        guard force || bytes + batch.bytes <= capacityBytes else { return false }
        items.append(batch)
        bytes += batch.bytes
        condition.signal()
        return true
    }

    /// Whether forced pushes (policy wait) have filled the queue beyond its bound.
    var isOverCapacity: Bool {
        condition.lock()
        defer { condition.unlock() }
        return bytes > capacityBytes
    }

    /// Next batch; blocks; nil once closed and empty.
    func pop() -> IngestBatch? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        guard let b = items.popFirst() else { return nil }
        bytes -= b.bytes
        busy = true
        return b
    }

    /// The worker finished the batch it popped last.
    func done() {
        condition.lock()
        busy = false
        condition.broadcast()
        condition.unlock()
    }

    /// Nothing queued and nothing being assessed.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return items.isEmpty && !busy
    }

    /// Queued payload bytes.
    var queuedBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return bytes
    }

    /// Refuses new batches; `pop` returns what is queued, then nil.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
