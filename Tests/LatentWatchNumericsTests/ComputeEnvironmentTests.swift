import LatentWatchNumerics
import Testing

/// The choice of OpenBLAS core: replace a generic fallback only on a CPU that can run better kernels, and never
/// override the user's own `OPENBLAS_CORETYPE`.
struct ComputeEnvironmentTests {
    @Test func fallbackCoresAreReplacedOnlyWhereTheCPUCanDoBetter() {
        let e = ComputeEnvironment.self
        for fallback in ["Prescott", "Core2", "Nehalem", "Sandybridge", "Barcelona"] {
            let preferred = e.preferredCore(chosen: fallback, userChoice: nil)
            if e.hasAVX2 {
                #expect(preferred == (e.hasAVX512 ? "SkylakeX" : e.isAMD ? "Zen" : "Haswell"))
            } else {
                #expect(preferred == nil)
            }
            #expect(e.preferredCore(chosen: fallback, userChoice: "Prescott") == nil)
        }
        for good in ["Haswell", "Zen", "SkylakeX", "COOPERLAKE"] {
            #expect(e.preferredCore(chosen: good, userChoice: nil) == nil)
        }
        // What runs here is one of the names OpenBLAS reports, and the summary names it.
        #expect(!e.blasCore.isEmpty && e.summary.contains(e.blasCore))
    }
}
