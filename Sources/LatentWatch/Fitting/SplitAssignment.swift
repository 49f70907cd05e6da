import LatentWatchNumerics

/// Deterministic, order-robust assignment of sample indices to the calibration and validation splits:
/// a hash of (seed, index) rather than index arithmetic, so periodic orderings (sorted by class, say) do
/// not bias the splits.
package struct SplitAssignment: Sendable {
    let seed: UInt64
    let calibrationFraction: Double
    let validationFraction: Double

    static func unit(_ seed: UInt64, _ index: Int, salt: UInt64) -> Double {
        Double(SeededRandom.mix(seed ^ SeededRandom.mix(UInt64(index) &+ salt &* 0x632B_E59B_D9B4_E019)) >> 11)
            / Double(1 << 53)
    }

    func isCalibration(_ index: Int) -> Bool {
        calibrationFraction > 0 && Self.unit(seed, index, salt: 1) < calibrationFraction
    }
    func isValidation(_ index: Int) -> Bool {
        validationFraction > 0 && Self.unit(seed, index, salt: 2) < validationFraction
    }
}
