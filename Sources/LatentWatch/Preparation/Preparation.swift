#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// A fitted input preparation: pooling, optional L2 normalisation and optional PCA, mapping a raw
/// activation of ``inputShape`` to a latent vector of ``outputDimension`` floats.
package struct Preparation: Sendable {
    /// Shape of one raw activation as the host hands it (for example [512], [256, 7, 7] or [128, 384]).
    package let inputShape: [Int]
    /// The options it was fitted with.
    package let options: PreparationOptions
    /// PCA mean (pooledDimension floats) when projecting.
    package let projectionMean: [Float]?
    /// PCA components, row-major [outputDimension, pooledDimension], when projecting.
    package let projectionComponents: [Float]?
    /// Eigenvalues of the kept components (variance along each), when projecting.
    package let projectionVariances: [Double]?

    /// Number of floats in one raw activation.
    package var inputCount: Int { inputShape.reduce(1, *) }

    /// Dimension after pooling (before PCA).
    package var pooledDimension: Int { Self.pooledDimension(shape: inputShape, pooling: options.pooling) }

    /// Dimension of the latent vector the density sees.
    package var outputDimension: Int {
        if let c = projectionComponents { return c.count / pooledDimension }
        return pooledDimension
    }

    /// Dimension after pooling for a shape, or nil when the pooling does not apply to it.
    package static func pooledDimension(shape: [Int], pooling: PreparationOptions.Pooling) -> Int {
        switch pooling {
        case .flatten: return shape.reduce(1, *)
        case .globalAverage: return shape.first ?? 1
        case .meanTokens: return shape.count >= 2 ? shape[shape.count - 1] : (shape.first ?? 1)
        }
    }

    /// Checks that a pooling fits a shape; returns a reason when it does not.
    package static func validate(shape: [Int], options: PreparationOptions) -> String? {
        if shape.isEmpty { return "the activation shape is empty" }
        if shape.contains(where: { $0 <= 0 }) { return "the activation shape \(shape) has a non-positive extent" }
        switch options.pooling {
        case .flatten: return nil
        case .globalAverage:
            return shape.count >= 2 ? nil : "global-average pooling needs a [C, H, W] (or [C, ...]) shape, got \(shape)"
        case .meanTokens:
            return shape.count == 2 ? nil : "mean-tokens pooling needs a [T, C] shape, got \(shape)"
        }
    }

    /// An unfitted-projection preparation (pooling and normalisation only).
    package init(inputShape: [Int], options: PreparationOptions) {
        self.inputShape = inputShape
        self.options = options
        self.projectionMean = nil
        self.projectionComponents = nil
        self.projectionVariances = nil
    }

    /// A preparation with a fitted projection.
    package init(
        inputShape: [Int],
        options: PreparationOptions,
        projectionMean: [Float]?,
        projectionComponents: [Float]?,
        projectionVariances: [Double]?
    ) {
        self.inputShape = inputShape
        self.options = options
        self.projectionMean = projectionMean
        self.projectionComponents = projectionComponents
        self.projectionVariances = projectionVariances
    }

    /// Pools and normalises one raw activation into `out` (pooledDimension floats). No allocation.
    @inlinable
    package func pool(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let p = pooledDimension
        switch options.pooling {
        case .flatten:
            out.update(from: x, count: p)
        case .globalAverage:
            let inner = inputCount / p
            let scale = 1 / Float(inner)
            for c in 0..<p {
                var s: Float = 0
                let base = x + c * inner
                for i in 0..<inner { s += base[i] }
                out[c] = s * scale
            }
        case .meanTokens:
            let tokens = inputCount / p
            for c in 0..<p { out[c] = 0 }
            for t in 0..<tokens {
                let row = x + t * p
                for c in 0..<p { out[c] += row[c] }
            }
            let scale = 1 / Float(tokens)
            for c in 0..<p { out[c] *= scale }
        }
        if options.l2Normalize {
            var ss: Double = 0
            for c in 0..<p { ss += Double(out[c]) * Double(out[c]) }
            if ss > 0 {
                let inv = Float(1 / ss.squareRoot())
                for c in 0..<p { out[c] *= inv }
            }
        }
    }

    /// Full preparation of one raw activation into `out` (outputDimension floats); `scratch` holds at least
    /// pooledDimension floats. No allocation.
    @inlinable
    package func prepare(
        _ x: UnsafePointer<Float>,
        into out: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        guard let comps = projectionComponents, let mean = projectionMean else {
            pool(x, into: out)
            return
        }
        let p = pooledDimension
        pool(x, into: scratch)
        for c in 0..<p { scratch[c] -= mean[c] }
        let k = comps.count / p
        comps.withUnsafeBufferPointer { cb in
            for r in 0..<k {
                var s: Float = 0
                let row = cb.baseAddress! + r * p
                for c in 0..<p { s += row[c] * scratch[c] }
                out[r] = s
            }
        }
    }
}
