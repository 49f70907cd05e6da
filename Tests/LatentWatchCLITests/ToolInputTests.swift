import Foundation
import LatentWatchTestSupport
import Testing

/// No tool traps on user input: a malformed number, an impossible value or a missing path ends every
/// executable with a message and exit status 2 (help with 0), never a crash.
@Suite struct ToolInputTests {
    typealias CLI = LatentWatchBinary

    static let cases: [(product: String, arguments: [String], says: String)] = [
        ("latentwatch", ["fit", "--activations", "x.npy", "--output", "x.lwm", "--pca", "abc"], "--pca"),
        ("latentwatch", ["fit", "--activations", "x.npy", "--output", "x.lwm", "--family", "bogus"], "gda"),
        ("latentwatch", ["replay", "--model", "m.lwm", "--input", "x.npy", "--shift", "sideways"], "anytime"),
        ("latentwatch", ["replay", "--model", "m.lwm", "--input", "x.npy", "--betting", "sideways"], "mixture"),
        ("latentwatch", ["fit", "--activations", "/nonexistent/x.npy", "--output", "/tmp/x.lwm"], "/nonexistent"),
        ("latentwatch-eval", ["--data", "d", "--out", "o.json", "--id-streams", "abc"], "--id-streams"),
        ("latentwatch-eval", ["--data", "/nonexistent", "--out", "/tmp/o.json"], "/nonexistent"),
        ("latentwatch-eval", ["--data", "d"], "--out"),
        ("latentwatch-streams", ["--data", "d", "--streams", "abc"], "--streams"),
        ("latentwatch-streams", ["--data", "d", "--streams", "0"], "at least 1"),
        ("latentwatch-streams", ["--data", "d", "--layers", "fc,"], "--layers"),
        ("latentwatch-streams", ["--data", "d", "--guarantee-calibration", "0"], "at least 1"),
        ("latentwatch-streams", ["--data", "/nonexistent"], "/nonexistent"),
        ("latentwatch-loadtest", ["--seconds", "abc"], "--seconds"),
        ("latentwatch-loadtest", ["--seconds", "inf"], "--seconds"),
    ]

    @Test(arguments: cases.indices)
    func malformedInputExitsWithStatus2(index: Int) throws {
        let c = Self.cases[index]
        let r = try CLI.run(c.arguments, product: c.product)
        #expect(r.status == 2, "\(c.product) \(c.arguments): status \(r.status)\n\(r.err)")
        #expect((r.err + r.out).contains(c.says), "\(c.product) \(c.arguments): \(r.err)")
    }

    @Test(arguments: ["latentwatch-eval", "latentwatch-streams", "latentwatch-loadtest"])
    func helpExitsZero(product: String) throws {
        let r = try CLI.run(["--help"], product: product)
        #expect(r.status == 0 && r.out.contains("USAGE"), "\(product): \(r.status) \(r.out)")
    }
}
