import Foundation
import LatentWatchTestSupport
import Testing

/// The Prometheus rules and the Grafana dashboard in Samples/Operations: promtool accepts the rules and their unit
/// tests pass (Tests/Operations/latentwatch-rules.test.yml); every dashboard expression parses (promtool checks
/// them as recording rules); every metric either names is one a live sidecar exports.
/// promtool comes from Debian's prometheus package, which `.ci/run` installs; where it is missing the promtool
/// checks are skipped with a line saying so (the metric-name check still runs).
@Suite struct OperationsTests {
    static let rules = LatentWatchBinary.root.appendingPathComponent("Samples/Operations/latentwatch-rules.yml")
    static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Runs `tool` (promtool by default) in `directory`: exit status, and stdout followed by stderr.
    static func run(
        _ arguments: [String],
        in directory: URL,
        tool: String? = promtool
    ) throws -> (status: Int32, output: String) {
        let r = try LatentWatchBinary.runTool(tool!, arguments, in: directory)
        return (r.status, r.out + r.err)
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

    static let systemdAnalyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// The systemd unit (Samples/Operations/systemd) passes `systemd-analyze verify` with the built executable in
    /// place of /usr/local/bin/latentwatch, and `systemd-analyze security --offline=yes` rates its exposure at most
    /// 2.5 of 10. Starting it needs systemd as PID 1, which the tests do not have: the unit is checked, not run.
    @Test func systemdUnitVerifiesAndIsHardened() throws {
        guard let tool = Self.systemdAnalyze else {
            print("systemd-analyze is not installed: the unit checks are skipped (.ci/run installs it)")
            return
        }
        let unit = try String(
            contentsOf: LatentWatchBinary.root.appendingPathComponent("Samples/Operations/systemd/latentwatch.service"),
            encoding: .utf8
        )
        #expect(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"))
        let dir = LatentWatchBinary.temporaryDirectory()
        let copy = dir.appendingPathComponent("latentwatch.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/latentwatch", with: LatentWatchBinary.executable)
            .write(to: copy, atomically: true, encoding: .utf8)
        let verify = try Self.run(["verify", copy.path], in: dir, tool: tool)
        #expect(verify.status == 0 && verify.output.isEmpty, "systemd-analyze verify: \(verify.output)")
        let security = try Self.run(
            ["security", "--offline=yes", "--threshold=25", copy.path],
            in: dir,
            tool: tool
        )
        let level = security.output.split(separator: "\n").last { $0.contains("Overall exposure level") } ?? ""
        print("systemd unit: \(level)")
        #expect(security.status == 0, "exposure above 2.5: \(level)")
    }

    static let dashboard = LatentWatchBinary.root.appendingPathComponent(
        "Samples/Operations/grafana/latentwatch-dashboard.json"
    )

    /// The dashboard's PromQL expressions.
    static func dashboardExpressions() throws -> [String] {
        let d = try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard)) as! [String: Any]
        return (d["panels"] as! [[String: Any]]).flatMap { panel in
            (panel["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String }
        }
    }

    /// Metric names (latentwatch_...) in a text.
    static func metricNames(_ text: String) -> Set<String> {
        Set(
            text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
                .flatMap { line in
                    line.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") })
                        .map(String.init).filter { $0.hasPrefix("latentwatch_") }
                }
        )
    }

    @Test func dashboardExpressionsParse() throws {
        let expressions = try Self.dashboardExpressions()
        #expect(expressions.count >= 10)
        guard Self.promtool != nil else {
            print("promtool is not installed: the dashboard's expressions are not parsed (.ci/run installs it)")
            return
        }
        let dir = Binary.temporaryDirectory()
        var yaml = "groups:\n  - name: dashboard\n    rules:\n"
        for (i, e) in expressions.enumerated() {
            let quoted = e.replacingOccurrences(of: "'", with: "''")
            yaml += "      - record: dashboard:expression_\(i)\n        expr: '\(quoted)'\n"
        }
        let file = dir.appendingPathComponent("dashboard-rules.yml")
        try yaml.write(to: file, atomically: true, encoding: .utf8)
        let check = try Self.run(["check", "rules", file.path], in: dir)
        #expect(check.status == 0 && check.output.contains("\(expressions.count) rules found"), "\(check.output)")
    }

    @Test func rulesAndDashboardNameOnlyMetricsTheSidecarExports() throws {
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
        let named = Self.metricNames(try String(contentsOf: Self.rules, encoding: .utf8))
        #expect(!named.isEmpty)
        #expect(named.isSubset(of: exported), "rules: not exported: \(named.subtracting(exported).sorted())")
        let onDashboard = Self.metricNames(try Self.dashboardExpressions().joined(separator: "\n"))
        #expect(onDashboard.count >= 10)
        #expect(
            onDashboard.isSubset(of: exported),
            "dashboard: not exported: \(onDashboard.subtracting(exported).sorted())"
        )
    }
}
