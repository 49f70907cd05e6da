/// Deterministic, order-robust assignment of sample indices to the calibration and validation splits:
/// a hash of (seed, index) rather than index arithmetic, so periodic orderings (sorted by class, say) do
/// not bias the splits.
struct SplitAssignment: Sendable {
    let seed: UInt64
    let calibrationFraction: Double
    let validationFraction: Double

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func unit(_ seed: UInt64, _ index: Int, salt: UInt64) -> Double {
        Double(mix(seed ^ mix(UInt64(index) &+ salt &* 0x632B_E59B_D9B4_E019)) >> 11) / Double(1 << 53)
    }

    func isCalibration(_ index: Int) -> Bool { calibrationFraction > 0 && Self.unit(seed, index, salt: 1) < calibrationFraction }
    func isValidation(_ index: Int) -> Bool { validationFraction > 0 && Self.unit(seed, index, salt: 2) < validationFraction }
}

/// A small seeded generator (SplitMix64) for initialisations; reproducible across platforms.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitAssignment.mix(state &- 0x9E37_79B9_7F4A_7C15)
    }
}
