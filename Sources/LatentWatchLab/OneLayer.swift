package import LatentWatch

/// A reused single-layer argument for a monitor, as a host keeps its activations array: a call then
/// allocates nothing. Not thread-safe: one per thread.
package final class OneLayer {
    var buffers = [UnsafeBufferPointer<Float>](repeating: UnsafeBufferPointer(start: nil, count: 0), count: 1)

    /// An empty argument.
    package init() {}

    /// The argument holding `b`.
    package func callAsFunction(_ b: UnsafeBufferPointer<Float>) -> ActivationBuffers {
        buffers[0] = b
        return .float32(buffers)
    }
}

extension UnsafeBufferPointer where Element == Float {
    /// Row `i` of a row-major matrix of rows of `width` elements.
    package func row(_ i: Int, width: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: self[(i * width)..<((i + 1) * width)])
    }
}
