import LatentWatchNumerics

/// Description of one tensor section in the metadata.
package struct TensorDescriptor: Sendable, Codable, Equatable {
    /// Tensor name, e.g. `density.means`.
    package var name: String
    /// Index of its `TNSR` section.
    package var section: Int
    /// Element type, written as its short tag ("f32", "f16", "f64", "u32", "i64").
    package var dtype: ElementType
    /// Shape.
    package var shape: [Int]
    /// `dense` or `packed-lower`.
    package var layout: String

    enum CodingKeys: String, CodingKey { case name, section, dtype, shape, layout }

    package init(name: String, section: Int, dtype: ElementType, shape: [Int], layout: String) {
        self.name = name
        self.section = section
        self.dtype = dtype
        self.shape = shape
        self.layout = layout
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        section = try c.decode(Int.self, forKey: .section)
        let tag = try c.decode(String.self, forKey: .dtype)
        guard let t = ElementType(tag: tag) else {
            throw DecodingError.dataCorruptedError(forKey: .dtype, in: c, debugDescription: "unknown dtype '\(tag)'")
        }
        dtype = t
        shape = try c.decode([Int].self, forKey: .shape)
        layout = try c.decode(String.self, forKey: .layout)
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(section, forKey: .section)
        try c.encode(dtype.tag, forKey: .dtype)
        try c.encode(shape, forKey: .shape)
        try c.encode(layout, forKey: .layout)
    }
}

/// Density parameters that live in the metadata JSON (scalars and short vectors).
package struct DensityDescriptor: Sendable, Codable, Equatable {
    package var family: String
    package var dimension: Int
    package var components: Int
    package var precision: ElementType
    package var classLabels: [Int]?
    package var logWeights: [Double]
    package var logNormalizers: [Double]
    package var regularization: [AppliedRegularization]

    enum CodingKeys: String, CodingKey {
        case family, dimension, components, precision
        case classLabels = "class_labels"
        case logWeights = "log_weights"
        case logNormalizers = "log_normalizers"
        case regularization
    }

    package init(
        family: String,
        dimension: Int,
        components: Int,
        precision: ElementType,
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
package struct PendingTensor: Sendable {
    package var name: String
    package var dtype: ElementType
    package var shape: [Int]
    package var layout: String
    package var bytes: [UInt8]
}

/// Collects what a model contributes to a file: the density descriptor and the tensors.
package struct ModelSectionWriter: Sendable {
    /// The density's JSON part.
    package var density: DensityDescriptor?
    /// Tensors in the order they will be written.
    package private(set) var tensors: [PendingTensor] = []

    /// An empty writer.
    package init() {}

    /// Adds float values at a precision (f32, or f16 bits).
    package mutating func addFloats(
        _ name: String,
        _ values: [Float],
        shape: [Int],
        precision: ElementType = .float32,
        layout: String = "dense"
    ) {
        if precision == .float16 {
            addHalf(name, HalfConversion.toHalf(values), shape: shape, layout: layout)
        } else {
            tensors.append(
                PendingTensor(
                    name: name,
                    dtype: .float32,
                    shape: shape,
                    layout: layout,
                    bytes: ByteCoding.bytes(of: values)
                )
            )
        }
    }

    /// Adds binary16 bit patterns.
    package mutating func addHalf(_ name: String, _ bits: [UInt16], shape: [Int], layout: String = "dense") {
        tensors.append(
            PendingTensor(name: name, dtype: .float16, shape: shape, layout: layout, bytes: ByteCoding.bytes(of: bits))
        )
    }

    /// Adds doubles.
    package mutating func addDoubles(_ name: String, _ values: [Double], shape: [Int]) {
        tensors.append(
            PendingTensor(
                name: name,
                dtype: .float64,
                shape: shape,
                layout: "dense",
                bytes: ByteCoding.bytes(of: values)
            )
        )
    }

    /// Adds unsigned 32-bit integers.
    package mutating func addUInt32(_ name: String, _ values: [UInt32], shape: [Int]) {
        tensors.append(
            PendingTensor(
                name: name,
                dtype: .uint32,
                shape: shape,
                layout: "dense",
                bytes: ByteCoding.bytes(of: values)
            )
        )
    }

    /// Adds signed 8-bit integers.
    package mutating func addInt8(_ name: String, _ values: [Int8], shape: [Int]) {
        tensors.append(
            PendingTensor(
                name: name,
                dtype: .int8,
                shape: shape,
                layout: "dense",
                bytes: values.map { UInt8(bitPattern: $0) }
            )
        )
    }

    /// Adds a stack of packed lower-triangular factors at their storage precision.
    package mutating func addFactors(_ name: String, _ factors: [PackedTriangular], dimension d: Int) {
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
package struct ModelSectionReader: Sendable {
    /// The density's JSON part.
    package let density: DensityDescriptor
    let descriptors: [String: TensorDescriptor]
    let payloads: [Int: [UInt8]]

    init(density: DensityDescriptor, descriptors: [String: TensorDescriptor], payloads: [Int: [UInt8]]) {
        self.density = density
        self.descriptors = descriptors
        self.payloads = payloads
    }

    /// Whether a tensor is present.
    package func has(_ name: String) -> Bool { descriptors[name] != nil }

    func descriptor(
        _ name: String,
        shape: [Int],
        layout: String
    ) throws(LatentWatchError) -> (TensorDescriptor, [UInt8]) {
        guard let t = descriptors[name] else {
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' is missing",
                remedy: "re-export the model with a current LatentWatch"
            )
        }
        guard t.shape == shape else {
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' has shape \(t.shape), the metadata implies \(shape)",
                remedy: "the file is inconsistent; refit or re-export the model"
            )
        }
        guard t.layout == layout else {
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' has layout '\(t.layout)', expected '\(layout)'",
                remedy: "refit or re-export the model"
            )
        }
        guard let bytes = payloads[t.section] else {
            throw LatentWatchError(
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
        guard bytes.count == elements * t.dtype.byteWidth else {
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' holds \(bytes.count) bytes, its shape needs \(elements * t.dtype.byteWidth)",
                remedy: "refit or re-export the model"
            )
        }
        return (t, bytes)
    }

    /// Float values (f16 widened), checked against a shape; non-finite values are refused.
    package func floats(_ name: String, shape: [Int], layout: String = "dense") throws(LatentWatchError) -> [Float] {
        let (t, bytes) = try descriptor(name, shape: shape, layout: layout)
        let values: [Float]
        switch t.dtype {
        case .float32: values = ByteCoding.values(bytes, as: Float.self)
        case .float16: values = HalfConversion.toFloat(ByteCoding.values(bytes, as: UInt16.self))
        default:
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' has dtype \(t.dtype.tag), expected f32 or f16",
                remedy: "refit or re-export the model"
            )
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' holds a non-finite value at element \(bad)",
                remedy: "refit the model; its parameters are corrupt"
            )
        }
        return values
    }

    /// binary16 bits when the tensor is stored as f16, else nil.
    package func halfBits(_ name: String, shape: [Int], layout: String = "dense") throws(LatentWatchError) -> [UInt16]?
    {
        let (t, bytes) = try descriptor(name, shape: shape, layout: layout)
        guard t.dtype == .float16 else { return nil }
        return ByteCoding.values(bytes, as: UInt16.self)
    }

    /// Double values checked against a shape.
    package func doubles(_ name: String, shape: [Int]) throws(LatentWatchError) -> [Double] {
        try dense(name, shape: shape, .float64, as: Double.self)
    }

    /// Values of one dense dtype checked against a shape.
    private func dense<T: BitwiseCopyable>(
        _ name: String,
        shape: [Int],
        _ dtype: ElementType,
        as: T.Type
    ) throws(LatentWatchError)
        -> [T]
    {
        let (t, bytes) = try descriptor(name, shape: shape, layout: "dense")
        guard t.dtype == dtype else {
            throw LatentWatchError(
                .inconsistentModel,
                "tensor '\(name)' has dtype \(t.dtype.tag), expected \(dtype.tag)",
                remedy: "refit or re-export the model"
            )
        }
        return ByteCoding.values(bytes, as: T.self)
    }

    /// Signed 8-bit values checked against a shape.
    package func int8s(_ name: String, shape: [Int]) throws(LatentWatchError) -> [Int8] {
        try dense(name, shape: shape, .int8, as: Int8.self)
    }

    /// UInt32 values checked against a shape.
    package func uint32s(_ name: String, shape: [Int]) throws(LatentWatchError) -> [UInt32] {
        try dense(name, shape: shape, .uint32, as: UInt32.self)
    }

    /// Decodes a stack of packed factors at the stored precision.
    package func factors(_ name: String, count: Int, dimension d: Int) throws(LatentWatchError) -> [PackedTriangular] {
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
package enum ByteCoding {
    /// The little-endian bytes of an array of trivial values.
    package static func bytes<T: BitwiseCopyable>(of values: [T]) -> [UInt8] {
        values.withUnsafeBytes { Array($0) }
    }

    /// Values from little-endian bytes (count must be a multiple of the width).
    package static func values<T: BitwiseCopyable>(_ bytes: [UInt8], as: T.Type) -> [T] {
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
