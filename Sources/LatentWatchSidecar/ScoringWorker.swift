import Foundation
import LatentWatch
import LatentWatchWire
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// The one thread that assesses queued inputs with the monitor, in arrival order, and tells each batch's
/// owner. A `Service`: on graceful shutdown it closes the queue, assesses what is left and returns.
final class ScoringWorker: Service, Sendable {
    let monitor: Monitor
    let queue: IngestQueue
    let layerCount: Int

    init(monitor: Monitor, queue: IngestQueue, layerCount: Int) {
        self.monitor = monitor
        self.queue = queue
        self.layerCount = layerCount
    }

    func run() async throws {
        let finished = AsyncStream<Void>.makeStream()
        let thread = Thread { [self] in
            // Below the event loops: when the machine is short of CPU, reading (and refusing) frames goes
            // first, so a full queue is reported to clients instead of stalling their sockets. (On Linux,
            // PRIO_PROCESS with who = 0 sets the calling thread's nice value only.)
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 5)
            loop()
            finished.continuation.finish()
        }
        thread.name = "latentwatch-scoring"
        thread.start()
        await withGracefulShutdownHandler {
            for await _ in finished.stream {}
        } onGracefulShutdown: {
            self.queue.close()
        }
        // Cancellation without graceful shutdown: close too, so the thread ends.
        queue.close()
        for await _ in finished.stream {}
    }

    func loop() {
        var scratch = Assessment()
        var pointers = [UnsafeBufferPointer<Float>](
            repeating: UnsafeBufferPointer(start: nil, count: 0),
            count: layerCount
        )
        while let batch = queue.pop() {
            // Fire-and-forget frames only need counting: no wire rows are built for them.
            var results: [WireAssessment] = []
            if batch.reply { results.reserveCapacity(batch.rows) }
            // The host's predictions, when the batch carries them (an empty array allocates nothing otherwise).
            let host = batch.predictions != nil
            (batch.predictions ?? []).withUnsafeBufferPointer { h in
                batch.payload.withUnsafeBufferPointer { p in
                    for r in 0..<batch.rows {
                        for i in 0..<layerCount {
                            let e = batch.elements[i]
                            let start = batch.offsets[i] + r * e
                            pointers[i] = UnsafeBufferPointer(rebasing: p[start..<(start + e)])
                        }
                        do {
                            try monitor.assess(
                                .float32(pointers),
                                outputs: host ? UnsafeBufferPointer(rebasing: h[r..<(r + 1)]) : nil,
                                requestID: batch.requestIDs[r],
                                into: &scratch
                            )
                            if batch.reply { results.append(WireAssessment(scratch)) }
                        } catch {
                            // Counted by the monitor as rejected; the reply row says the input was invalid.
                            if batch.reply {
                                results.append(
                                    WireAssessment(
                                        status: 1,
                                        surprise: .init(repeating: .nan, count: layerCount),
                                        pValues: .init(repeating: .nan, count: layerCount)
                                    )
                                )
                            }
                        }
                    }
                }
            }
            batch.owner.handled(batch, results: results)
            queue.done()
        }
    }
}

extension WireAssessment {
    /// The wire form of a monitor assessment.
    init(_ a: Assessment) {
        self.init(
            status: 0,
            flags: a.flags.rawValue,
            predicted: Int32(clamping: a.predictedLabel ?? -1),
            index: UInt64(a.index),
            fusedPValue: a.fusedPValue,
            entropy: a.entropy,
            entropyPValue: a.entropyPValue ?? .nan,
            shiftLogEvidence: a.shiftLogEvidence ?? .nan,
            surprise: a.layers.map(\.surprise),
            pValues: a.layers.map(\.pValue),
            prediction: a.prediction ?? .nan,
            predictiveSpread: a.predictiveSpread ?? .nan,
            spreadPValue: a.spreadPValue ?? .nan,
            intervalLow: a.predictionInterval?.lowerBound ?? .nan,
            intervalHigh: a.predictionInterval?.upperBound ?? .nan
        )
        hostPrediction = a.hostPrediction ?? .nan
        disagreement = a.disagreement ?? .nan
        disagreementPValue = a.disagreementPValue ?? .nan
    }
}
