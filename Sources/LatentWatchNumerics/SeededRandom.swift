#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// A small seeded generator (SplitMix64) with uniform and normal draws: reproducible across platforms
/// and runs, for initialisations, sampling, test data and benchmarks.
package struct SeededRandom: RandomNumberGenerator, Sendable {
    /// Current state.
    package var state: UInt64

    /// A generator starting from `seed`.
    package init(seed: UInt64) { state = seed }

    /// The SplitMix64 finaliser: a good 64-bit mixing function, also used for seeded hashing.
    @inlinable
    package static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    package mutating func next() -> UInt64 {
        let s = state
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(s)
    }

    /// Uniform in [0, 1) with 53 random bits.
    package mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Standard normal (Box-Muller).
    package mutating func normal() -> Double {
        (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * Double.pi * uniform())
    }
}
