import Foundation
import LatentWatchNumerics
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

extension Monitor {
    /// Background mode: validates one input, copies it (all layers) into the queue and returns at once; the
    /// monitor's `run()` assesses it. Binary16 activations are converted to float32 as they are copied.
    /// Allocates nothing.
    /// - Returns: false when the queue was full and the input was dropped (counted), under the `dropNewest`
    ///   overflow policy.
    /// - Throws: ``LatentWatchError`` with `notInBackgroundMode` in inline mode, `layerCountMismatch` or
    ///   `invalidActivation` for an invalid input, `queueFull` under the `reject` policy, `shutDown` after
    ///   shutdown.
    @discardableResult
    public func submit(_ activations: ActivationBuffers, requestID: String? = nil) throws(LatentWatchError) -> Bool {
        guard let queue else {
            throw LatentWatchError(
                .notInBackgroundMode,
                "submit needs a monitor in background mode; this one is inline"
            )
        }
        try checkShape(activations, rows: 1)
        try validate(activations, row: 0)
        let result = queue.push(requestID: requestID) { l, dst in
            let n = inputCounts[l]
            switch activations {
            case .float32(let b): dst.update(from: b[l].baseAddress!, count: n)
            case .float16(let b):
                UnsafeRawPointer(b[l].baseAddress!).withMemoryRebound(to: UInt16.self, capacity: n) {
                    HalfConversion.convert($0, to: dst, count: n)
                }
            }
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

    /// Inputs the background worker has taken from the queue and finished (assessed or refused).
    package var backgroundCompleted: Int { completed.value.load(ordering: .acquiring) }

    /// Alerts raised and not yet delivered to every sink (dropped ones excepted).
    package var pendingAlerts: Int { alerts.pending.value.load(ordering: .acquiring) }

    // MARK: Service

    /// Runs the monitor: delivers alerts to each sink on its own task and, in background mode, scores the
    /// queue in batches. On graceful shutdown it stops accepting inputs, scores what is queued, delivers the
    /// remaining alerts, flushes the sinks and returns.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for channel in alerts.channels {
                    group.addTask { await self.drain(channel) }
                }
                group.addTask {
                    if let queue = self.queue {
                        await self.work(queue)
                    } else {
                        // Inline mode: nothing to score here; wait for shutDown() (or cancellation).
                        for await _ in self.shutdownSignal.stream {}
                    }
                    if let recorder = self.configuration.recorder {
                        do { try recorder.flush() } catch {
                            self.metrics.recorderFailures.increment()
                            self.logger.warning("flushing the recorder failed", metadata: ["error": "\(error)"])
                        }
                    }
                    self.alerts.finish()
                }
            }
        } onGracefulShutdown: {
            self.shutDown()
        }
    }

    /// Stops accepting inputs; `run()` then drains and returns. Safe to call more than once.
    public func shutDown() {
        queue?.close()
        shutdownSignal.continuation.finish()
    }

    func drain(_ channel: AlertDispatcher.Channel) async {
        for await alert in channel.stream {
            do {
                try await channel.sink.deliver(alert)
                alerts.pending.value.subtract(1, ordering: .releasing)
            } catch {
                alerts.pending.value.subtract(1, ordering: .releasing)
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
        var ws = takeWorkspaces()
        defer { returnWorkspaces(ws) }
        var assessment = Assessment()
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
            // Each batch is scored and concluded by the models current when it is taken.
            if ws.generation != modelGeneration {
                returnWorkspaces(ws)
                ws = takeWorkspaces()
            }
            let layers = ws.layers
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
                for l in 0..<layers.count {
                    ws.current[l] = UnsafeBufferPointer(start: buffers[l] + r * counts[l], count: counts[l])
                }
                finish(requestID: ids[r], outputs: nil, summary: nil, ws: ws, into: &assessment)
                onAssessment?(assessment)
            }
            completed.value.add(n, ordering: .releasing)
        }
    }
}
