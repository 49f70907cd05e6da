import Foundation
import LatentWatchTestSupport
import Testing

/// The fuzz harness, built without libFuzzer, replays each target's seed corpus and the malformed inputs that once
/// crashed the host (Tests/Fixtures/malformed): every one must end without a crash. `.ci/fuzz` runs the same
/// targets under libFuzzer and AddressSanitizer.
@Suite struct FuzzReplayTests {
    @Test(arguments: ["model", "tensor", "recording", "wire", "capi", "config", "statistics"])
    func seedsAndFindingsReplayWithoutACrash(target: String) throws {
        var inputs = ["Tests/Fuzz/seeds/\(target)"]
        if target == "tensor" { inputs.append("Tests/Fixtures/malformed") }
        if FileManager.default.fileExists(
            atPath: LatentWatchBinary.root.appendingPathComponent("Tests/Fuzz/findings/\(target)").path
        ) {
            inputs.append("Tests/Fuzz/findings/\(target)")
        }
        let r = try LatentWatchBinary.run(inputs, product: "latentwatch-fuzz", environment: ["LW_FUZZ_TARGET": target])
        #expect(r.status == 0, "\(target): status \(r.status)\n\(r.err)")
        #expect(r.out.contains("replayed") && !r.out.contains("replayed 0 "), "\(target): \(r.out)")
    }
}
