import LatentWatchWire
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// One client connection's bookkeeping: what it has queued, what is handled, and the frames owed to it.
/// The event loop (decoding) and the scoring worker (results) both touch it, under its lock.
final class Connection: BatchOwner, @unchecked Sendable {
    struct State {
        var lastSequence: UInt64 = 0
        var receivedThrough: UInt64 = 0
        var outstanding = CircularBuffer<UInt64>(initialCapacity: 16)
        var assessed: UInt64 = 0
        var dropped: UInt64 = 0
        var rejected: UInt64 = 0
        var sinceAck = 0
        var queuedBytes = 0
        var paused = false
        var pendingSyncs: [(token: UInt64, after: UInt64, bye: Bool)] = []
        var closing = false

        var through: UInt64 { outstanding.first.map { $0 - 1 } ?? receivedThrough }

        func ack(sync: UInt64? = nil) -> Ack {
            Ack(through: through, assessed: assessed, dropped: dropped, rejected: rejected, sync: sync)
        }
    }

    let channel: Channel
    let context: ServerContext
    let state = NIOLockedValueBox(State())
    let pendingReplyBytes = Atomic<Int>(0)
    /// Set once the HELLO was accepted.
    let handshaken = Atomic<Bool>(false)
    /// Whether the client's HELLO announced protocol 1.1 or later: its ASSESSMENT rows carry the prediction
    /// fields of regression models.
    let predictionFields = Atomic<Bool>(false)
    /// Whether the client's HELLO announced protocol 1.2 or later: it may send the host's predictions, and its
    /// ASSESSMENT rows then carry the host-prediction fields.
    let hostFields = Atomic<Bool>(false)

    init(channel: Channel, context: ServerContext) {
        self.channel = channel
        self.context = context
    }

    // MARK: Event loop side

    /// What became of an OBSERVE handed to ``admit(_:)``.
    enum Admission {
        case queued
        case rejected
        case dropped
        case closed
    }

    /// Queues a decoded batch or applies the queue-full policy.
    func admit(_ batch: IngestBatch) -> Admission {
        let config = context.configuration
        let shareFull = state.withLockedValue {
            $0.queuedBytes + batch.bytes > config.connectionQueueBytes && $0.queuedBytes > 0
        }
        let wait = config.whenFull == .wait
        // Record as outstanding before pushing: the worker may finish it before push returns.
        state.withLockedValue {
            $0.lastSequence = batch.sequence
            $0.outstanding.append(batch.sequence)
            $0.queuedBytes += batch.bytes
        }
        if (!shareFull || wait) && context.queue.push(batch, force: wait) {
            context.metrics.inputs.increment(by: batch.rows)
            context.metrics.queueBytes.record(context.queue.queuedBytes)
            if wait {
                let pause = state.withLockedValue { s -> Bool in
                    guard s.queuedBytes >= config.connectionQueueBytes || context.queue.isOverCapacity else {
                        return false
                    }
                    s.paused = true
                    return true
                }
                if pause { channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in } }
            }
            return .queued
        }
        let closed = context.draining.load(ordering: .acquiring)
        state.withLockedValue { s in
            // Undo: it was the last outstanding entry.
            if s.outstanding.last == batch.sequence { _ = s.outstanding.popLast() }
            s.queuedBytes -= batch.bytes
            s.receivedThrough = batch.sequence
            if config.whenFull == .drop { s.dropped += UInt64(batch.rows) } else { s.rejected += UInt64(batch.rows) }
        }
        if closed { return .closed }
        if config.whenFull == .drop {
            context.metrics.droppedInputs.increment(by: batch.rows)
            return .dropped
        }
        context.metrics.rejectedInputs.increment(by: batch.rows)
        return .rejected
    }

    /// Checks that `sequence` increases.
    func checkSequence(_ sequence: UInt64) -> Bool {
        state.withLockedValue { sequence > $0.lastSequence }
    }

    /// A refused frame (non-fatal error): it is handled.
    func refused(_ sequence: UInt64) {
        state.withLockedValue { s in
            if sequence > s.lastSequence { s.lastSequence = sequence }
            s.receivedThrough = max(s.receivedThrough, sequence)
        }
    }

    /// SYNC or BYE: answered now when nothing is outstanding, else when the worker gets there.
    func sync(token: UInt64, bye: Bool) {
        let answer: Ack? = state.withLockedValue { s in
            if let last = s.outstanding.last {
                s.pendingSyncs.append((token, last, bye))
                return nil
            }
            return s.ack(sync: token)
        }
        if let answer {
            send(answer.frame())
            if bye { close() }
        }
    }

    // MARK: Worker side

    func handled(_ batch: IngestBatch, results: [WireAssessment]) {
        let ackEvery = context.configuration.ackEvery
        var frames: [[UInt8]] = []
        var closeAfter = false
        let resume = state.withLockedValue { s -> Bool in
            if s.outstanding.first == batch.sequence { _ = s.outstanding.popFirst() }
            s.queuedBytes -= batch.bytes
            s.receivedThrough = max(s.receivedThrough, batch.sequence)
            s.assessed += UInt64(batch.rows)
            s.sinceAck += 1
            if batch.reply {
                frames.append(
                    Self.assessmentFrame(
                        batch.sequence,
                        results,
                        prediction: predictionFields.load(ordering: .relaxed)
                            && results.contains { !$0.prediction.isNaN },
                        host: batch.predictions != nil
                    )
                )
            }
            if s.sinceAck >= ackEvery {
                s.sinceAck = 0
                frames.append(s.ack().frame())
            }
            while let first = s.pendingSyncs.first, first.after <= s.through {
                s.pendingSyncs.removeFirst()
                frames.append(s.ack(sync: first.token).frame())
                if first.bye { closeAfter = true }
            }
            if s.paused && s.queuedBytes < context.configuration.connectionQueueBytes / 2 {
                s.paused = false
                return true
            }
            return false
        }
        for f in frames { send(f) }
        if closeAfter { close() }
        if resume { channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in } }
    }

    /// An ASSESSMENT frame; `prediction` adds the rows' prediction fields (protocol 1.1), and `host` (with
    /// `prediction`) their host-prediction fields (protocol 1.2).
    static func assessmentFrame(
        _ sequence: UInt64,
        _ rows: [WireAssessment],
        prediction: Bool,
        host: Bool = false
    ) -> [UInt8] {
        var w = WireWriter()
        let layers = rows.first?.surprise.count ?? 0
        let host = host && prediction
        AssessmentFrame.begin(
            sequence: sequence,
            rows: rows.count,
            layers: layers,
            prediction: prediction,
            host: host,
            into: &w
        )
        for r in rows { r.write(to: &w, prediction: prediction, host: host) }
        return w.buffer
    }

    // MARK: Output

    /// Writes a frame; closes the connection when the client has left too much unread.
    func send(_ bytes: [UInt8]) {
        let n = bytes.count
        let pending = pendingReplyBytes.add(n, ordering: .relaxed).newValue
        if pending > context.configuration.maxReplyBytes {
            let first = state.withLockedValue { s -> Bool in
                defer { s.closing = true }
                return !s.closing
            }
            if first {
                context.metrics.slowConsumers.increment()
                context.metrics.protocolErrors[.slowConsumer]?.increment()
                channel.close(promise: nil)
            }
            pendingReplyBytes.subtract(n, ordering: .relaxed)
            return
        }
        let buffer = channel.allocator.buffer(bytes: bytes)
        channel.writeAndFlush(buffer).whenComplete { [self] _ in
            pendingReplyBytes.subtract(n, ordering: .relaxed)
        }
    }

    /// Sends a frame, then closes.
    func sendAndClose(_ bytes: [UInt8]) {
        state.withLockedValue { $0.closing = true }
        let buffer = channel.allocator.buffer(bytes: bytes)
        channel.writeAndFlush(buffer).whenComplete { [channel] _ in channel.close(promise: nil) }
    }

    /// Closes the connection.
    func close() {
        state.withLockedValue { $0.closing = true }
        channel.close(promise: nil)
    }

    /// The final ACK of a graceful shutdown, then the close.
    func finish() -> EventLoopFuture<Void> {
        let ack = state.withLockedValue { $0.ack() }
        let buffer = channel.allocator.buffer(bytes: ack.frame())
        return channel.writeAndFlush(buffer).flatMap { [channel] in channel.close() }.recover { _ in }
    }
}
