import Foundation
import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes sampled inputs (activations, outputs, timestamps, request ids) to chunked, zstd-compressed,
/// crash-safe recording files (Docs/RecordingFormat.md). Thread-safe; a monitor can own one
/// (``MonitorConfiguration/recorder``; named so it does not clash with swift-metrics' `Recorder`) or the host can call ``record(_:outputs:requestID:index:timestamp:)``.
///
/// Cost: copying into preallocated chunk buffers under a short lock; every `chunkInputs` recorded inputs
/// the chunk is compressed and written with one `write(2)` on the calling thread (in a monitor's background
/// mode, the worker).
public final class ActivationRecorder: Sendable {
    /// Which inputs are recorded.
    public enum Sampling: Sendable, Equatable {
        /// Every input.
        case all
        /// Each input with this probability (a seeded stream, so runs repeat).
        case rate(Double)
        /// A uniform sample of this many inputs (algorithm R), written on flush or close.
        case reservoir(Int)

        var text: String {
            switch self {
            case .all: return "all"
            case .rate(let p): return "rate:\(p)"
            case .reservoir(let k): return "reservoir:\(k)"
            }
        }
    }

    /// Recorder settings.
    public struct Configuration: Sendable {
        /// First file's path (`NAME.lwr`); rotated files are `NAME-1.lwr`, `NAME-2.lwr`, ...
        public var path: String
        /// Layers recorded, in the order activations are passed.
        public var layers: [RecordedLayer]
        /// Output values per input (0: none).
        public var outputCount: Int
        /// Sampling.
        public var sampling: Sampling
        /// Seed of the sampling stream.
        public var seed: UInt64
        /// Records per chunk.
        public var chunkInputs: Int
        /// Start a new file when the current one would exceed this many bytes.
        public var maxFileBytes: Int
        /// Delete the oldest files beyond this many (nil: keep all).
        public var keepFiles: Int?
        /// fsync after each chunk (survives power loss; slower).
        public var durable: Bool
        /// zstd level.
        public var compressionLevel: Int32

        /// Creates settings.
        public init(
            path: String,
            layers: [RecordedLayer],
            outputCount: Int = 0,
            sampling: Sampling = .all,
            seed: UInt64 = 0x5EED,
            chunkInputs: Int = 256,
            maxFileBytes: Int = 256 << 20,
            keepFiles: Int? = nil,
            durable: Bool = false,
            compressionLevel: Int32 = 3
        ) {
            self.path = path
            self.layers = layers
            self.outputCount = outputCount
            self.sampling = sampling
            self.seed = seed
            self.chunkInputs = max(1, min(chunkInputs, RecordingFormat.maxChunkRecords))
            self.maxFileBytes = maxFileBytes
            self.keepFiles = keepFiles
            self.durable = durable
            self.compressionLevel = compressionLevel
        }
    }

    struct PendingRecord {
        var timestamp: Double
        var index: UInt64
        var requestID: String?
        var layers: [[UInt8]]
        var outputs: [Float]
    }

    struct State {
        var fd: Int32 = -1
        var fileBytes = 0
        var fileSequence = 0
        var files: [String] = []
        var chunk = RecordingChunk()
        var nextSequence: UInt64 = 0
        var seen: UInt64 = 0
        var random: SeededRandom
        var reservoir: [PendingRecord] = []
        var chunksWritten = 0
        var chunksWrittenInFile = 0
        var recorded = 0
        var failures = 0
        var closed = false
    }

    let configuration: Configuration
    let state: LockedValue<State>

    /// Creates the first file and writes its header.
    public init(configuration: Configuration) throws(LatentWatchError) {
        guard !configuration.layers.isEmpty else {
            throw LatentWatchError(.invalidConfiguration, "a recorder needs at least one layer")
        }
        if let l = configuration.layers.first(where: { !$0.dtype.isParameterPrecision }) {
            throw LatentWatchError(
                .invalidConfiguration,
                "layer '\(l.name)' is to be recorded as \(l.dtype); choose float32 or float16"
            )
        }
        if case .rate(let p) = configuration.sampling, !(p > 0 && p <= 1) {
            throw LatentWatchError(.invalidConfiguration, "sampling rate must be in (0, 1], got \(p)")
        }
        if case .reservoir(let k) = configuration.sampling, k < 1 {
            throw LatentWatchError(.invalidConfiguration, "reservoir size must be at least 1")
        }
        self.configuration = configuration
        var s = State(random: SeededRandom(seed: configuration.seed))
        s.chunk = Self.emptyChunk(configuration)
        state = LockedValue(s)
        try state.withLock { (s) throws(LatentWatchError) in try openNextFile(&s) }
    }

    static func emptyChunk(_ c: Configuration) -> RecordingChunk {
        var chunk = RecordingChunk()
        let n = c.chunkInputs
        chunk.timestamps.reserveCapacity(n)
        chunk.indices.reserveCapacity(n)
        chunk.requestIDs.reserveCapacity(n)
        chunk.layers = c.layers.map { l in
            var a: [UInt8] = []
            a.reserveCapacity(n * l.elements * l.dtype.byteWidth)
            return a
        }
        chunk.outputs.reserveCapacity(n * c.outputCount)
        return chunk
    }

    /// Paths of the files written so far (oldest first; deleted ones excluded).
    public var files: [String] { state.withLock { $0.files } }
    /// Inputs recorded (sampled) so far, including those still buffered.
    public var recordedCount: Int { state.withLock { $0.recorded } }
    /// Chunks written.
    package var chunksWritten: Int { state.withLock { $0.chunksWritten } }
    /// Write failures (the recorder keeps going; the inputs of a failed chunk are lost and counted here).
    public var writeFailures: Int { state.withLock { $0.failures } }

    /// Offers one input. Returns whether it was sampled. `activations[i]` is layer i's activation.
    @discardableResult
    public func record(
        _ activations: [UnsafeBufferPointer<Float>],
        outputs: UnsafeBufferPointer<Float>? = nil,
        requestID: String? = nil,
        index: Int? = nil,
        timestamp: Double? = nil
    ) throws(LatentWatchError) -> Bool {
        let layers = configuration.layers
        guard activations.count == layers.count else {
            throw LatentWatchError(
                .layerCountMismatch,
                "expected \(layers.count) layers' activations, got \(activations.count)"
            )
        }
        for (i, l) in layers.enumerated() where activations[i].count != l.elements {
            throw LatentWatchError(
                .shapeMismatch,
                "layer '\(l.name)' needs \(l.elements) values, got \(activations[i].count)"
            )
        }
        if configuration.outputCount > 0 {
            guard let outputs, outputs.count == configuration.outputCount else {
                throw LatentWatchError(.invalidOutputs, "expected \(configuration.outputCount) outputs")
            }
        }
        let time = timestamp ?? Date().timeIntervalSince1970
        return try state.withLock { (s) throws(LatentWatchError) -> Bool in
            guard !s.closed else { throw LatentWatchError(.shutDown, "the recorder is closed") }
            let position = index.map { UInt64($0) } ?? s.seen
            s.seen += 1
            switch configuration.sampling {
            case .all: break
            case .rate(let p): if s.random.uniform() >= p { return false }
            case .reservoir(let k):
                let record = PendingRecord(
                    timestamp: time,
                    index: position,
                    requestID: requestID,
                    layers: (0..<layers.count).map { i in
                        var bytes: [UInt8] = []
                        Self.append(activations[i], as: layers[i].dtype, to: &bytes)
                        return bytes
                    },
                    outputs: outputs.map { Array($0) } ?? []
                )
                if s.reservoir.count < k {
                    s.reservoir.append(record)
                } else {
                    let j = Int(s.random.next() % s.seen)
                    guard j < k else { return false }
                    s.reservoir[j] = record
                }
                s.recorded = s.reservoir.count
                return true
            }
            s.recorded += 1
            s.chunk.timestamps.append(time)
            s.chunk.indices.append(position)
            s.chunk.requestIDs.append(requestID)
            for i in 0..<layers.count { Self.append(activations[i], as: layers[i].dtype, to: &s.chunk.layers[i]) }
            if let outputs, configuration.outputCount > 0 { s.chunk.outputs.append(contentsOf: outputs) }
            if s.chunk.count >= configuration.chunkInputs { try writeChunk(&s) }
            return true
        }
    }

    /// Appends an activation's little-endian elements in the stored dtype (f16 converted in place).
    static func append(_ a: UnsafeBufferPointer<Float>, as dtype: ElementType, to bytes: inout [UInt8]) {
        if dtype == .float16 {
            let start = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: 2 * a.count))
            bytes.withUnsafeMutableBytes { raw in
                let dst = (raw.baseAddress! + start).assumingMemoryBound(to: UInt16.self)
                HalfConversion.convert(a.baseAddress!, toHalf: dst, count: a.count)
            }
        } else {
            bytes.append(contentsOf: UnsafeRawBufferPointer(a))
        }
    }

    /// Writes buffered inputs (a partial chunk, or the reservoir) to disk.
    public func flush() throws(LatentWatchError) {
        try state.withLock { (s) throws(LatentWatchError) in
            guard !s.closed else { return }
            try flushLocked(&s)
        }
    }

    func flushLocked(_ s: inout State) throws(LatentWatchError) {
        if case .reservoir = configuration.sampling, !s.reservoir.isEmpty {
            let records = s.reservoir.sorted { $0.index < $1.index }
            s.reservoir = []
            for r in records {
                s.chunk.timestamps.append(r.timestamp)
                s.chunk.indices.append(r.index)
                s.chunk.requestIDs.append(r.requestID)
                for i in 0..<r.layers.count { s.chunk.layers[i] += r.layers[i] }
                s.chunk.outputs += r.outputs
                if s.chunk.count >= configuration.chunkInputs { try writeChunk(&s) }
            }
        }
        if s.chunk.count > 0 { try writeChunk(&s) }
        if configuration.durable, s.fd >= 0 { fsync(s.fd) }
    }

    /// Flushes and closes the file. Later `record` calls throw.
    public func close() throws(LatentWatchError) {
        try state.withLock { (s) throws(LatentWatchError) in
            guard !s.closed else { return }
            defer {
                if s.fd >= 0 { Glibc.close(s.fd) }
                s.fd = -1
                s.closed = true
            }
            try flushLocked(&s)
        }
    }

    deinit {
        state.withLock { s in
            if !s.closed {
                try? flushLocked(&s)
                if s.fd >= 0 { Glibc.close(s.fd) }
                s.closed = true
            }
        }
    }

    func path(forSequence k: Int) -> String {
        guard k > 0 else { return configuration.path }
        let url = URL(fileURLWithPath: configuration.path)
        let ext = url.pathExtension
        let base = url.deletingPathExtension().path
        return ext.isEmpty ? "\(base)-\(k)" : "\(base)-\(k).\(ext)"
    }

    func openNextFile(_ s: inout State) throws(LatentWatchError) {
        if s.fd >= 0 {
            if configuration.durable { fsync(s.fd) }
            Glibc.close(s.fd)
            s.fd = -1
            s.fileSequence += 1
        }
        let path = path(forSequence: s.fileSequence)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LatentWatchError(.io, "\(path): cannot create: \(String(cString: strerror(errno)))")
        }
        let header = RecordingHeader(
            libraryVersion: LatentWatchVersion.string,
            created: ISO8601DateFormatter().string(from: Date()),
            layers: configuration.layers,
            outputs: configuration.outputCount,
            sampling: configuration.sampling.text,
            fileSequence: s.fileSequence
        ).encoded()
        guard Self.writeAll(fd, header) else {
            Glibc.close(fd)
            throw LatentWatchError(.io, "\(path): cannot write the header: \(String(cString: strerror(errno)))")
        }
        if configuration.durable { fsync(fd) }
        s.fd = fd
        s.fileBytes = header.count
        s.chunksWrittenInFile = 0
        s.files.append(path)
        if let keep = configuration.keepFiles, keep >= 1 {
            while s.files.count > keep { unlink(s.files.removeFirst()) }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let r = write(fd, raw.baseAddress! + done, raw.count - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += r
            }
            return true
        }
    }

    func writeChunk(_ s: inout State) throws(LatentWatchError) {
        let n = s.chunk.count
        let payload = s.chunk.payload(outputs: configuration.outputCount)
        let sequence = s.nextSequence
        s.nextSequence += UInt64(n)
        s.chunk = Self.emptyChunk(configuration)
        guard payload.count <= RecordingFormat.maxChunkBytes,
            let compressed = Zstd.compressed(payload, level: configuration.compressionLevel)
        else {
            s.failures += 1
            throw LatentWatchError(.io, "chunk of \(n) records could not be compressed (\(payload.count) bytes)")
        }
        var bytes = RecordingFormat.chunkMagic
        bytes.reserveCapacity(RecordingFormat.chunkHeaderBytes + compressed.count)
        LittleEndian.append(UInt32(n), to: &bytes)
        LittleEndian.append(sequence, to: &bytes)
        LittleEndian.append(UInt32(compressed.count), to: &bytes)
        LittleEndian.append(UInt32(payload.count), to: &bytes)
        LittleEndian.append(CRC32.checksum(compressed), to: &bytes)
        LittleEndian.append(CRC32.checksum(bytes), to: &bytes)
        bytes += compressed
        if s.fileBytes + bytes.count > configuration.maxFileBytes && s.fileBytes > 0 && s.chunksWrittenInFile > 0 {
            try openNextFile(&s)
        }
        guard Self.writeAll(s.fd, bytes) else {
            s.failures += 1
            throw LatentWatchError(.io, "writing a chunk failed: \(String(cString: strerror(errno)))")
        }
        if configuration.durable { fsync(s.fd) }
        s.fileBytes += bytes.count
        s.chunksWritten += 1
        s.chunksWrittenInFile += 1
    }
}
