import CLatentKernels

/// Vectorised IEEE binary16 <-> binary32 conversion (F16C when the CPU has it).
package enum HalfConversion {
    /// Float32 to binary16 bit patterns, round to nearest even.
    package static func toHalf(_ values: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                lw_f32_to_f16(src.baseAddress, dst.baseAddress, values.count)
            }
        }
        return out
    }

    /// Float32 to binary16 bit patterns between buffers, round to nearest even.
    package static func convert(_ src: UnsafePointer<Float>, toHalf dst: UnsafeMutablePointer<UInt16>, count: Int) {
        lw_f32_to_f16(src, dst, count)
    }

    /// binary16 bit patterns to Float32 (exact).
    package static func toFloat(_ bits: [UInt16]) -> [Float] {
        var out = [Float](repeating: 0, count: bits.count)
        bits.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                lw_f16_to_f32(src.baseAddress, dst.baseAddress, bits.count)
            }
        }
        return out
    }

    /// binary16 bit patterns to Float32 between raw buffers (no allocation).
    package static func convert(_ src: UnsafePointer<UInt16>, to dst: UnsafeMutablePointer<Float>, count: Int) {
        lw_f16_to_f32(src, dst, count)
    }

    /// Whether the AVX2/FMA/F16C kernels (or better) are in use on this CPU.
    package static var usesSIMDKernels: Bool { lw_kernels_have_avx2() != 0 }

    /// Benchmarks only: reads `count` floats once at this core's read rate and returns their sum.
    package static func streamRead(_ p: UnsafePointer<Float>, count: Int) -> Double { lw_stream_read_f32(p, count) }

    /// The kernel variant in use on the calling thread.
    package static var kernelVariant: KernelVariant {
        KernelVariant(rawValue: Int(lw_kernels_variant())) ?? .portable
    }

    /// Tests and benchmarks only: caps the kernel variant on the current thread (the CPU's best, and
    /// `LATENTWATCH_KERNELS`, stay the ceiling); `.avx512` undoes it. Call it and the kernels from synchronous code.
    package static func limitKernels(to variant: KernelVariant) { lw_kernels_limit(Int32(variant.rawValue)) }

    /// Tests only: `false` forces the portable C loops for every kernel called on the current thread (other
    /// threads are unaffected); `true` undoes it. Call it and the kernels from synchronous code, so that no
    /// suspension moves the work to another thread in between.
    package static func allowSIMDKernels(_ allow: Bool) { limitKernels(to: allow ? .avx512 : .portable) }
}

/// The scoring kernels' variants, in the order of what they need from the CPU.
package enum KernelVariant: Int, Sendable, CaseIterable {
    /// Portable C loops.
    case portable = 0
    /// AVX2 + FMA + F16C.
    case avx2 = 1
    /// AVX-512 (F, DQ, VL) for the multi-input kernel; AVX2 + FMA + F16C for the rest.
    case avx512 = 2
}
