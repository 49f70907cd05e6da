import Foundation
import LatentWatchNumerics

/// Constants and coding of the recording format (Docs/RecordingFormat.md).
enum RecordingFormat {
    static let magic: [UInt8] = [0x89, 0x4C, 0x57, 0x52, 0x0D, 0x0A, 0x1A, 0x0A]
    static let chunkMagic: [UInt8] = Array("LWCK".utf8)
    static let major: UInt16 = 1
    static let minor: UInt16 = 0
    static let maxHeaderBytes = 1 << 20
    static let maxChunkRecords = 1 << 20
    static let maxChunkBytes = 1 << 30
    static let chunkHeaderBytes = 32
    static let noRequestID: UInt32 = 0xFFFF_FFFF
}

/// One recorded layer: name, shape of one activation, element type on disk.
public struct RecordedLayer: Sendable, Equatable, Codable {
    /// Layer name.
    public var name: String
    /// Shape of one activation.
    public var shape: [Int]
    /// Element type on disk: float32 or float16 (the recorder refuses others).
    public var dtype: ElementType

    /// Creates a layer description.
    public init(name: String, shape: [Int], dtype: ElementType = .float32) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
    }

    enum CodingKeys: String, CodingKey { case name, shape, dtype }

    /// Decodes the description from a recording's header JSON (dtype "f32" or "f16").
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        shape = try c.decode([Int].self, forKey: .shape)
        let tag = try c.decode(String.self, forKey: .dtype)
        guard let t = ElementType(tag: tag), t.isParameterPrecision else {
            throw DecodingError.dataCorruptedError(
                forKey: .dtype,
                in: c,
                debugDescription: "dtype '\(tag)' is not f32 or f16"
            )
        }
        dtype = t
    }

    /// Encodes the description as a recording's header JSON does.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(shape, forKey: .shape)
        try c.encode(dtype.tag, forKey: .dtype)
    }

    var elements: Int { shape.reduce(1, *) }
}

/// The JSON header of a recording file.
struct RecordingHeader: Codable, Equatable {
    var format = "latentwatch-recording"
    var libraryVersion: String
    var created: String
    var layers: [RecordedLayer]
    var outputs: Int
    var sampling: String
    var fileSequence: Int

    enum CodingKeys: String, CodingKey {
        case format, created, layers, outputs, sampling
        case libraryVersion = "library_version"
        case fileSequence = "file_sequence"
    }

    func encoded() -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = (try? enc.encode(self)) ?? Data("{}".utf8)
        var out = RecordingFormat.magic
        LittleEndian.append(RecordingFormat.major, to: &out)
        LittleEndian.append(RecordingFormat.minor, to: &out)
        LittleEndian.append(UInt32(json.count), to: &out)
        out += json
        LittleEndian.append(CRC32.checksum(out), to: &out)
        return out
    }

    /// Bytes in one record's payload, excluding request-id bytes.
    func fixedRecordBytes() -> Int {
        8 + 8 + 4 + layers.reduce(0) { $0 + $1.elements * $1.dtype.byteWidth } + outputs * 4
    }
}

/// A decoded chunk.
struct RecordingChunk {
    var timestamps: [Double] = []
    var indices: [UInt64] = []
    var requestIDs: [String?] = []
    /// Per layer: raw little-endian elements, record-major.
    var layers: [[UInt8]] = []
    var outputs: [Float] = []
    var count: Int { timestamps.count }
}

enum LittleEndian {
    static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
    static func read<T: FixedWidthInteger>(_ b: [UInt8], _ o: Int, as: T.Type) -> T {
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { dst in
            for i in 0..<MemoryLayout<T>.size { dst[i] = b[o + i] }
        }
        return T(littleEndian: v)
    }
}

extension RecordingChunk {
    /// The uncompressed payload (Docs/RecordingFormat.md, "Chunk").
    func payload(outputs: Int) -> [UInt8] {
        var out: [UInt8] = []
        let idBytes = requestIDs.reduce(0) { $0 + ($1?.utf8.count ?? 0) }
        out.reserveCapacity(count * 20 + idBytes + layers.reduce(0) { $0 + $1.count } + self.outputs.count * 4)
        timestamps.withUnsafeBytes { out.append(contentsOf: $0) }
        indices.withUnsafeBytes { out.append(contentsOf: $0) }
        for id in requestIDs {
            LittleEndian.append(id.map { UInt32($0.utf8.count) } ?? RecordingFormat.noRequestID, to: &out)
        }
        for id in requestIDs { if let id { out.append(contentsOf: id.utf8) } }
        for l in layers { out.append(contentsOf: l) }
        if outputs > 0 { self.outputs.withUnsafeBytes { out.append(contentsOf: $0) } }
        return out
    }

    /// Parses a payload of `n` records; nil with a reason when its size does not add up.
    static func parse(_ p: [UInt8], count n: Int, header: RecordingHeader) -> Result<RecordingChunk, LatentWatchError> {
        func fail(_ why: String) -> Result<RecordingChunk, LatentWatchError> {
            .failure(LatentWatchError(.malformedFile, why))
        }
        var o = 0
        guard p.count >= n * 20 else { return fail("payload of \(p.count) bytes is too short for \(n) records") }
        var c = RecordingChunk()
        c.timestamps = ByteCoding.values(Array(p[0..<(8 * n)]), as: Double.self)
        c.indices = ByteCoding.values(Array(p[(8 * n)..<(16 * n)]), as: UInt64.self)
        o = 16 * n
        var lengths: [Int] = []
        var total = 0
        for i in 0..<n {
            let l = LittleEndian.read(p, o + 4 * i, as: UInt32.self)
            if l == RecordingFormat.noRequestID {
                lengths.append(-1)
            } else {
                lengths.append(Int(l))
                total += Int(l)
            }
        }
        o += 4 * n
        let rest = header.layers.reduce(0) { $0 + $1.elements * $1.dtype.byteWidth * n } + header.outputs * 4 * n
        guard total <= p.count, o + total + rest == p.count else {
            return fail("payload size \(p.count) does not match its \(n) records (expected \(o + total + rest))")
        }
        for l in lengths {
            if l < 0 {
                c.requestIDs.append(nil)
            } else {
                c.requestIDs.append(String(decoding: p[o..<(o + l)], as: UTF8.self))
                o += l
            }
        }
        for layer in header.layers {
            let bytes = layer.elements * layer.dtype.byteWidth * n
            c.layers.append(Array(p[o..<(o + bytes)]))
            o += bytes
        }
        if header.outputs > 0 {
            c.outputs = ByteCoding.values(Array(p[o..<(o + header.outputs * 4 * n)]), as: Float.self)
        }
        return .success(c)
    }
}
