import LatentWatchNumerics
import Logging
import Synchronization

/// One warning per process when OpenBLAS runs generic fallback kernels on a CPU that has AVX2 or AVX-512
/// (``ComputeEnvironment/blasFallbackWarning``): hosts that embed the SDK cannot be relaunched with the right
/// core, so they are told the remedy. Given at the first fit or monitor.
enum ComputeCheck {
    private static let warned = Atomic<Bool>(false)

    static func warnOnce(_ logger: Logger) {
        guard let text = ComputeEnvironment.blasFallbackWarning else { return }
        guard !warned.exchange(true, ordering: .relaxed) else { return }
        logger.warning("\(text)")
    }
}
