import LatentWatchNumerics
import Testing

/// The float32 row-distance kernels behind the neighbour index: the SIMD and portable versions agree bit for bit
/// (lanes and reduction order are fixed), and both agree with a float64 sum to float32 rounding.
@Suite struct RowDistancesTests {
    @Test(arguments: [1, 7, 8, 9, 31, 32, 33, 64, 128, 130, 384])
    func simdEqualsPortableAndFloat64(d: Int) {
        var rng = SeededRandom(seed: UInt64(40 + d))
        let count = 37
        let rows = (0..<(count * d)).map { _ in Float(rng.normal()) }
        let halves = HalfConversion.toHalf(rows)
        let roundedRows = HalfConversion.toFloat(halves)
        let z = (0..<d).map { _ in Float(rng.normal() * 0.5) }
        func run(simd: Bool) -> (all: [Float], nearest: Float) {
            HalfConversion.allowSIMDKernels(simd)
            defer { HalfConversion.allowSIMDKernels(true) }
            var out = [Float](repeating: -1, count: count)
            rows.withUnsafeBufferPointer { r in
                out.withUnsafeMutableBufferPointer { o in
                    RowDistances.squaredDistances(
                        from: z,
                        rows: r.baseAddress!,
                        count: count,
                        dimension: d,
                        into: o.baseAddress!
                    )
                }
            }
            let nearest = halves.withUnsafeBufferPointer {
                RowDistances.nearestSquaredDistance(from: z, halfRows: $0.baseAddress!, count: count, dimension: d)
            }
            return (out, nearest)
        }
        let fast = run(simd: true)
        let portable = run(simd: false)
        #expect(fast.all.map(\.bitPattern) == portable.all.map(\.bitPattern))
        #expect(fast.nearest.bitPattern == portable.nearest.bitPattern)
        // float64 references; float32 accumulation over d terms: within 1e-6 * d relative.
        func reference(_ source: [Float]) -> [Double] {
            (0..<count).map { r in
                (0..<d).reduce(0.0) { s, j in
                    let e = Double(z[j]) - Double(source[r * d + j])
                    return s + e * e
                }
            }
        }
        let exact = reference(rows)
        for r in 0..<count {
            #expect(abs(Double(fast.all[r]) - exact[r]) <= 1e-6 * Double(d) * exact[r])
        }
        let nearestExact = reference(roundedRows).min()!
        #expect(abs(Double(fast.nearest) - nearestExact) <= 1e-6 * Double(d) * nearestExact)
        let none = halves.withUnsafeBufferPointer {
            RowDistances.nearestSquaredDistance(from: z, halfRows: $0.baseAddress!, count: 0, dimension: d)
        }
        #expect(none == .infinity)
    }
}

/// The integer-code kernels: every variant (AVX-512 VNNI where the CPU has it, AVX2, portable) gives exactly the
/// brute-force integer distances, for dimensions that are and are not multiples of 4 and counts that are and are
/// not multiples of the 16-row block, at the extreme codes ±127.
@Suite struct CodeDistancesTests {
    @Test(arguments: [1, 3, 4, 5, 8, 31, 64, 127, 128, 129, 384, 1_001])
    func everyVariantEqualsBruteForce(d: Int) {
        var rng = SeededRandom(seed: UInt64(90 + d))
        for count in [1, 15, 16, 17, 40] {
            var codes = (0..<(count * d)).map { _ in Int8(Int(rng.next() % 255) - 127) }
            codes[0] = 127
            codes[codes.count - 1] = -127
            var q = (0..<CodeDistances.paddedDimension(d)).map { j in j < d ? Int8(Int(rng.next() % 255) - 127) : 0 }
            q[0] = -127
            let brute = (0..<count).map { r in
                (0..<d).reduce(0) { s, j in
                    let e = Int(q[j]) - Int(codes[r * d + j])
                    return s + e * e
                }
            }
            let (packed, norms) = codes.withUnsafeBufferPointer {
                CodeDistances.pack($0.baseAddress!, count: count, dimension: d)
            }
            #expect(packed.count == CodeDistances.paddedRows(count) * CodeDistances.paddedDimension(d))
            for variant in KernelVariant.allCases {
                HalfConversion.limitKernels(to: variant)
                defer { HalfConversion.allowSIMDKernels(true) }
                var out = [Int32](repeating: -1, count: count)
                let nearest = packed.withUnsafeBufferPointer { p in
                    norms.withUnsafeBufferPointer { n in
                        out.withUnsafeMutableBufferPointer { o in
                            CodeDistances.squaredDistances(
                                from: q,
                                packed: p.baseAddress!,
                                norms: n.baseAddress!,
                                count: count,
                                dimension: d,
                                into: o.baseAddress!
                            )
                        }
                        return CodeDistances.nearestSquaredDistance(
                            from: q,
                            packed: p.baseAddress!,
                            norms: n.baseAddress!,
                            count: count,
                            dimension: d
                        )
                    }
                }
                #expect(out.map { Int($0) } == brute, "\(variant), d \(d), count \(count)")
                #expect(Int(nearest) == brute.min()!, "\(variant), d \(d), count \(count)")
            }
        }
    }

    /// A query's codes: every variant gives the reference's codes (round to nearest even, clamp at ±127, zero
    /// padding) and the same sum beyond the clamp, for values at ties, beyond the clamp, and NaN.
    @Test func quantiseMatchesTheReference() {
        var rng = SeededRandom(seed: 77)
        for trial in 0..<400 {
            let d = 1 + Int(rng.next() % 70)
            let inverse = Float(1 / (0.01 + rng.uniform()))
            var z = (0..<d).map { _ in Float(rng.normal() * (trial % 3 == 0 ? 200 : 40)) / inverse }
            z[Int(rng.next() % UInt64(d))] = (trial % 2 == 0 ? 126.5 : -2.5) / inverse
            if trial % 50 == 0 { z[Int(rng.next() % UInt64(d))] = .nan }
            let u = z.map { $0 * inverse }
            let expected = (0..<CodeDistances.paddedDimension(d)).map { j -> Int8 in
                guard j < d, !u[j].isNaN else { return 0 }
                return Int8(max(-127, min(127, u[j].rounded(.toNearestOrEven))))
            }
            var beyond = 0.0
            for v in u where !(abs(v) <= 127) {
                beyond += v.isNaN ? .infinity : (Double(abs(v)) - 127) * (Double(abs(v)) - 127)
            }
            for variant in KernelVariant.allCases {
                HalfConversion.limitKernels(to: variant)
                defer { HalfConversion.allowSIMDKernels(true) }
                var q = [Int8](repeating: 9, count: CodeDistances.paddedDimension(d))
                let got = CodeDistances.quantise(z, dimension: d, inverseScale: inverse, into: &q)
                #expect(q == expected, "\(variant), trial \(trial)")
                #expect(got == beyond, "\(variant), trial \(trial)")
            }
        }
    }

}
