import Foundation
import LatentWatchNumerics

extension LatentWatchError {
    /// An activation, label or recording file that is not valid.
    package static func malformed(_ path: String, _ message: String) -> LatentWatchError {
        LatentWatchError(.malformedFile, message, path: path)
    }
}

/// File formats recognised by content (never by name).
package enum TensorFileFormat: String, Sendable {
    case npy
    case npz
    case safetensors
    case recording
}

/// One array in a file: name, element type, shape (first axis: rows, for example inputs).
public struct TensorInfo: Sendable, Equatable {
    /// The array's name (npz member, safetensors tensor or recorded layer; empty for a .npy file).
    public let name: String
    /// Element type as stored.
    public let dtype: ElementType
    /// Shape; the first axis counts rows (inputs).
    public let shape: [Int]
    /// Rows (first axis; 1 for a 0-d array).
    public var rows: Int { shape.first ?? 1 }
    /// Shape of one row.
    public var rowShape: [Int] { Array(shape.dropFirst()) }
    /// Elements per row.
    public var rowElements: Int { rowShape.reduce(1, *) }
}

/// Reads arrays from .npy, .npz (stored and deflated members), safetensors and LatentWatch recordings,
/// recognised by their first bytes, in chunks of rows so large files are never loaded whole. Every declared
/// size is checked against limits and against the file before anything is allocated.
public final class TensorFile: @unchecked Sendable {
    enum Storage {
        /// Raw little-endian elements at this file offset.
        case contiguous(offset: Int)
        /// A zip member (numpy.savez stores, numpy.savez_compressed deflates): where its bytes start in the
        /// file and how many there are, the .npy header length inside it, its uncompressed size and its zip
        /// CRC-32 over the uncompressed bytes (verified after every full pass).
        case zipMember(start: Int, stored: Int, deflated: Bool, header: Int, size: Int, crc: UInt32)
        /// A recording column.
        case recordingLayer(Int)
        case recordingOutputs
        case recordingTimestamps
        case recordingIndices
    }

    /// The file's path.
    public let path: String
    /// Its format, from its content.
    package let format: TensorFileFormat
    /// Arrays it holds, in file order.
    public let tensors: [TensorInfo]
    /// Problems that did not stop reading (for example a torn last chunk of a recording).
    public let warnings: [String]
    let storage: [String: Storage]
    let file: FileBytes
    let recording: RecordingReader?
    let cache = LockedValue<[String: [Float]]>([:])

    /// Largest number of elements one array may declare (2^34, 64 GiB of float32).
    static let maxElements = 1 << 34

    /// Whether a declared shape is plausible: the product of its entries, with zeros counted as ones, is at most
    /// ``maxElements``. Counting zeros as ones refuses a shape like (0, 10^13), which holds no element but whose
    /// rows a reader would allocate at full width.
    static func isPlausible(_ shape: [Int]) -> Bool {
        var total = 1
        for v in shape {
            guard v >= 0 else { return false }
            let (r, o) = total.multipliedReportingOverflow(by: max(v, 1))
            guard !o, r <= maxElements else { return false }
            total = r
        }
        return true
    }

    /// Opens a file and reads its directory (not its data).
    public convenience init(path: String) throws(LatentWatchError) {
        try self.init(file: try FileBytes(path: path))
    }

    /// Reads the directory of bytes held in memory; `name` stands for a path in messages.
    package convenience init(bytes: [UInt8], name: String) throws(LatentWatchError) {
        try self.init(file: FileBytes(bytes: bytes, name: name))
    }

    init(file: FileBytes) throws(LatentWatchError) {
        let path = file.path
        self.file = file
        self.path = path
        let head = try file.read(at: 0, count: min(16, file.size))
        func err(_ m: String) -> LatentWatchError { LatentWatchError.malformed(path, m) }
        if head.count >= 6 && Array(head[0..<6]) == [0x93] + Array("NUMPY".utf8) {
            format = .npy
            let h = try NumpyHeader.read(path: path) { (o, n) throws(LatentWatchError) in try file.read(at: o, count: n)
            }
            try Self.checkFits(h, available: file.size - h.dataOffset, path: path)
            let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            tensors = [TensorInfo(name: name, dtype: h.dtype, shape: h.shape)]
            storage = [name: .contiguous(offset: h.dataOffset)]
            recording = nil
            warnings = []
        } else if head.count >= 4 && head[0] == 0x50 && head[1] == 0x4B && (head[2] == 3 || head[2] == 5) {
            format = .npz
            (tensors, storage) = try Self.readZipDirectory(file)
            recording = nil
            warnings = []
        } else if head.count >= 8 && Array(head[0..<8]) == RecordingFormat.magic {
            format = .recording
            let r: RecordingReader
            do { r = try RecordingReader(file: file) } catch {
                throw err(error.message.replacingOccurrences(of: "\(path): ", with: ""))
            }
            recording = r
            warnings = r.warnings
            let n = r.recordCount
            var t: [TensorInfo] = []
            var st: [String: Storage] = [:]
            for (i, l) in r.layers.enumerated() {
                t.append(TensorInfo(name: l.name, dtype: l.dtype, shape: [n] + l.shape))
                st[l.name] = .recordingLayer(i)
            }
            if r.outputCount > 0 {
                t.append(TensorInfo(name: "outputs", dtype: .float32, shape: [n, r.outputCount]))
                st["outputs"] = .recordingOutputs
            }
            t.append(TensorInfo(name: "timestamps", dtype: .float64, shape: [n]))
            st["timestamps"] = .recordingTimestamps
            t.append(TensorInfo(name: "indices", dtype: .int64, shape: [n]))
            st["indices"] = .recordingIndices
            tensors = t
            storage = st
        } else if head.count >= 9 && head[8] == UInt8(ascii: "{") {
            format = .safetensors
            (tensors, storage) = try Self.readSafetensorsHeader(file)
            recording = nil
            warnings = []
        } else if head.count >= 4 && Array(head[0..<4]) == [0x89, 0x4C, 0x57, 0x4D] {
            throw err("this is a LatentWatch model file (.lwm), not activations; pass it as --model")
        } else {
            throw err("unrecognised format: not .npy, .npz, safetensors or a LatentWatch recording")
        }
    }

    static func checkFits(_ h: NumpyHeader, available: Int, path: String) throws(LatentWatchError) {
        let need = h.elements * h.dtype.byteWidth
        guard need <= available else {
            throw LatentWatchError.malformed(
                path,
                "truncated data: shape \(h.shape) of \(h.dtype.rawValue) needs \(need) bytes, \(max(0, available)) present"
            )
        }
    }

    /// The array called `name`; with nil, the only activation array (an error lists the choices when
    /// there are several).
    public func tensor(_ name: String?) throws(LatentWatchError) -> TensorInfo {
        if let name {
            guard let t = tensors.first(where: { $0.name == name }) else {
                throw LatentWatchError.malformed(
                    path,
                    "has no array '\(name)'; it holds \(tensors.map(\.name).joined(separator: ", "))"
                )
            }
            return t
        }
        if let r = recording {
            if r.layers.count == 1 { return tensors[0] }
            throw LatentWatchError.malformed(
                path,
                "records several layers (\(r.layers.map(\.name).joined(separator: ", "))); choose one with --key"
            )
        }
        if tensors.count == 1 { return tensors[0] }
        let floats = tensors.filter { $0.dtype.isFloatingPoint && $0.shape.count >= 2 }
        if floats.count == 1 { return floats[0] }
        throw LatentWatchError.malformed(
            path,
            "holds several arrays (\(tensors.map(\.name).joined(separator: ", "))); choose one with --key"
        )
    }

    /// Calls `body` with consecutive blocks of at most `rowsPerChunk` rows of array `name`, converted to
    /// Float, and the range of row numbers each block covers.
    public func forEachChunk(
        _ name: String,
        rowsPerChunk: Int = 4096,
        _ body: (UnsafeBufferPointer<Float>, Range<Int>) throws -> Void
    ) throws {
        let t = try tensor(name)
        guard let st = storage[t.name] else { throw LatentWatchError.malformed(path, "no storage for '\(name)'") }
        let per = t.shape.isEmpty ? 1 : t.rowElements
        switch st {
        case .contiguous, .zipMember:
            // No buffer for an array of zero rows, whatever its declared width.
            let rowCount = t.shape.isEmpty ? 1 : t.rows
            var out = [Float](repeating: 0, count: min(rowCount, max(1, rowsPerChunk)) * per)
            try forEachRawChunk(t, rowsPerChunk: rowsPerChunk) { raw, rows in
                let n = rows.count * per
                Self.convert(raw, count: n, dtype: t.dtype, into: &out)
                try out.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[0..<n]), rows) }
            }
        case .recordingLayer, .recordingOutputs, .recordingTimestamps, .recordingIndices:
            guard let rec = recording else { return }
            var r = 0
            try rec.forEachChunk { c in
                let values: [Float]
                switch st {
                case .recordingLayer(let i):
                    var out = [Float](repeating: 0, count: c.count * per)
                    let dtype: ElementType = rec.layers[i].dtype
                    c.layers[i].withUnsafeBytes { Self.convert($0, count: c.count * per, dtype: dtype, into: &out) }
                    values = out
                case .recordingOutputs: values = c.outputs
                case .recordingTimestamps: values = c.timestamps.map { Float($0) }
                default: values = c.indices.map { Float($0) }
                }
                try values.withUnsafeBufferPointer { try body($0, r..<(r + c.count)) }
                r += c.count
            }
        }
    }

    /// Reads the raw little-endian element bytes of a .npy, safetensors or zip-member array in blocks of at
    /// most `rowsPerChunk` rows, in order. For a zip member the whole member is checked against its CRC-32
    /// after the last block (a damaged archive throws then).
    func forEachRawChunk(
        _ t: TensorInfo,
        rowsPerChunk: Int,
        _ body: (UnsafeRawBufferPointer, Range<Int>) throws -> Void
    ) throws {
        let rowBytes = (t.shape.isEmpty ? 1 : t.rowElements) * t.dtype.byteWidth
        let rows = t.shape.isEmpty ? 1 : t.rows
        let step = max(1, rowsPerChunk)
        let file = self.file
        // `next` fills a buffer with the following bytes of the array's byte stream.
        let next: (UnsafeMutableRawBufferPointer) throws(LatentWatchError) -> Void
        var check: (expected: UInt32, tail: Int)? = nil
        var crc: UInt32 = 0
        switch storage[t.name] {
        case .contiguous(let offset):
            var position = offset
            next = { (b) throws(LatentWatchError) in
                try file.read(at: position, into: b)
                position += b.count
            }
        case .zipMember(let start, let stored, let deflated, let header, let size, let expected):
            if deflated {
                let stream = try InflateStream(file: file, offset: start, length: stored, member: t.name)
                next = { (b) throws(LatentWatchError) in try stream.read(into: b) }
            } else {
                var position = start
                next = { (b) throws(LatentWatchError) in
                    try file.read(at: position, into: b)
                    position += b.count
                }
            }
            var h = [UInt8](repeating: 0, count: header)
            try h.fill(next)
            crc = CRC32.checksum(h)
            check = (expected, size - header - rows * rowBytes)
        default:
            throw LatentWatchError.malformed(path, "array '\(t.name)' is not stored as raw elements")
        }
        var raw = [UInt8](repeating: 0, count: min(rows, step) * rowBytes)
        var r = 0
        while r < rows {
            let n = min(step, rows - r)
            let bytes = n * rowBytes
            try raw.fill { (b) throws(LatentWatchError) in
                try next(UnsafeMutableRawBufferPointer(rebasing: b[0..<bytes]))
            }
            try raw.withUnsafeBytes { b in
                let block = UnsafeRawBufferPointer(rebasing: b[0..<bytes])
                if check != nil { crc = CRC32.checksum(block, continuing: crc) }
                try body(block, r..<(r + n))
            }
            r += n
        }
        if let check {
            // Bytes the member declares after the array: read in bounded blocks, so a member that declares far
            // more than it holds runs out (truncated) instead of allocating its declared size.
            var left = check.tail
            var block = [UInt8](repeating: 0, count: min(max(left, 0), 1 << 16))
            while left > 0 {
                let n = min(left, block.count)
                try block.fill { (b) throws(LatentWatchError) in
                    try next(UnsafeMutableRawBufferPointer(rebasing: b[0..<n]))
                }
                crc = block.withUnsafeBytes {
                    CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<n]), continuing: crc)
                }
                left -= n
            }
            guard crc == check.expected else {
                throw LatentWatchError.malformed(
                    path,
                    "member '\(t.name)' fails its zip CRC-32 check (damaged archive)"
                )
            }
        }
    }

    /// Converts `count` little-endian elements to Float.
    static func convert(_ raw: UnsafeRawBufferPointer, count: Int, dtype: ElementType, into out: inout [Float]) {
        out.withUnsafeMutableBufferPointer { o in
            switch dtype {
            case .float32:
                UnsafeMutableRawBufferPointer(o).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: raw[0..<(count * 4)])
                )
            case .float16:
                if Int(bitPattern: raw.baseAddress) % 2 == 0 {
                    HalfConversion.convert(
                        raw.baseAddress!.assumingMemoryBound(to: UInt16.self),
                        to: o.baseAddress!,
                        count: count
                    )
                } else {
                    for i in 0..<count {
                        o[i] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    }
                }
            case .float64:
                for i in 0..<count { o[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .int64:
                for i in 0..<count { o[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            case .uint32:
                for i in 0..<count { o[i] = Float(raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
            case .int32:
                for i in 0..<count { o[i] = Float(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case .int8:
                for i in 0..<count { o[i] = Float(raw.load(fromByteOffset: i, as: Int8.self)) }
            }
        }
    }

    /// Rows `range` of array `name` as Float. Reads just those rows from .npy, stored .npz members and
    /// safetensors; deflated members and recordings are decoded whole on first use and cached.
    public func rows(_ name: String, _ range: Range<Int>) throws -> [Float] {
        let t = try tensor(name)
        let per = t.shape.isEmpty ? 1 : t.rowElements
        guard range.lowerBound >= 0, range.upperBound <= (t.shape.isEmpty ? 1 : t.rows) else {
            throw LatentWatchError.malformed(path, "rows \(range) are outside array '\(t.name)' of \(t.rows) rows")
        }
        if let st = storage[t.name], let offset = st.directOffset {
            let raw = try file.read(
                at: offset + range.lowerBound * per * t.dtype.byteWidth,
                count: range.count * per * t.dtype.byteWidth
            )
            var out = [Float](repeating: 0, count: range.count * per)
            raw.withUnsafeBytes { Self.convert($0, count: range.count * per, dtype: t.dtype, into: &out) }
            return out
        }
        let all = try cache.withLock { (c) throws -> [Float] in
            if let v = c[t.name] { return v }
            let v = try floats(t.name)
            c[t.name] = v
            return v
        }
        return Array(all[(range.lowerBound * per)..<(range.upperBound * per)])
    }

    /// All of array `name` as Float, row-major.
    public func floats(_ name: String? = nil) throws -> [Float] {
        let t = try tensor(name)
        var out: [Float] = []
        out.reserveCapacity(t.shape.reduce(1, *))
        try forEachChunk(t.name) { b, _ in out.append(contentsOf: b) }
        return out
    }

    /// All of array `name` as Double (regression targets): float64 arrays stored contiguously are read exactly,
    /// others through ``floats(_:)``.
    public func doubles(_ name: String? = nil) throws -> [Double] {
        let t = try tensor(name)
        if case .contiguous(let offset) = storage[t.name], t.dtype == .float64 {
            let n = t.shape.reduce(1, *)
            return ByteCoding.values(try file.read(at: offset, count: n * 8), as: Double.self)
        }
        if t.dtype == .int64 || t.dtype == .int32 { return try ints(t.name).map { Double($0) } }
        return try floats(t.name).map { Double($0) }
    }

    /// All of array `name` as integers (labels); float values must be integral.
    public func ints(_ name: String? = nil) throws -> [Int] {
        let t = try tensor(name)
        if case .contiguous(let offset) = storage[t.name], t.dtype == .int64 || t.dtype == .int32 {
            let n = t.shape.reduce(1, *)
            let raw = try file.read(at: offset, count: n * t.dtype.byteWidth)
            return t.dtype == .int64
                ? ByteCoding.values(raw, as: Int64.self).map { Int($0) }
                : ByteCoding.values(raw, as: Int32.self).map { Int($0) }
        }
        if t.name == "indices", recording != nil { return try recording!.inputIndices() }
        let f = try floats(t.name)
        guard f.allSatisfy({ $0 == $0.rounded() && abs($0) < 16_777_216 }) else {
            throw LatentWatchError.malformed(path, "array '\(t.name)' does not hold integer labels")
        }
        return f.map { Int($0) }
    }

    /// Request ids of a recording (nil for other formats).
    package func requestIDs() throws -> [String?]? { try recording?.requestIDs() }

    // MARK: npz

    static func readZipDirectory(_ file: FileBytes) throws(LatentWatchError) -> ([TensorInfo], [String: Storage]) {
        let path = file.path
        func err(_ m: String) -> LatentWatchError { LatentWatchError.malformed(path, m) }
        let tailCount = min(file.size, 65_557)
        let tail = try file.read(at: file.size - tailCount, count: tailCount)
        var eocd = -1
        var i = tail.count - 22
        while i >= 0 {
            if tail[i] == 0x50 && tail[i + 1] == 0x4B && tail[i + 2] == 0x05 && tail[i + 3] == 0x06 {
                eocd = i
                break
            }
            i -= 1
        }
        guard eocd >= 0 else { throw err("not a complete .npz archive (no zip directory; truncated?)") }
        let entries = Int(LittleEndian.read(tail, eocd + 10, as: UInt16.self))
        let dirSize = Int(LittleEndian.read(tail, eocd + 12, as: UInt32.self))
        let dirOffset = Int(LittleEndian.read(tail, eocd + 16, as: UInt32.self))
        if dirOffset == 0xFFFF_FFFF || entries == 0xFFFF {
            throw err("zip64 .npz archives (over 4 GiB) are not supported; save the arrays as .npy or safetensors")
        }
        guard dirOffset + dirSize <= file.size, dirSize <= 1 << 26 else {
            throw err("corrupt .npz (zip directory out of range)")
        }
        let dir = try file.read(at: dirOffset, count: dirSize)
        var tensors: [TensorInfo] = []
        var storage: [String: Storage] = [:]
        var p = 0
        for _ in 0..<entries {
            guard p + 46 <= dir.count, LittleEndian.read(dir, p, as: UInt32.self) == 0x0201_4B50 else {
                throw err("corrupt .npz central directory")
            }
            let method = Int(LittleEndian.read(dir, p + 10, as: UInt16.self))
            let crc = LittleEndian.read(dir, p + 16, as: UInt32.self)
            let compressed = Int(LittleEndian.read(dir, p + 20, as: UInt32.self))
            let size = Int(LittleEndian.read(dir, p + 24, as: UInt32.self))
            let nameLength = Int(LittleEndian.read(dir, p + 28, as: UInt16.self))
            let extra = Int(LittleEndian.read(dir, p + 30, as: UInt16.self))
            let comment = Int(LittleEndian.read(dir, p + 32, as: UInt16.self))
            let local = Int(LittleEndian.read(dir, p + 42, as: UInt32.self))
            guard p + 46 + nameLength <= dir.count else { throw err("truncated .npz directory") }
            let name = String(decoding: dir[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            p += 46 + nameLength + extra + comment
            if compressed == 0xFFFF_FFFF || size == 0xFFFF_FFFF || local == 0xFFFF_FFFF {
                throw err("member '\(name)' needs zip64 (over 4 GiB), which is not supported")
            }
            let lh = try file.read(at: local, count: 30)
            guard LittleEndian.read(lh, 0, as: UInt32.self) == 0x0403_4B50 else {
                throw err("corrupt .npz member '\(name)' (bad local header)")
            }
            let start =
                local + 30 + Int(LittleEndian.read(lh, 26, as: UInt16.self))
                + Int(LittleEndian.read(lh, 28, as: UInt16.self))
            guard start + compressed <= file.size else { throw err("truncated .npz member '\(name)'") }
            let key = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
            let header: NumpyHeader
            switch method {
            case 0:
                guard compressed == size else { throw err("corrupt .npz member '\(name)' (stored sizes differ)") }
                do {
                    header = try NumpyHeader.read(path: path) { (o, n) throws(LatentWatchError) in
                        guard o + n <= size else { throw LatentWatchError.malformed(path, "truncated .npy header") }
                        return try file.read(at: start + o, count: n)
                    }
                } catch { throw err("member '\(name)': \(error.message)") }
                try checkFits(header, available: size - header.dataOffset, path: "\(path) member '\(name)'")
                storage[key] = .zipMember(
                    start: start,
                    stored: compressed,
                    deflated: false,
                    header: header.dataOffset,
                    size: size,
                    crc: crc
                )
            case 8:
                let stream = try InflateStream(file: file, offset: start, length: compressed, member: name)
                var produced = 0
                do {
                    header = try NumpyHeader.read(path: path) { (o, n) throws(LatentWatchError) in
                        guard o == produced, o + n <= size else {
                            throw LatentWatchError.malformed(path, "truncated .npy header")
                        }
                        var b = [UInt8](repeating: 0, count: n)
                        try b.fill { (r) throws(LatentWatchError) in try stream.read(into: r) }
                        produced += n
                        return b
                    }
                } catch { throw err("member '\(name)': \(error.message)") }
                try checkFits(header, available: size - header.dataOffset, path: "\(path) member '\(name)'")
                storage[key] = .zipMember(
                    start: start,
                    stored: compressed,
                    deflated: true,
                    header: header.dataOffset,
                    size: size,
                    crc: crc
                )
            default:
                throw err("member '\(name)' uses zip method \(method); only stored (0) and deflated (8) are read")
            }
            tensors.append(TensorInfo(name: key, dtype: header.dtype, shape: header.shape))
        }
        return (tensors, storage)
    }

    // MARK: safetensors

    static func readSafetensorsHeader(_ file: FileBytes) throws(LatentWatchError) -> ([TensorInfo], [String: Storage]) {
        let path = file.path
        func err(_ m: String) -> LatentWatchError { LatentWatchError.malformed(path, "safetensors: " + m) }
        let lenBytes = try file.read(at: 0, count: 8)
        let n = LittleEndian.read(lenBytes, 0, as: UInt64.self)
        guard n >= 2, n <= 100_000_000, Int(n) <= file.size - 8 else {
            throw err("header length \(n) is invalid for a file of \(file.size) bytes")
        }
        let json = try file.read(at: 8, count: Int(n))
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw err("header is not a JSON object")
        }
        let dataStart = 8 + Int(n)
        let dataSize = file.size - dataStart
        var items: [(TensorInfo, Int, Int)] = []
        for (name, value) in object where name != "__metadata__" {
            guard let d = value as? [String: Any], let dt = d["dtype"] as? String, let shapeAny = d["shape"] as? [Any],
                let offs = d["data_offsets"] as? [Any], offs.count == 2
            else { throw err("entry '\(name)' lacks dtype, shape or data_offsets") }
            let dtype: ElementType
            switch dt {
            case "F32": dtype = .float32
            case "F16": dtype = .float16
            case "F64": dtype = .float64
            case "I64": dtype = .int64
            case "I32": dtype = .int32
            default:
                throw err(
                    "entry '\(name)' has dtype \(dt); F32, F16, F64, I64 and I32 are supported (convert BF16 to F32)"
                )
            }
            var shape: [Int] = []
            for s in shapeAny {
                guard let v = (s as? NSNumber)?.intValue, v >= 0 else { throw err("entry '\(name)' has a bad shape") }
                shape.append(v)
            }
            guard isPlausible(shape) else {
                throw err("entry '\(name)' declares an implausibly large shape \(shapeAny)")
            }
            let elements = shape.reduce(1, *)
            guard let b = (offs[0] as? NSNumber)?.intValue, let e = (offs[1] as? NSNumber)?.intValue, b >= 0, b <= e,
                e <= dataSize
            else {
                throw err("entry '\(name)' has data_offsets outside the file's \(dataSize) data bytes (truncated?)")
            }
            guard e - b == elements * dtype.byteWidth else {
                throw err(
                    "entry '\(name)' declares shape \(shape) of \(dt) (\(elements * dtype.byteWidth) bytes) but spans \(e - b) bytes"
                )
            }
            items.append((TensorInfo(name: name, dtype: dtype, shape: shape), b, e))
        }
        items.sort { $0.1 < $1.1 }
        for i in 1..<max(1, items.count) where items[i].1 < items[i - 1].2 {
            throw err("entries '\(items[i - 1].0.name)' and '\(items[i].0.name)' overlap")
        }
        var storage: [String: Storage] = [:]
        for (t, b, _) in items { storage[t.name] = .contiguous(offset: dataStart + b) }
        return (items.map(\.0), storage)
    }
}

/// The header of a .npy array.
struct NumpyHeader {
    let dtype: ElementType
    let shape: [Int]
    let dataOffset: Int
    var elements: Int { shape.reduce(1, *) }

    /// Parses a header through `fetch(offset, count)`, which is called with consecutive ranges.
    static func read(
        path: String,
        _ fetch: (Int, Int) throws(LatentWatchError) -> [UInt8]
    ) throws(LatentWatchError) -> NumpyHeader {
        func err(_ m: String) -> LatentWatchError { LatentWatchError.malformed(path, m) }
        let b = try fetch(0, 8)
        guard Array(b[0..<6]) == [0x93] + Array("NUMPY".utf8) else { throw err("not a .npy array (bad magic)") }
        let headerLength: Int
        let start: Int
        switch b[6] {
        case 1:
            let l = try fetch(8, 2)
            headerLength = Int(l[0]) | Int(l[1]) << 8
            start = 10
        case 2, 3:
            let l = try fetch(8, 4)
            headerLength = Int(l[0]) | Int(l[1]) << 8 | Int(l[2]) << 16 | Int(l[3]) << 24
            start = 12
        default: throw err(".npy format version \(b[6]) is not supported (1-3 are)")
        }
        guard headerLength <= 1 << 20 else { throw err(".npy header declares \(headerLength) bytes (limit 1 MiB)") }
        let header = String(decoding: try fetch(start, headerLength), as: UTF8.self)
        guard let descrValue = NumpyArray.value(of: "descr", in: header),
            let q1 = descrValue.firstIndex(where: { $0 == "'" || $0 == "\"" }),
            let q2 = descrValue[descrValue.index(after: q1)...].firstIndex(where: { $0 == "'" || $0 == "\"" })
        else { throw err(".npy header has no descr") }
        let descr = String(descrValue[descrValue.index(after: q1)..<q2])
        let dtype: ElementType
        switch descr {
        case "<f4": dtype = .float32
        case "<f2", "|f2": dtype = .float16
        case "<f8": dtype = .float64
        case "<i8": dtype = .int64
        case "<i4": dtype = .int32
        default:
            throw err("dtype '\(descr)' is not supported (little-endian float32, float16, float64, int64, int32 are)")
        }
        guard let fo = NumpyArray.value(of: "fortran_order", in: header),
            fo.trimmingCharacters(in: .whitespaces).hasPrefix("False")
        else { throw err("Fortran-order arrays are not supported; save with np.ascontiguousarray") }
        guard let shapeText = NumpyArray.value(of: "shape", in: header), let open = shapeText.firstIndex(of: "("),
            let close = shapeText[open...].firstIndex(of: ")")
        else { throw err(".npy header has no shape") }
        var shape: [Int] = []
        for part in shapeText[shapeText.index(after: open)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw err("bad shape entry '\(t)'") }
            shape.append(v)
        }
        guard TensorFile.isPlausible(shape) else { throw err("shape \(shape) is implausibly large") }
        return NumpyHeader(dtype: dtype, shape: shape, dataOffset: start + headerLength)
    }
}

extension TensorFile.Storage {
    /// Where raw elements start, for storages read in place.
    var directOffset: Int? {
        switch self {
        case .contiguous(let o): return o
        case .zipMember(let start, _, false, let header, _, _): return start + header
        default: return nil
        }
    }
}
