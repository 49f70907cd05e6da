import Testing

@testable import LatentWatch

/// The hot path's check for NaN and infinity (`LatentModel.allFinite`, a loop without an early exit that adds one
/// unit to the exponent field and watches the carry): it must agree with `isFinite` on every value, wherever in the
/// buffer a bad value sits (the vectorised body and its scalar tail).
@Suite struct FiniteCheckTests {
    static func check(_ values: [Float]) -> Bool {
        values.withUnsafeBufferPointer { LatentModel.allFinite($0) }
    }

    static func check(_ values: [Float16]) -> Bool {
        values.withUnsafeBufferPointer { LatentModel.allFinite($0) }
    }

    /// Checks `row` (all finite) and then each special value at each position of it.
    static func expectBadAnywhere<T: BinaryFloatingPoint>(_ row: [T], _ specials: [T], _ check: ([T]) -> Bool) {
        var row = row
        #expect(check(row))
        for i in row.indices {
            for s in specials {
                let kept = row[i]
                row[i] = s
                #expect(!check(row), "length \(row.count), position \(i), \(s)")
                row[i] = kept
            }
        }
    }

    /// Every binary16 bit pattern, alone and at each position of buffers of 1 to 40 and 512 finite values.
    @Test func everyFloat16PatternAgreesWithIsFinite() {
        for bits in 0...UInt16.max {
            let v = Float16(bitPattern: bits)
            #expect(Self.check([v]) == v.isFinite, "pattern \(String(bits, radix: 16))")
        }
        let specials: [Float16] = [.nan, -.nan, Float16(bitPattern: 0x7c01), .infinity, -.infinity]
        for n in Array(1...40) + [512] {
            Self.expectBadAnywhere((0..<n).map { Float16(Float($0 % 7) - 3) }, specials) { Self.check($0) }
        }
    }

    /// Every float32 exponent with mantissas at both ends and in between, the values at the edges of the finite
    /// range, and a bad value at each position of buffers of 1 to 40 and 512.
    @Test func float32AgreesWithIsFinite() {
        var generator = SystemRandomNumberGenerator()
        for exponent in UInt32(0)...255 {
            for mantissa: UInt32 in [0, 1, 0x40_0000, 0x7f_ffff, UInt32.random(in: 0...0x7f_ffff, using: &generator)] {
                for sign: UInt32 in [0, 0x8000_0000] {
                    let v = Float(bitPattern: sign | exponent << 23 | mantissa)
                    #expect(Self.check([v]) == v.isFinite, "pattern \(String(v.bitPattern, radix: 16))")
                }
            }
        }
        let edges: [Float] = [
            .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude, 0, -0,
        ]
        #expect(Self.check(edges))
        let specials: [Float] = [.nan, -.nan, .signalingNaN, Float(bitPattern: 0xffc0_0001), .infinity, -.infinity]
        for n in Array(1...40) + [512] {
            Self.expectBadAnywhere((0..<n).map { Float($0 % 11) * 1e30 - 5e30 }, specials) { Self.check($0) }
        }
        #expect(Self.check([Float]()))
    }
}
