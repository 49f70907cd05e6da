import Foundation
import LatentWatchNumerics

/// A .npy array (format versions 1-3, C order, little-endian float32/float16/float64 or int64/int32).
package struct NumpyArray: Sendable {
    /// Shape (empty for a 0-d array).
    package let shape: [Int]
    /// Element type on disk.
    package let dtype: ElementType
    /// Raw little-endian element bytes.
    let bytes: [UInt8]

    /// Number of elements.
    package var count: Int { shape.reduce(1, *) }

    /// Reads a .npy file.
    package init(contentsOf path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw LatentWatchError(.malformedFile, "\(path): cannot read: \(error.localizedDescription)")
        }
        do { try self.init(bytes: Array(data)) } catch let e as LatentWatchError {
            throw LatentWatchError(.malformedFile, "\(path): \(e.message)")
        }
    }

    /// Parses .npy bytes.
    package init(bytes b: [UInt8]) throws {
        let h: NumpyHeader
        do {
            h = try NumpyHeader.read(path: ".npy") { (o, n) throws(LatentWatchError) in
                guard o + n <= b.count else { throw LatentWatchError.malformed(".npy", "truncated .npy header") }
                return Array(b[o..<(o + n)])
            }
        } catch { throw LatentWatchError(.malformedFile, error.message) }
        let need = h.elements * h.dtype.byteWidth
        guard b.count - h.dataOffset >= need else {
            throw LatentWatchError(
                .malformedFile,
                "truncated data: shape \(h.shape) needs \(need) bytes, file has \(b.count - h.dataOffset)"
            )
        }
        self.init(shape: h.shape, dtype: h.dtype, bytes: Array(b[h.dataOffset..<(h.dataOffset + need)]))
    }

    init(shape: [Int], dtype: ElementType, bytes: [UInt8]) {
        self.shape = shape
        self.dtype = dtype
        self.bytes = bytes
    }

    static func value(of key: String, in header: String) -> Substring? {
        for quote in ["'", "\""] {
            if let r = header.range(of: "\(quote)\(key)\(quote)") {
                let after = header[r.upperBound...]
                guard let colon = after.firstIndex(of: ":") else { return nil }
                return after[after.index(after: colon)...]
            }
        }
        return nil
    }

    /// Elements as Float (float64 rounded; ints converted).
    package func floats() -> [Float] {
        switch dtype {
        case .float32: return ByteCoding.values(bytes, as: Float.self)
        case .float16: return HalfConversion.toFloat(ByteCoding.values(bytes, as: UInt16.self))
        case .float64: return ByteCoding.values(bytes, as: Double.self).map { Float($0) }
        case .int64: return ByteCoding.values(bytes, as: Int64.self).map { Float($0) }
        case .int32: return ByteCoding.values(bytes, as: Int32.self).map { Float($0) }
        case .uint32: return ByteCoding.values(bytes, as: UInt32.self).map { Float($0) }
        case .int8: return bytes.map { Float(Int8(bitPattern: $0)) }
        }
    }

    /// Elements as Double.
    package func doubles() -> [Double] {
        switch dtype {
        case .float64: return ByteCoding.values(bytes, as: Double.self)
        case .int64: return ByteCoding.values(bytes, as: Int64.self).map { Double($0) }
        case .int32: return ByteCoding.values(bytes, as: Int32.self).map { Double($0) }
        default: return floats().map { Double($0) }
        }
    }

    /// Elements as Int (floats must be integral).
    package func ints() throws -> [Int] {
        switch dtype {
        case .int64: return ByteCoding.values(bytes, as: Int64.self).map { Int($0) }
        case .int32: return ByteCoding.values(bytes, as: Int32.self).map { Int($0) }
        default:
            let d = doubles()
            guard d.allSatisfy({ $0 == $0.rounded() && abs($0) < 1e15 }) else {
                throw LatentWatchError(.malformedFile, "labels must be integers")
            }
            return d.map { Int($0) }
        }
    }

    /// Writes a float32 .npy file (format 1.0).
    package static func write(_ values: [Float], shape: [Int], to path: String) throws {
        try write(bytes: ByteCoding.bytes(of: values), descr: "<f4", shape: shape, to: path)
    }

    /// Writes a float64 .npy file (format 1.0).
    package static func write(_ values: [Double], shape: [Int], to path: String) throws {
        try write(bytes: ByteCoding.bytes(of: values), descr: "<f8", shape: shape, to: path)
    }

    /// Writes an int64 .npy file (format 1.0).
    package static func write(_ values: [Int], shape: [Int], to path: String) throws {
        try write(bytes: ByteCoding.bytes(of: values.map { Int64($0) }), descr: "<i8", shape: shape, to: path)
    }

    static func write(bytes: [UInt8], descr: String, shape: [Int], to path: String) throws {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let h = Array(header.utf8)
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.count & 0xFF), UInt8(h.count >> 8)]
        out += h
        out += bytes
        try Data(out).write(to: URL(fileURLWithPath: path))
    }
}
