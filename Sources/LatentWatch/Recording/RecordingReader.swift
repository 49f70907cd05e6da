import Foundation

/// Reads a recording (Docs/RecordingFormat.md) chunk by chunk. A torn last chunk (an interrupted write) is
/// skipped and listed in ``warnings``; damage before the end is an error.
public final class RecordingReader: @unchecked Sendable {
    struct ChunkEntry {
        let offset: Int
        let count: Int
        let sequence: UInt64
        let compressed: Int
        let uncompressed: Int
        let crc: UInt32
    }

    let file: FileBytes
    let header: RecordingHeader
    let entries: [ChunkEntry]
    /// Problems that did not stop reading (a torn last chunk).
    public let warnings: [String]

    /// Opens a recording file.
    public convenience init(path: String) throws {
        let file: FileBytes
        do { file = try FileBytes(path: path) } catch { throw LatentWatchError(.malformedFile, error.description) }
        try self.init(file: file)
    }

    /// Reads a recording held in memory; `name` stands for the path in messages.
    package convenience init(bytes: [UInt8], name: String) throws(LatentWatchError) {
        try self.init(file: FileBytes(bytes: bytes, name: name))
    }

    init(file: FileBytes) throws(LatentWatchError) {
        self.file = file
        let path = file.path
        func err(_ m: String) -> LatentWatchError { LatentWatchError(.malformedFile, "\(path): \(m)") }
        guard file.size >= 20, let head = try? file.read(at: 0, count: 16) else {
            throw err("too short to be a recording (\(file.size) bytes)")
        }
        guard Array(head[0..<8]) == RecordingFormat.magic else { throw err("not a LatentWatch recording (bad magic)") }
        let major = LittleEndian.read(head, 8, as: UInt16.self)
        let minor = LittleEndian.read(head, 10, as: UInt16.self)
        guard major == RecordingFormat.major else {
            throw err(
                "recording format \(major).\(minor) is newer than this reader (\(RecordingFormat.major).\(RecordingFormat.minor)); upgrade LatentWatch"
            )
        }
        let h = Int(LittleEndian.read(head, 12, as: UInt32.self))
        guard h >= 2, h <= RecordingFormat.maxHeaderBytes, 16 + h + 4 <= file.size else {
            throw err("header length \(h) is invalid or runs past the end of the file")
        }
        guard let all = try? file.read(at: 0, count: 16 + h + 4) else { throw err("cannot read the header") }
        let crc = LittleEndian.read(all, 16 + h, as: UInt32.self)
        guard CRC32.checksum(Array(all[0..<(16 + h)])) == crc else {
            throw err("header checksum mismatch (damaged file)")
        }
        let decoded: RecordingHeader
        do { decoded = try JSONDecoder().decode(RecordingHeader.self, from: Data(all[16..<(16 + h)])) } catch {
            throw err("header JSON is invalid: \(error)")
        }
        guard decoded.format == "latentwatch-recording", !decoded.layers.isEmpty, decoded.outputs >= 0 else {
            throw err("header does not describe a recording with at least one layer")
        }
        for l in decoded.layers {
            guard !l.shape.isEmpty, l.shape.allSatisfy({ $0 > 0 }), l.elements <= 1 << 28 else {
                throw err("layer '\(l.name)' has an invalid shape \(l.shape)")
            }
        }
        header = decoded

        var entries: [ChunkEntry] = []
        var warnings: [String] = []
        var offset = 16 + h + 4
        let chunkHeader = RecordingFormat.chunkHeaderBytes
        scan: while offset < file.size {
            let index = entries.count
            guard file.size - offset >= chunkHeader, let ch = try? file.read(at: offset, count: chunkHeader) else {
                warnings.append(
                    "torn last chunk at offset \(offset) skipped: only \(file.size - offset) of its 32 header bytes were written"
                )
                break
            }
            let valid =
                Array(ch[0..<4]) == RecordingFormat.chunkMagic
                && CRC32.checksum(Array(ch[0..<28])) == LittleEndian.read(ch, 28, as: UInt32.self)
            if !valid {
                if Self.hasValidChunkHeader(file, after: offset + 1) {
                    throw err(
                        "chunk \(index) at offset \(offset) is damaged (bad chunk header) and is not the last chunk"
                    )
                }
                warnings.append("torn last chunk at offset \(offset) skipped: its header is incomplete or damaged")
                break
            }
            let n = Int(LittleEndian.read(ch, 4, as: UInt32.self))
            let c = Int(LittleEndian.read(ch, 16, as: UInt32.self))
            let u = Int(LittleEndian.read(ch, 20, as: UInt32.self))
            guard n >= 1, n <= RecordingFormat.maxChunkRecords, u <= RecordingFormat.maxChunkBytes,
                u >= n * decoded.fixedRecordBytes()
            else {
                throw err("chunk \(index) at offset \(offset) declares impossible sizes (\(n) records, \(u) bytes)")
            }
            let entry = ChunkEntry(
                offset: offset,
                count: n,
                sequence: LittleEndian.read(ch, 8, as: UInt64.self),
                compressed: c,
                uncompressed: u,
                crc: LittleEndian.read(ch, 24, as: UInt32.self)
            )
            let end = offset + chunkHeader + c
            if end > file.size {
                warnings.append(
                    "torn last chunk at offset \(offset) skipped: \(file.size - offset - chunkHeader) of its \(c) payload bytes were written"
                )
                break scan
            }
            if end == file.size {
                // The last chunk: a checksum failure here is an interrupted write.
                let payload = (try? file.read(at: offset + chunkHeader, count: c)) ?? []
                if CRC32.checksum(payload) != entry.crc {
                    warnings.append("torn last chunk at offset \(offset) skipped: payload checksum mismatch")
                    break scan
                }
            }
            entries.append(entry)
            offset = end
        }
        self.entries = entries
        self.warnings = warnings
    }

    static func hasValidChunkHeader(_ file: FileBytes, after start: Int) -> Bool {
        var o = start
        let window = 1 << 20
        while o + RecordingFormat.chunkHeaderBytes <= file.size {
            let n = min(window + 32, file.size - o)
            guard let b = try? file.read(at: o, count: n) else { return false }
            var i = 0
            while i + 32 <= b.count {
                if b[i] == 0x4C && b[i + 1] == 0x57 && b[i + 2] == 0x43 && b[i + 3] == 0x4B
                    && CRC32.checksum(Array(b[i..<(i + 28)])) == LittleEndian.read(b, i + 28, as: UInt32.self)
                {
                    return true
                }
                i += 1
            }
            o += window
        }
        return false
    }

    /// Recorded layers, in header order.
    public var layers: [RecordedLayer] { header.layers }
    /// Output values per input (0: none).
    public var outputCount: Int { header.outputs }
    /// Sampling the recorder used ("all", "rate:p", "reservoir:k").
    package var sampling: String { header.sampling }
    /// Creation time (ISO 8601) and writer version.
    package var created: String { header.created }
    /// Version of LatentWatch that wrote the file.
    package var libraryVersion: String { header.libraryVersion }
    /// Good chunks.
    public var chunkCount: Int { entries.count }
    /// Records in good chunks.
    public var recordCount: Int { entries.reduce(0) { $0 + $1.count } }
    /// Records per good chunk.
    package var chunkSizes: [Int] { entries.map(\.count) }

    /// Decodes chunk `i`.
    func chunk(_ i: Int) throws(LatentWatchError) -> RecordingChunk {
        let e = entries[i]
        let path = file.path
        guard let payload = try? file.read(at: e.offset + RecordingFormat.chunkHeaderBytes, count: e.compressed) else {
            throw LatentWatchError(.malformedFile, "\(path): chunk \(i) cannot be read")
        }
        guard CRC32.checksum(payload) == e.crc else {
            throw LatentWatchError(
                .malformedFile,
                "\(path): chunk \(i) at offset \(e.offset) is damaged (payload checksum mismatch)"
            )
        }
        guard case .success(let raw) = Zstd.decompressed(payload[...], expected: e.uncompressed) else {
            throw LatentWatchError(
                .malformedFile,
                "\(path): chunk \(i) at offset \(e.offset) does not decompress to its declared size"
            )
        }
        switch RecordingChunk.parse(raw, count: e.count, header: header) {
        case .success(let c): return c
        case .failure(let f): throw LatentWatchError(.malformedFile, "\(path): chunk \(i): \(f.message)")
        }
    }

    /// Calls `body` with every good chunk, in order.
    func forEachChunk(_ body: (RecordingChunk) throws -> Void) throws {
        for i in 0..<entries.count { try body(try chunk(i)) }
    }

    /// Every request id, in record order.
    public func requestIDs() throws -> [String?] {
        var out: [String?] = []
        try forEachChunk { out += $0.requestIDs }
        return out
    }

    /// Every record's stream index, in record order.
    public func inputIndices() throws -> [Int] {
        var out: [Int] = []
        try forEachChunk { c in
            for v in c.indices {
                guard let i = Int(exactly: v) else {
                    throw LatentWatchError(
                        .malformedFile,
                        "a record's input index \(v) is beyond 2^63 - 1",
                        path: file.path
                    )
                }
                out.append(i)
            }
        }
        return out
    }
}
