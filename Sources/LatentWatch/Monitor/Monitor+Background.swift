import Foundation
import LatentWatchNumerics
import Logging
import ServiceLifecycle

extension Monitor {
    /// Background mode: validates and copies one input (all layers) into the queue and returns at once.
    /// Returns false when the queue was full and the input was dropped (counted). Throws for invalid
    /// input, a full queue under the `reject` policy, or after shutdown. Allocates nothing.
    @discardableResult
    public func submit(
        _ activations: [UnsafeBufferPointer<Float>],
        requestID: String? = nil
    ) throws(LatentWatchError) -> Bool {
        try checkLayerCount(activations.count)
        return try enqueue(requestID: requestID) { activations[$0] }
    }

    /// Background submission of activations given as IEEE binary16 (converted to float32 while they are
    /// copied into the queue). Allocates nothing.
    @discardableResult
    public func submit(
        half activations: [UnsafeBufferPointer<Float16>],
        requestID: String? = nil
    ) throws(LatentWatchError)
        -> Bool
    {
        try checkLayerCount(activations.count)
        guard let queue else {
            throw LatentWatchError(.queueFull, "submit needs background mode; call assess in inline mode")
        }
        for l in 0..<layers.count {
            do {
                try layers[l].model.validate(half: activations[l])
            } catch {
                metrics.rejected.increment()
                throw LatentWatchError(.invalidActivation, "layer '\(layers[l].name)': \(error.message)")
            }
        }
        let result = queue.push(requestID: requestID) { l, dst in
            let src = activations[l]
            UnsafeRawPointer(src.baseAddress!).withMemoryRebound(to: UInt16.self, capacity: src.count) {
                HalfConversion.convert($0, to: dst, count: src.count)
            }
        }
        return try accept(result, queue)
    }

    /// Single-layer background submission (no array needed).
    @discardableResult
    public func submit(
        _ activation: UnsafeBufferPointer<Float>,
        requestID: String? = nil
    ) throws(LatentWatchError) -> Bool {
        try checkLayerCount(1)
        return try enqueue(requestID: requestID) { _ in activation }
    }

    func enqueue(requestID: String?, _ activation: (Int) -> UnsafeBufferPointer<Float>) throws(LatentWatchError) -> Bool
    {
        guard let queue else {
            throw LatentWatchError(.queueFull, "submit needs background mode; call assess in inline mode")
        }
        for l in 0..<layers.count {
            do {
                try layers[l].model.validate(activation(l))
            } catch {
                metrics.rejected.increment()
                throw LatentWatchError(.invalidActivation, "layer '\(layers[l].name)': \(error.message)")
            }
        }
        let result = queue.push(requestID: requestID) { l, dst in
            let src = activation(l)
            dst.update(from: src.baseAddress!, count: src.count)
        }
        return try accept(result, queue)
    }

    func accept(_ result: InputQueue.PushResult, _ queue: InputQueue) throws(LatentWatchError) -> Bool {
        switch result {
        case .queued:
            return true
        case .full:
            metrics.dropped.increment()
            if queue.whenFull == .reject {
                throw LatentWatchError(.queueFull, "the monitor's queue of \(queue.capacity) inputs is full")
            }
            return false
        case .closed:
            metrics.rejected.increment()
            throw LatentWatchError(.shutDown, "the monitor has shut down")
        }
    }

    /// Inputs waiting in the background queue.
    public var queuedInputs: Int { queue?.depth ?? 0 }

    // MARK: Service

    /// Runs the monitor: delivers alerts to each sink on its own task and, in background mode, scores the
    /// queue in batches. On graceful shutdown it stops accepting inputs, scores what is queued, delivers the
    /// remaining alerts, flushes the sinks and returns.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for channel in channels {
                    group.addTask { await self.drain(channel) }
                }
                group.addTask {
                    if let queue = self.queue {
                        await self.work(queue)
                    } else {
                        while !self.closed.load(ordering: .acquiring) && !Task.isCancelled {
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                    if let recorder = self.configuration.recorder {
                        do { try recorder.flush() } catch {
                            self.metrics.recorderFailures.increment()
                            self.logger.warning("flushing the recorder failed", metadata: ["error": "\(error)"])
                        }
                    }
                    for c in self.channels { c.continuation.finish() }
                }
            }
        } onGracefulShutdown: {
            self.shutDown()
        }
    }

    /// Stops accepting inputs; `run()` then drains and returns. Safe to call more than once.
    public func shutDown() {
        closed.store(true, ordering: .releasing)
        queue?.close()
    }

    func drain(_ channel: SinkChannel) async {
        for await alert in channel.stream {
            do {
                try await channel.sink.deliver(alert)
            } catch {
                metrics.sinkFailures.increment()
                logger.warning(
                    "alert sink failed",
                    metadata: ["sink": "\(channel.sink.name)", "error": "\(error)", "alert.index": "\(alert.index)"]
                )
            }
        }
        do { try await channel.sink.flush() } catch {
            metrics.sinkFailures.increment()
            logger.warning("alert sink flush failed", metadata: ["sink": "\(channel.sink.name)", "error": "\(error)"])
        }
    }

    func work(_ queue: InputQueue) async {
        let counts = queue.inputCounts
        let buffers = counts.map { UnsafeMutablePointer<Float>.allocate(capacity: queue.batchSize * $0) }
        defer { for b in buffers { b.deallocate() } }
        var ids = [String?](repeating: nil, count: queue.batchSize)
        let ws = LayerWorkspaces(layers: layers)
        var idle = 0
        while true {
            let (n, depth, isClosed) = queue.pop(into: buffers, ids: &ids)
            if n == 0 {
                if isClosed || Task.isCancelled { break }
                idle += 1
                // Back off from 50 us to 2 ms while idle; the host's submit never waits for the worker.
                try? await Task.sleep(for: .microseconds(min(2_000, 50 << min(idle, 6))))
                continue
            }
            idle = 0
            metrics.queueDepth.record(depth - n)
            let results = (0..<layers.count).map { l in
                layers[l].model.scoreBatch(
                    UnsafeBufferPointer(start: buffers[l], count: n * counts[l]),
                    count: n,
                    workspace: ws.scoring[l]
                )
            }
            for r in 0..<n {
                var failed: LatentWatchError?
                for l in 0..<layers.count {
                    switch results[l][r] {
                    case .success(let s): ws.scores[l] = s
                    case .failure(let e): failed = e
                    }
                }
                if let failed {
                    metrics.rejected.increment()
                    logger.debug("queued input not scored", metadata: ["error": "\(failed)"])
                    continue
                }
                let a = conclude(requestID: ids[r], ws: ws)
                if configuration.recorder != nil {
                    record(
                        (0..<layers.count).map {
                            UnsafeBufferPointer(start: buffers[$0] + r * counts[$0], count: counts[$0])
                        },
                        assessment: a
                    )
                }
                onAssessment?(a)
            }
        }
    }
}
