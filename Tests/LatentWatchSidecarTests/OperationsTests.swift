import Foundation
import LatentWatchTestSupport
import Testing

/// The Prometheus rules in Samples/Operations: promtool accepts them and their unit tests pass
/// (Tests/Operations/latentwatch-rules.test.yml), and every metric they name is one a live sidecar exports.
/// promtool comes from Debian's prometheus package, which `.ci/run` installs; where it is missing the promtool
/// checks are skipped with a line saying so (the metric-name check still runs).
@Suite struct OperationsTests {
    static let rules = LatentWatchBinary.root.appendingPathComponent("Samples/Operations/latentwatch-rules.yml")
    static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static func run(_ arguments: [String], in directory: URL) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: promtool!)
        p.arguments = arguments
        p.currentDirectoryURL = directory
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test func rulesPassPromtoolAndTheirUnitTests() throws {
        guard Self.promtool != nil else {
            print("promtool is not installed: the rule checks are skipped (.ci/run installs it)")
            return
        }
        let check = try Self.run(["check", "rules", Self.rules.path], in: LatentWatchBinary.root)
        #expect(check.status == 0, "\(check.output)")
        let tests = try Self.run(
            ["test", "rules", "latentwatch-rules.test.yml"],
            in: LatentWatchBinary.root.appendingPathComponent("Tests/Operations")
        )
        #expect(tests.status == 0 && tests.output.contains("SUCCESS"), "\(tests.output)")
    }

    @Test func rulesNameOnlyMetricsTheSidecarExports() throws {
        let daemon = try Daemon(["--http", "127.0.0.1:0"], expect: ["unix", "http"])
        defer { daemon.terminate() }
        let metrics = try HTTPProbe.request(port: daemon.httpPort, "GET", "/metrics").body
        var exported = Set<String>()
        for line in metrics.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            let name = String(parts[2])
            exported.insert(name)
            if parts.count > 3, parts[3] == "histogram" {
                for suffix in ["_bucket", "_count", "_sum"] { exported.insert(name + suffix) }
            }
        }
        let text = try String(contentsOf: Self.rules, encoding: .utf8)
        let named = Set(
            text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
                .flatMap { line in
                    line.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") })
                        .map(String.init).filter { $0.hasPrefix("latentwatch_") }
                }
        )
        #expect(!named.isEmpty)
        #expect(named.isSubset(of: exported), "not exported: \(named.subtracting(exported).sorted())")
    }
}
