import CLatentKernels
import COpenBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// What computes here: the CPU, the scoring kernels chosen for it, and the kernels OpenBLAS chose.
///
/// OpenBLAS built with `DYNAMIC_ARCH` picks its kernels from the CPU model when the library loads. A build older
/// than the CPU does not know the model and falls back to generic SSE3 kernels ("Prescott"), several times
/// slower for everything that goes through BLAS here (fitting, batches of 16 inputs or more), and says nothing.
/// ``preferredBLASCore`` names the core to ask for instead (`OPENBLAS_CORETYPE`), which must be set before the
/// library loads: the `latentwatch` executables relaunch themselves with it
/// (``relaunchWithPreferredBLASCoreIfNeeded()``); a host that embeds the SDK gets one warning with the remedy.
package enum ComputeEnvironment {
    /// The CPU's model name (`/proc/cpuinfo`), or "unknown".
    package static let cpuModel: String = {
        guard let f = fopen("/proc/cpuinfo", "r") else { return "unknown" }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>?
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0 {
            let s = String(cString: line!)
            if s.hasPrefix("model name"), let colon = s.firstIndex(of: ":") {
                return String(s[s.index(after: colon)...]).trimmingWhitespace()
            }
        }
        return "unknown"
    }()

    /// CPUID feature bits (`LW_CPU_*`).
    package static let cpuFeatures: UInt32 = lw_cpu_features()

    static func has(_ bits: Int) -> Bool { cpuFeatures & UInt32(bits) == UInt32(bits) }

    /// Whether the CPU has the AVX-512 subsets OpenBLAS's SkylakeX kernels use.
    package static var hasAVX512: Bool {
        has(LW_CPU_AVX512F | LW_CPU_AVX512BW | LW_CPU_AVX512DQ | LW_CPU_AVX512VL)
    }

    /// Whether the CPU is AMD's (OpenBLAS's Zen kernels) rather than Intel's (Haswell kernels) for AVX2.
    package static var isAMD: Bool { has(LW_CPU_AMD) }

    /// Whether the CPU has AVX2 and FMA.
    package static var hasAVX2: Bool { has(LW_CPU_AVX2 | LW_CPU_FMA) }

    /// The CPU's vector features, as a short list ("AVX2 FMA F16C AVX-512").
    package static var cpuFeatureSummary: String {
        var parts: [String] = []
        if has(LW_CPU_AVX2) { parts.append("AVX2") }
        if has(LW_CPU_FMA) { parts.append("FMA") }
        if has(LW_CPU_F16C) { parts.append("F16C") }
        if hasAVX512 { parts.append(has(LW_CPU_AVX512VNNI) ? "AVX-512(F,BW,DQ,VL,VNNI)" : "AVX-512(F,BW,DQ,VL)") }
        return parts.isEmpty ? "none of AVX2, FMA, F16C, AVX-512" : parts.joined(separator: " ")
    }

    /// The scoring kernels in use on this thread (one input and batches).
    package static var scoringKernel: String {
        switch HalfConversion.kernelVariant {
        case .avx512: return "AVX-512 for batches, AVX2+FMA+F16C for one input"
        case .avx2: return "AVX2+FMA+F16C"
        case .portable: return "portable C"
        }
    }

    /// The neighbour index's integer-code kernels in use on this thread.
    package static var codeKernel: String {
        switch HalfConversion.kernelVariant {
        case .avx512 where hasAVX512 && has(LW_CPU_AVX512VNNI): return "AVX-512 VNNI"
        case .avx512, .avx2: return "AVX2"
        case .portable: return "portable C"
        }
    }

    /// The kernel set OpenBLAS chose ("Haswell", "Zen", "SkylakeX", "Prescott", ...).
    ///
    /// Tests make the library's choice look like another core with `LATENTWATCH_TEST_BLAS_CORE` (which a relaunched
    /// process ignores), to exercise the relaunch on a CPU that OpenBLAS recognises.
    package static var blasCore: String {
        if getenv(relaunchMarker) == nil, let pretend = getenv("LATENTWATCH_TEST_BLAS_CORE") {
            return String(cString: pretend)
        }
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// OpenBLAS's build description (version, DYNAMIC_ARCH, ...).
    package static var blasConfig: String {
        guard let c = openblas_get_config() else { return "unknown" }
        return String(cString: c)
    }

    /// OpenBLAS cores that use AVX2 (or AVX-512) kernels: anything else on a CPU with AVX2 is a fallback.
    static let vectorCores: Set<String> = [
        "haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator",
    ]

    /// The core OpenBLAS should run here when the one it chose is a generic fallback on a CPU with AVX2 or
    /// AVX-512; nil when its choice is fine (or when the user chose, through `OPENBLAS_CORETYPE`).
    package static var preferredBLASCore: String? {
        preferredCore(chosen: blasCore, userChoice: getenv("OPENBLAS_CORETYPE").map { String(cString: $0) })
    }

    /// The decision behind ``preferredBLASCore``, for given inputs.
    package static func preferredCore(chosen: String, userChoice: String?) -> String? {
        if let userChoice, !userChoice.isEmpty { return nil }
        guard hasAVX2, !vectorCores.contains(chosen.lowercased()) else { return nil }
        if hasAVX512 { return "SkylakeX" }
        return isAMD ? "Zen" : "Haswell"
    }

    /// One line for logs and headers: CPU, its features, the scoring kernels and the BLAS core.
    package static var summary: String {
        "CPU \(cpuModel) (\(cpuFeatureSummary)); scoring kernels \(scoringKernel); neighbour search \(codeKernel); "
            + "OpenBLAS core \(blasCore)"
    }

    /// The warning a host that embeds the SDK gets when OpenBLAS runs fallback kernels; nil when it does not.
    package static var blasFallbackWarning: String? {
        guard let preferred = preferredBLASCore else { return nil }
        return "OpenBLAS runs its generic '\(blasCore)' kernels on this CPU (\(cpuModel), \(cpuFeatureSummary)): "
            + "fitting and batch scoring are several times slower than they could be. Start the process with "
            + "OPENBLAS_CORETYPE=\(preferred) in its environment (it must be set before OpenBLAS loads)."
    }

    /// Environment variable set on the relaunched process, so it never relaunches twice.
    static let relaunchMarker = "LATENTWATCH_BLAS_RELAUNCHED"

    /// For executables, first thing in `main`: when OpenBLAS chose fallback kernels on a CPU that has AVX2 or
    /// AVX-512 (and `OPENBLAS_CORETYPE` is unset), replaces the process with itself, same arguments, with
    /// `OPENBLAS_CORETYPE` set to ``preferredBLASCore``. Returns when nothing needs to change or the relaunch
    /// fails (the process then runs on as it is).
    package static func relaunchWithPreferredBLASCoreIfNeeded() {
        #if os(Linux)
        guard getenv(relaunchMarker) == nil, let preferred = preferredBLASCore else { return }
        setenv("OPENBLAS_CORETYPE", preferred, 1)
        setenv(relaunchMarker, "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached when execv failed: carry on with the kernels already loaded.
        unsetenv("OPENBLAS_CORETYPE")
        #endif
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
