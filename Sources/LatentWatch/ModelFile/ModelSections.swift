import LatentWatchNumerics

/// Element types of tensors in a model file.
public enum TensorDType: String, Sendable, Codable {
    case f32, f16, f64, u32, i64

    /// Bytes per element.
    public var width: Int {
        switch self {
        case .f16: return 2
        case .f32, .u32: return 4
        case .f64, .i64: return 8
        }
    }
}

/// Description of one tensor section in the metadata.
public struct TensorDescriptor: Sendable, Codable, Equatable {
    /// Tensor name, e.g. `density.means`.
    public var name: String
    /// Index of its `TNSR` section.
    public var section: Int
    /// Element type.
    public var dtype: TensorDType
    /// Shape.
    public var shape: [Int]
    /// `dense` or `packed-lower`.
    public var layout: String
}

/// Density parameters that live in the metadata JSON (scalars and short vectors).
public struct DensityDescriptor: Sendable, Codable, Equatable {
    public var family: String
    public var dimension: Int
    public var components: Int
    public var precision: Precision
    public var classLabels: [Int]?
    public var logWeights: [Double]
    public var logNormalizers: [Double]
    public var regularization: [AppliedRegularization]

    enum CodingKeys: String, CodingKey {
        case family, dimension, components, precision
        case classLabels = "class_labels"
        case logWeights = "log_weights"
        case logNormalizers = "log_normalizers"
        case regularization
    }

    public init(
        family: String,
        dimension: Int,
        components: Int,
        precision: Precision,
        classLabels: [Int]?,
        logWeights: [Double],
        logNormalizers: [Double],
        regularization: [AppliedRegularization]
    ) {
        self.family = family
        self.dimension = dimension
        self.components = components
        self.precision = precision
        self.classLabels = classLabels
        self.logWeights = logWeights
        self.logNormalizers = logNormalizers
        self.regularization = regularization
    }
}

/// A tensor on its way into a file.
public struct PendingTensor: Sendable {
    public var name: String
    public var dtype: TensorDType
    public var shape: [Int]
    public var layout: String
    public var bytes: [UInt8]
}

/// Collects what a model contributes to a file: the density descriptor and the tensors.
public struct ModelSectionWriter: Sendable {
    /// The density's JSON part.
    public var density: DensityDescriptor?
    /// Tensors in the order they will be written.
    public private(set) var tensors: [PendingTensor] = []

    /// An empty writer.
    public init() {}

    /// Adds float values at a precision (f32, or f16 bits).
    public mutating func addFloats(
        _ name: String,
        _ values: [Float],
        shape: [Int],
        precision: Precision = .float32,
        layout: String = "dense"
    ) {
        switch precision {
        case .float32:
            tensors.append(
                PendingTensor(
                    name: name,
                    dtype: .f32,
                    shape: shape,
                    layout: layout,
                    bytes: ByteCoding.bytes(of: values)
                )
            )
        case .float16:
            addHalf(name, HalfConversion.toHalf(values), shape: shape, layout: layout)
        }
    }

    /// Adds binary16 bit patterns.
    public mutating func addHalf(_ name: String, _ bits: [UInt16], shape: [Int], layout: String = "dense") {
        tensors.append(
            PendingTensor(name: name, dtype: .f16, shape: shape, layout: layout, bytes: ByteCoding.bytes(of: bits))
        )
    }

    /// Adds doubles.
    public mutating func addDoubles(_ name: String, _ values: [Double], shape: [Int]) {
        tensors.append(
            PendingTensor(name: name, dtype: .f64, shape: shape, layout: "dense", bytes: ByteCoding.bytes(of: values))
        )
    }

    /// Adds unsigned 32-bit integers.
    public mutating func addUInt32(_ name: String, _ values: [UInt32], shape: [Int]) {
        tensors.append(
            PendingTensor(name: name, dtype: .u32, shape: shape, layout: "dense", bytes: ByteCoding.bytes(of: values))
        )
    }

    /// Adds a stack of packed lower-triangular factors at their storage precision.
    public mutating func addFactors(_ name: String, _ factors: [PackedTriangular], dimension d: Int) {
        let shape = [factors.count, d]
        if factors.allSatisfy({ $0.precision == .float16 }) {
            var bits: [UInt16] = []
            bits.reserveCapacity(factors.count * d * (d + 1) / 2)
            for f in factors { bits += f.rowPackedHalf()! }
            addHalf(name, bits, shape: shape, layout: "packed-lower")
        } else {
            var values: [Float] = []
            values.reserveCapacity(factors.count * d * (d + 1) / 2)
            for f in factors { values += f.rowPacked() }
            addFloats(name, values, shape: shape, layout: "packed-lower")
        }
    }
}

/// Gives a family decoder the density descriptor and typed access to tensors, checking shapes.
public struct ModelSectionReader: Sendable {
    /// The density's JSON part.
    public let density: DensityDescriptor
    let descriptors: [String: TensorDescriptor]
    let payloads: [Int: [UInt8]]

    init(density: DensityDescriptor, descriptors: [String: TensorDescriptor], payloads: [Int: [UInt8]]) {
        self.density = density
        self.descriptors = descriptors
        self.payloads = payloads
    }

    /// Whether a tensor is present.
    public func has(_ name: String) -> Bool { descriptors[name] != nil }

    func descriptor(_ name: String, shape: [Int], layout: String) throws(ModelFileError) -> (TensorDescriptor, [UInt8])
    {
        guard let t = descriptors[name] else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' is missing",
                remedy: "re-export the model with a current LatentWatch"
            )
        }
        guard t.shape == shape else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' has shape \(t.shape), the metadata implies \(shape)",
                remedy: "the file is inconsistent; refit or re-export the model"
            )
        }
        guard t.layout == layout else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' has layout '\(t.layout)', expected '\(layout)'",
                remedy: "refit or re-export the model"
            )
        }
        guard let bytes = payloads[t.section] else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' points at section \(t.section), which is not a tensor section",
                remedy: "refit or re-export the model"
            )
        }
        let elements: Int
        if layout == "packed-lower" {
            elements = shape[0] * shape[1] * (shape[1] + 1) / 2
        } else {
            elements = shape.reduce(1, *)
        }
        guard bytes.count == elements * t.dtype.width else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' holds \(bytes.count) bytes, its shape needs \(elements * t.dtype.width)",
                remedy: "refit or re-export the model"
            )
        }
        return (t, bytes)
    }

    /// Float values (f16 widened), checked against a shape; non-finite values are refused.
    public func floats(_ name: String, shape: [Int], layout: String = "dense") throws(ModelFileError) -> [Float] {
        let (t, bytes) = try descriptor(name, shape: shape, layout: layout)
        let values: [Float]
        switch t.dtype {
        case .f32: values = ByteCoding.values(bytes, as: Float.self)
        case .f16: values = HalfConversion.toFloat(ByteCoding.values(bytes, as: UInt16.self))
        default:
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' has dtype \(t.dtype.rawValue), expected f32 or f16",
                remedy: "refit or re-export the model"
            )
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' holds a non-finite value at element \(bad)",
                remedy: "refit the model; its parameters are corrupt"
            )
        }
        return values
    }

    /// binary16 bits when the tensor is stored as f16, else nil.
    public func halfBits(_ name: String, shape: [Int], layout: String = "dense") throws(ModelFileError) -> [UInt16]? {
        let (t, bytes) = try descriptor(name, shape: shape, layout: layout)
        guard t.dtype == .f16 else { return nil }
        return ByteCoding.values(bytes, as: UInt16.self)
    }

    /// Double values checked against a shape.
    public func doubles(_ name: String, shape: [Int]) throws(ModelFileError) -> [Double] {
        let (t, bytes) = try descriptor(name, shape: shape, layout: "dense")
        guard t.dtype == .f64 else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' has dtype \(t.dtype.rawValue), expected f64",
                remedy: "refit or re-export the model"
            )
        }
        return ByteCoding.values(bytes, as: Double.self)
    }

    /// UInt32 values checked against a shape.
    public func uint32s(_ name: String, shape: [Int]) throws(ModelFileError) -> [UInt32] {
        let (t, bytes) = try descriptor(name, shape: shape, layout: "dense")
        guard t.dtype == .u32 else {
            throw ModelFileError(
                .inconsistentModel,
                "tensor '\(name)' has dtype \(t.dtype.rawValue), expected u32",
                remedy: "refit or re-export the model"
            )
        }
        return ByteCoding.values(bytes, as: UInt32.self)
    }

    /// Decodes a stack of packed factors at the stored precision.
    public func factors(_ name: String, count: Int, dimension d: Int) throws(ModelFileError) -> [PackedTriangular] {
        let per = d * (d + 1) / 2
        if let bits = try halfBits(name, shape: [count, d], layout: "packed-lower") {
            return (0..<count).map {
                PackedTriangular(rowPackedHalf: Array(bits[($0 * per)..<(($0 + 1) * per)]), dimension: d)
            }
        }
        let values = try floats(name, shape: [count, d], layout: "packed-lower")
        return (0..<count).map {
            PackedTriangular(rowPacked: Array(values[($0 * per)..<(($0 + 1) * per)]), dimension: d, precision: .float32)
        }
    }
}

/// Little-endian conversion between arrays of fixed-width values and bytes.
public enum ByteCoding {
    /// The little-endian bytes of an array of trivial values.
    public static func bytes<T: BitwiseCopyable>(of values: [T]) -> [UInt8] {
        values.withUnsafeBytes { Array($0) }
    }

    /// Values from little-endian bytes (count must be a multiple of the width).
    public static func values<T: BitwiseCopyable>(_ bytes: [UInt8], as: T.Type) -> [T] {
        let n = bytes.count / MemoryLayout<T>.stride
        return [T](unsafeUninitializedCapacity: n) { buf, initialized in
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buf).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: raw[0..<(n * MemoryLayout<T>.stride)])
                )
            }
            initialized = n
        }
    }
}
