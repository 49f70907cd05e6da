/// The element type of an array: of activations and labels in files, of recorded activations, of tensors in
/// model files, and the storage precision of fitted parameters (float32 or float16).
public enum ElementType: String, Sendable, Codable, CaseIterable {
    /// IEEE binary16.
    case float16
    /// IEEE binary32.
    case float32
    /// IEEE binary64.
    case float64
    /// Signed 32-bit integer.
    case int32
    /// Signed 64-bit integer.
    case int64
    /// Unsigned 32-bit integer.
    case uint32
    /// Signed 8-bit integer (a neighbour index's codes in model files).
    case int8

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .int8: return 1
        case .float16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64: return 8
        }
    }

    /// Whether the type is IEEE floating point.
    public var isFloatingPoint: Bool { self == .float16 || self == .float32 || self == .float64 }

    /// Whether fitted parameters can be stored in this type (float32 or float16).
    public var isParameterPrecision: Bool { self == .float16 || self == .float32 }

    /// The short tag model files and recordings write ("f16", "f32", "f64", "i32", "i64", "u32", "i8").
    package var tag: String {
        switch self {
        case .float16: return "f16"
        case .float32: return "f32"
        case .float64: return "f64"
        case .int32: return "i32"
        case .int64: return "i64"
        case .uint32: return "u32"
        case .int8: return "i8"
        }
    }

    /// The type of a short tag, nil when unknown.
    package init?(tag: String) {
        guard let t = ElementType.allCases.first(where: { $0.tag == tag }) else { return nil }
        self = t
    }

    /// The little-endian numpy descriptor ("<f4", ...).
    package var numpyDescriptor: String {
        switch self {
        case .float16: return "<f2"
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .int32: return "<i4"
        case .int64: return "<i8"
        case .uint32: return "<u4"
        case .int8: return "|i1"
        }
    }
}
