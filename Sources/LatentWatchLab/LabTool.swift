package import ArgumentParser
import Foundation

/// A research tool's failure: said on standard error with the tool's name, exit status 1 (2 for bad input).
package struct LabError: Error, CustomStringConvertible {
    /// What went wrong, naming the input.
    package let description: String
    /// The process exit status.
    package let status: Int32

    /// An error; `status` 2 means the input was bad (a missing or damaged file, an impossible option).
    package init(_ description: String, status: Int32 = 1) {
        self.description = description
        self.status = status
    }
}

/// Writes one line to standard error.
package func stderrLine(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Runs a research tool's body and exits 0; any error is said and ends the process as ``exitOnError(_:_:)`` does.
package func runTool(_ name: String, _ body: () throws -> Void) -> Never {
    exitOnError(name, body)
    exit(0)
}

/// The asynchronous form of ``runTool(_:_:)``.
package func runTool(_ name: String, _ body: () async throws -> Void) async -> Never {
    await exitOnError(name, body)
    exit(0)
}

/// Writes a JSON object (pretty, sorted keys). Non-finite numbers, which JSON cannot hold, are written as null.
package func writeJSON(_ object: [String: Any], to path: String) throws {
    let data = try JSONSerialization.data(withJSONObject: jsonSafe(object), options: [.prettyPrinted, .sortedKeys])
    do { try data.write(to: URL(fileURLWithPath: path)) } catch {
        throw LabError("cannot write \(path): \(error.localizedDescription)")
    }
}

/// The value with every non-finite Double (at any depth) replaced by NSNull.
func jsonSafe(_ value: Any) -> Any {
    switch value {
    case let d as Double: return d.isFinite ? d : NSNull()
    case let f as Float: return f.isFinite ? Double(f) : NSNull()
    case let a as [Any]: return a.map(jsonSafe)
    case let o as [String: Any]: return o.mapValues(jsonSafe)
    default: return value
    }
}

/// Seconds on a monotonic clock.
@Sendable package func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Seconds `body` takes on the monotonic clock.
package func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t0 = monotonicSeconds()
    try body()
    return monotonicSeconds() - t0
}

/// The value of `body`, or, when it throws, the error said as `tool: error` on standard error and the process
/// ended with status 1 (2 for a LabError about bad input): for a tool's top-level steps, which must not trap.
package func exitOnError<T>(_ tool: String, _ body: () throws -> T) -> T {
    do { return try body() } catch { fail(tool, error) }
}

/// The asynchronous form of ``exitOnError(_:_:)``.
package func exitOnError<T>(_ tool: String, _ body: () async throws -> T) async -> T {
    do { return try await body() } catch { fail(tool, error) }
}

/// Says `error` and exits: status 2 for a LabError about bad input, else its status or 1.
func fail(_ tool: String, _ error: any Error) -> Never {
    stderrLine("\(tool): \(error)")
    exit((error as? LabError)?.status ?? 1)
}

/// Parses the process arguments; help exits 0, a malformed or missing option exits 2 with the message and usage
/// on standard error.
package func parseOptions<T: ParsableArguments>(_ type: T.Type) -> T {
    do { return try T.parse() } catch {
        let code = T.exitCode(for: error)
        guard code != .success else { T.exit(withError: error) }
        stderrLine(T.fullMessage(for: error))
        stderrLine(T.helpMessage().split(separator: "\n").first.map(String.init) ?? "")
        Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
    }
}
