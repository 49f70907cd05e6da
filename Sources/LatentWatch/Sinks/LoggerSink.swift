public import Logging

/// Logs every alert through a swift-log `Logger`, with structured metadata (kind, index, request id, p-value).
public struct LoggerSink: AlertSink {
    public let name = "logger"
    let logger: Logger
    let level: Logger.Level

    /// A sink logging at `level` (warning by default; `resolved` at notice).
    public init(logger: Logger, level: Logger.Level = .warning) {
        self.logger = logger
        self.level = level
    }

    public func deliver(_ alert: Alert) async throws {
        var metadata: Logger.Metadata = [
            "alert.kind": "\(alert.kind.rawValue)",
            "alert.index": "\(alert.index)",
        ]
        if let id = alert.requestID { metadata["request.id"] = "\(id)" }
        if let p = alert.pValue { metadata["alert.p_value"] = "\(p)" }
        if let e = alert.episode { metadata["alert.episode"] = "\(e.rawValue)" }
        logger.log(level: alert.kind == .resolved ? .notice : level, "\(alert.detail)", metadata: metadata)
    }
}
