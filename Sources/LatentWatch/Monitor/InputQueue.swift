/// The background mode's bounded queue: a ring of preallocated slots, each holding one input's activations
/// for every layer. Pushing copies the activations in under a short lock (no allocation); the worker copies
/// a batch out under the same lock and scores it outside.
// @unchecked: the storage pointer is only dereferenced under `state`'s lock (and freed in deinit).
final class InputQueue: @unchecked Sendable {
    /// Only touched under the lock; the raw storage is owned by the queue.
    struct State {
        let storage: UnsafeMutableBufferPointer<Float>
        var ids: [String?]
        var head = 0
        var count = 0
        var closed = false
    }

    enum PushResult { case queued, full, closed }

    let capacity: Int
    let batchSize: Int
    let whenFull: OverflowPolicy
    let inputCounts: [Int]
    let offsets: [Int]
    let slotSize: Int
    let state: LockedValue<State>
    private let storage: UnsafeMutableBufferPointer<Float>

    init(capacity: Int, batchSize: Int, whenFull: OverflowPolicy, inputCounts: [Int]) {
        self.capacity = capacity
        self.batchSize = batchSize
        self.whenFull = whenFull
        self.inputCounts = inputCounts
        var offsets: [Int] = []
        var total = 0
        for c in inputCounts {
            offsets.append(total)
            total += c
        }
        self.offsets = offsets
        self.slotSize = total
        let storage = UnsafeMutableBufferPointer<Float>.allocate(capacity: capacity * total)
        storage.initialize(repeating: 0)
        self.storage = storage
        self.state = LockedValue(State(storage: storage, ids: [String?](repeating: nil, count: capacity)))
    }

    deinit { storage.deallocate() }

    /// Copies one input in: `write(l, destination)` writes layer l's floats (already validated).
    func push(requestID: String?, _ write: (Int, UnsafeMutablePointer<Float>) -> Void) -> PushResult {
        state.withLock { s in
            if s.closed { return .closed }
            if s.count == capacity { return .full }
            let slot = (s.head + s.count) % capacity
            let base = s.storage.baseAddress! + slot * slotSize
            for l in 0..<inputCounts.count {
                write(l, base + offsets[l])
            }
            s.ids[slot] = requestID
            s.count += 1
            return .queued
        }
    }

    /// Moves up to `batchSize` inputs into the per-layer batch buffers; returns how many, the queue depth
    /// before, and whether the queue is closed.
    func pop(
        into buffers: [UnsafeMutablePointer<Float>],
        ids: inout [String?]
    ) -> (count: Int, depth: Int, closed: Bool) {
        state.withLock { s in
            let n = min(batchSize, s.count)
            for r in 0..<n {
                let slot = (s.head + r) % capacity
                let base = s.storage.baseAddress! + slot * slotSize
                for l in 0..<inputCounts.count {
                    (buffers[l] + r * inputCounts[l]).update(from: base + offsets[l], count: inputCounts[l])
                }
                ids[r] = s.ids[slot]
                s.ids[slot] = nil
            }
            let depth = s.count
            s.head = (s.head + n) % capacity
            s.count -= n
            return (n, depth, s.closed)
        }
    }

    func close() { state.withLock { $0.closed = true } }

    var depth: Int { state.withLock { $0.count } }
}
