/// One or more inputs' activations for every monitored layer: one buffer per layer, in the monitor's layer
/// order, each holding the rows back to back (one row is one activation in the shape its model declares).
/// The buffers are only read during the call; keep the array and reuse it so that a call allocates nothing.
public enum ActivationBuffers {
    /// IEEE binary32 activations.
    case float32([UnsafeBufferPointer<Float>])
    /// IEEE binary16 activations, converted to float32 into per-thread buffers before scoring.
    case float16([UnsafeBufferPointer<Float16>])

    /// Number of layer buffers.
    var layerCount: Int {
        switch self {
        case .float32(let b): return b.count
        case .float16(let b): return b.count
        }
    }

    /// Elements in layer `l`'s buffer.
    func count(layer l: Int) -> Int {
        switch self {
        case .float32(let b): return b[l].count
        case .float16(let b): return b[l].count
        }
    }
}
