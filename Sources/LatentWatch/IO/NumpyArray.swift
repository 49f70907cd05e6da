import Foundation
import LatentWatchNumerics

/// A .npy array (format versions 1-3, C order, little-endian float32/float16/float64 or int64/int32).
public struct NumpyArray: Sendable {
    /// Element types read.
    public enum DType: String, Sendable {
        case float32 = "<f4"
        case float16 = "<f2"
        case float64 = "<f8"
        case int64 = "<i8"
        case int32 = "<i4"
        var width: Int {
            switch self {
            case .float16: return 2
            case .float32, .int32: return 4
            case .float64, .int64: return 8
            }
        }
    }

    /// Shape (empty for a 0-d array).
    public let shape: [Int]
    /// Element type on disk.
    public let dtype: DType
    /// Raw little-endian element bytes.
    let bytes: [UInt8]

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Reads a .npy file.
    public init(contentsOf path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw NumpyError("\(path): cannot read: \(error.localizedDescription)")
        }
        do { try self.init(bytes: Array(data)) } catch let e as NumpyError { throw NumpyError("\(path): \(e.message)") }
    }

    /// Parses .npy bytes.
    public init(bytes b: [UInt8]) throws {
        guard b.count >= 10, Array(b[0..<6]) == [0x93] + Array("NUMPY".utf8) else {
            throw NumpyError("not a .npy file (bad magic)")
        }
        let major = b[6]
        let headerLength: Int
        let start: Int
        switch major {
        case 1:
            headerLength = Int(b[8]) | Int(b[9]) << 8
            start = 10
        case 2, 3:
            guard b.count >= 12 else { throw NumpyError("truncated .npy header") }
            headerLength = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24
            start = 12
        default: throw NumpyError(".npy format version \(major) is not supported (1-3 are)")
        }
        guard headerLength <= 1 << 20, start + headerLength <= b.count else {
            throw NumpyError("truncated .npy header (declares \(headerLength) bytes)")
        }
        let header = String(decoding: b[start..<(start + headerLength)], as: UTF8.self)
        guard let descrValue = Self.value(of: "descr", in: header),
            let q1 = descrValue.firstIndex(where: { $0 == "'" || $0 == "\"" }),
            let q2 = descrValue[descrValue.index(after: q1)...].firstIndex(where: { $0 == "'" || $0 == "\"" })
        else {
            throw NumpyError(".npy header has no descr")
        }
        let descr = String(descrValue[descrValue.index(after: q1)..<q2])
        guard let dt = DType(rawValue: descr == "|f2" ? "<f2" : descr) else {
            throw NumpyError("dtype '\(descr)' is not supported (little-endian f4, f2, f8, i8, i4 are)")
        }
        guard let fo = Self.value(of: "fortran_order", in: header),
            fo.trimmingCharacters(in: .whitespaces).hasPrefix("False")
        else {
            throw NumpyError("Fortran-order arrays are not supported; save with np.ascontiguousarray")
        }
        guard let shapeText = Self.value(of: "shape", in: header), let open = shapeText.firstIndex(of: "("),
            let close = shapeText.firstIndex(of: ")")
        else {
            throw NumpyError(".npy header has no shape")
        }
        var shape: [Int] = []
        for part in shapeText[shapeText.index(after: open)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw NumpyError("bad shape entry '\(t)'") }
            shape.append(v)
        }
        var total = 1
        for s in shape {
            let (r, o) = total.multipliedReportingOverflow(by: s)
            guard !o, r <= 1 << 34 else { throw NumpyError("shape \(shape) is implausibly large") }
            total = r
        }
        let dataStart = start + headerLength
        let need = total * dt.width
        guard b.count - dataStart >= need else {
            throw NumpyError("truncated data: shape \(shape) needs \(need) bytes, file has \(b.count - dataStart)")
        }
        self.shape = shape
        self.dtype = dt
        self.bytes = Array(b[dataStart..<(dataStart + need)])
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
    public func floats() -> [Float] {
        switch dtype {
        case .float32: return ByteCoding.values(bytes, as: Float.self)
        case .float16: return HalfConversion.toFloat(ByteCoding.values(bytes, as: UInt16.self))
        case .float64: return ByteCoding.values(bytes, as: Double.self).map { Float($0) }
        case .int64: return ByteCoding.values(bytes, as: Int64.self).map { Float($0) }
        case .int32: return ByteCoding.values(bytes, as: Int32.self).map { Float($0) }
        }
    }

    /// Elements as Double.
    public func doubles() -> [Double] {
        switch dtype {
        case .float64: return ByteCoding.values(bytes, as: Double.self)
        case .int64: return ByteCoding.values(bytes, as: Int64.self).map { Double($0) }
        case .int32: return ByteCoding.values(bytes, as: Int32.self).map { Double($0) }
        default: return floats().map { Double($0) }
        }
    }

    /// Elements as Int (floats must be integral).
    public func ints() throws -> [Int] {
        switch dtype {
        case .int64: return ByteCoding.values(bytes, as: Int64.self).map { Int($0) }
        case .int32: return ByteCoding.values(bytes, as: Int32.self).map { Int($0) }
        default:
            let d = doubles()
            guard d.allSatisfy({ $0 == $0.rounded() && abs($0) < 1e15 }) else {
                throw NumpyError("labels must be integers")
            }
            return d.map { Int($0) }
        }
    }

    /// Writes a float32 .npy file (format 1.0).
    public static func write(_ values: [Float], shape: [Int], to path: String) throws {
        try write(bytes: ByteCoding.bytes(of: values), descr: "<f4", shape: shape, to: path)
    }

    /// Writes a float64 .npy file (format 1.0).
    public static func write(_ values: [Double], shape: [Int], to path: String) throws {
        try write(bytes: ByteCoding.bytes(of: values), descr: "<f8", shape: shape, to: path)
    }

    /// Writes an int64 .npy file (format 1.0).
    public static func write(_ values: [Int], shape: [Int], to path: String) throws {
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

/// A .npy file could not be read.
public struct NumpyError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let message: String
    /// Creates an error with a message.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
