/// Storage precision of fitted parameters, in memory and in model files.
public enum Precision: String, Sendable, Codable, CaseIterable {
    /// IEEE binary32.
    case float32
    /// IEEE binary16: half the bytes; accumulation stays in float32/float64.
    case float16
}
