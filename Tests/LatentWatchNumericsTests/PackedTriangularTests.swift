import Foundation
import LatentWatchNumerics
import Synchronization
import Testing

@Suite(.serialized) struct PackedTriangularTests {
    static func randomLower(_ d: Int, _ g: inout SeededRandom) -> [Double] {
        var a = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0...i { a[i * d + j] = Double.random(in: -1...1, using: &g) } }
        return a
    }

    static func naive(_ a: [Double], _ x: [Float], _ mu: [Float], _ d: Int) -> Double {
        var s = 0.0
        for i in 0..<d {
            var y = 0.0
            for j in 0...i { y += a[i * d + j] * Double(x[j] - mu[j]) }
            s += y * y
        }
        return s
    }

    /// The squared distance of the tied Gaussian's transformed means: the AVX2 and portable loops agree bit for
    /// bit, and both equal a plain double sum within 1e-13 relative (only the summation order differs).
    @Test(arguments: [1, 7, 8, 9, 63, 512, 515])
    func squaredDistanceAgreesAcrossKernelsAndWithASum(n: Int) {
        var g = SeededRandom(seed: UInt64(100 + n))
        let a = (0..<n).map { _ in Float.random(in: -3...3, using: &g) }
        let b = (0..<n).map { _ in Float.random(in: -3...3, using: &g) }
        var plain = 0.0
        for i in 0..<n {
            let d = Double(a[i]) - Double(b[i])
            plain += d * d
        }
        func run(_ simd: Bool) -> Double {
            HalfConversion.allowSIMDKernels(simd)
            defer { HalfConversion.allowSIMDKernels(true) }
            return PackedTriangular.squaredDistance(a, b, count: n)
        }
        let fast = run(true)
        let portable = run(false)
        #expect(fast.bitPattern == portable.bitPattern, "n=\(n): \(fast) vs \(portable)")
        #expect(abs(fast - plain) <= 1e-13 * plain, "n=\(n): \(fast) vs \(plain)")
    }

    @Test(arguments: [1, 7, 8, 9, 63, 128, 200], [true, false])
    func squaredNormMatchesNaive(d: Int, simd: Bool) {
        HalfConversion.allowSIMDKernels(true)
        let available = HalfConversion.usesSIMDKernels
        HalfConversion.allowSIMDKernels(simd)
        defer { HalfConversion.allowSIMDKernels(true) }
        #expect(HalfConversion.usesSIMDKernels == (simd && available))
        var g = SeededRandom(seed: UInt64(d))
        let a = Self.randomLower(d, &g)
        let x = (0..<d).map { _ in Float.random(in: -2...2, using: &g) }
        let mu = (0..<d).map { _ in Float.random(in: -1...1, using: &g) }
        let expected = Self.naive(a, x, mu, d)
        var scratch = [Float](repeating: 0, count: PackedTriangular.paddedDimension(d))
        let f32 = PackedTriangular(lowerRowMajor: a, dimension: d, precision: .float32)
        let got = scratch.withUnsafeMutableBufferPointer { s in
            x.withUnsafeBufferPointer { xb in
                mu.withUnsafeBufferPointer { mb in
                    f32.squaredNorm(x: xb.baseAddress!, mu: mb.baseAddress!, scratch: s.baseAddress!)
                }
            }
        }
        // float32 products accumulated per row: relative 1e-5.
        #expect(abs(got - expected) <= 1e-5 * max(expected, 1), "d=\(d) simd=\(simd): \(got) vs \(expected)")
        // float16 factor: each entry rounded to 11 bits (relative 2^-11); the norm moves by about that much.
        let f16 = PackedTriangular(lowerRowMajor: a, dimension: d, precision: .float16)
        let got16 = scratch.withUnsafeMutableBufferPointer { s in
            x.withUnsafeBufferPointer { xb in
                mu.withUnsafeBufferPointer { mb in
                    f16.squaredNorm(x: xb.baseAddress!, mu: mb.baseAddress!, scratch: s.baseAddress!)
                }
            }
        }
        #expect(abs(got16 - expected) <= 5e-3 * max(expected, 1), "f16 d=\(d): \(got16) vs \(expected)")
        // Matrix-vector product (the tied path) against the naive rows.
        let dp = PackedTriangular.paddedDimension(d)
        var xc = [Float](repeating: 0, count: dp)
        for j in 0..<d { xc[j] = x[j] - mu[j] }
        var y = [Float](repeating: 0, count: dp)
        for precision in [ElementType.float32, .float16] {
            let f = precision == .float32 ? f32 : f16
            xc.withUnsafeBufferPointer { xb in
                y.withUnsafeMutableBufferPointer { f.multiply(centered: xb.baseAddress!, into: $0.baseAddress!) }
            }
            for i in 0..<d {
                var e = 0.0
                for j in 0...i { e += a[i * d + j] * Double(xc[j]) }
                #expect(
                    abs(Double(y[i]) - e) <= (precision == .float32 ? 1e-4 : 3e-2) * max(1, abs(e)),
                    "row \(i) \(precision)"
                )
            }
        }
        // Layout round trip.
        let packed = f32.rowPacked()
        for i in 0..<d { for j in 0...i { #expect(packed[i * (i + 1) / 2 + j] == Float(a[i * d + j])) } }
    }

    /// Forcing the portable loops is per thread: tests running at the same time elsewhere keep the CPU's kernels.
    /// The multi-input kernel (tiles of three rows, panels of W) gives every row exactly what the one-input kernel
    /// gives it, for float32 and float16 factors, any row count (tiles and the one- or two-row tail), dimensions
    /// that cross panels (d = 513: 65 block rows), with row strides beyond the padded width, on both the AVX2 and
    /// the portable path. The AVX-512 variant (tiles of eight inputs, two per register) is forced in turn where
    /// the CPU has it; its one-input kernel is AVX2's, so it must give AVX2's bits.
    @Test(arguments: [1, 7, 8, 9, 63, 200, 513], KernelVariant.allCases)
    func batchKernelEqualsOneInputKernelBitForBit(d: Int, variant: KernelVariant) {
        HalfConversion.limitKernels(to: .avx512)
        let best = HalfConversion.kernelVariant
        HalfConversion.limitKernels(to: variant)
        defer { HalfConversion.limitKernels(to: .avx512) }
        #expect(HalfConversion.kernelVariant.rawValue == min(variant.rawValue, best.rawValue))
        var g = SeededRandom(seed: UInt64(1000 + d))
        let a = Self.randomLower(d, &g)
        let dp = PackedTriangular.paddedDimension(d)
        let stride = dp + 8
        for precision in [ElementType.float32, .float16] {
            let w = PackedTriangular(lowerRowMajor: a, dimension: d, precision: precision)
            for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 16, 17, 50] {
                var xc = [Float](repeating: 0, count: n * stride)
                for i in 0..<n { for j in 0..<d { xc[i * stride + j] = Float.random(in: -2...2, using: &g) } }
                var out = [Double](repeating: .nan, count: 2 * n)
                var totals = [Double](repeating: 0, count: 4 * n)
                xc.withUnsafeBufferPointer { x in
                    out.withUnsafeMutableBufferPointer { o in
                        totals.withUnsafeMutableBufferPointer { t in
                            w.squaredNorms(
                                centered: x.baseAddress!,
                                stride: stride,
                                count: n,
                                into: o.baseAddress!,
                                outStride: 2,
                                totals: t.baseAddress!
                            )
                        }
                    }
                }
                for i in 0..<n {
                    let one = xc.withUnsafeBufferPointer { w.squaredNorm(centered: $0.baseAddress! + i * stride) }
                    #expect(out[2 * i] == one, "d \(d) n \(n) row \(i) \(precision): \(out[2 * i]) vs \(one)")
                    #expect(out[2 * i + 1].isNaN, "only every outStride-th entry is written")
                }
            }
        }
    }

    @Test func simdSwitchIsPerThread() {
        HalfConversion.allowSIMDKernels(true)
        let available = HalfConversion.usesSIMDKernels
        HalfConversion.allowSIMDKernels(false)
        defer { HalfConversion.allowSIMDKernels(true) }
        let elsewhere = Mutex<Bool?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            elsewhere.withLock { $0 = HalfConversion.usesSIMDKernels }
            done.signal()
        }
        thread.start()
        done.wait()
        #expect(!HalfConversion.usesSIMDKernels)
        #expect(elsewhere.withLock { $0 } == available)
    }

    @Test func halfConversionRoundsToNearestEven() {
        let values: [Float] = [
            0, -0, 1, -2.5, 65504, 70000, 1e-8, 6.1035156e-05, 5.9604645e-08, .infinity, 1.0009765625, 1.00048828125,
        ]
        for simd in [true, false] {
            HalfConversion.allowSIMDKernels(simd)
            let back = HalfConversion.toFloat(HalfConversion.toHalf(values))
            #expect(back[2] == 1 && back[3] == -2.5 && back[4] == 65504)
            #expect(back[5] == .infinity, "overflow goes to infinity")
            #expect(back[6] == 0, "1e-8 underflows to zero")
            #expect(back[7] == 6.1035156e-05 && back[8] == 5.9604645e-08, "smallest normal and subnormal are exact")
            #expect(back[10] == 1.0009765625, "representable value is exact")
            #expect(back[11] == 1.0, "a tie rounds to even")
        }
        HalfConversion.allowSIMDKernels(true)
    }
}

@Suite struct GaussianMomentsTests {
    @Test func mergedShardsEqualOnePass() {
        let d = 5
        let n = 300
        var data = [Float](repeating: 0, count: n * d)
        for i in 0..<(n * d) {
            let v: Double = sin(Double(i) * 0.37) * 3 + Double(i % d)
            data[i] = Float(v)
        }
        var one = GaussianMoments(dimension: d)
        one.add(data, rows: n)
        var a = GaussianMoments(dimension: d)
        var b = GaussianMoments(dimension: d)
        a.add(Array(data[0..<(100 * d)]), rows: 100)
        b.add(Array(data[(100 * d)...]), rows: 200)
        a.merge(b)
        #expect(a.weight == one.weight && a.count == one.count)
        for j in 0..<d { #expect(abs(a.mean[j] - one.mean[j]) <= 1e-12 * max(1, abs(one.mean[j]))) }
        for i in 0..<(d * d) {
            #expect(abs(a.scatterLower[i] - one.scatterLower[i]) <= 1e-9 * max(1, abs(one.scatterLower[i])))
        }
        // Against a direct two-pass computation.
        var mean = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { mean[j] += Double(data[r * d + j]) / Double(n) } }
        for i in 0..<d {
            for j in 0...i {
                var s = 0.0
                for r in 0..<n { s += (Double(data[r * d + i]) - mean[i]) * (Double(data[r * d + j]) - mean[j]) }
                #expect(abs(one.scatterLower[i * d + j] - s) <= 1e-9 * max(1, abs(s)))
            }
        }
    }

    @Test func weightedMomentsMatchDirectFormula() {
        let d = 3
        let data: [Float] = [1, 2, 3, 4, 5, 7, -1, 0, 2, 3, 3, 3]
        let w: [Double] = [0.5, 2, 0, 1.5]
        var m = GaussianMoments(dimension: d)
        m.add(data, rows: 4, weights: w)
        let tw = w.reduce(0, +)
        #expect(m.weight == tw)
        for j in 0..<d {
            var mu = 0.0
            for r in 0..<4 { mu += w[r] * Double(data[r * d + j]) }
            mu /= tw
            #expect(abs(m.mean[j] - mu) < 1e-12)
        }
    }
}
