import Foundation

/// Writes one JSON object per alert and line, to standard output or to a file rotated by size
/// (`alerts.jsonl` -> `alerts.jsonl.1` -> ... up to `keep` old files).
public actor JSONLinesSink: AlertSink {
    public nonisolated let name: String
    private let path: String?
    private let maxBytes: Int
    private let keep: Int
    private var handle: FileHandle?
    private var written = 0
    private let encoder: JSONEncoder

    /// A sink writing to standard output.
    public init() {
        name = "jsonl:stdout"
        path = nil
        maxBytes = .max
        keep = 0
        encoder = Self.makeEncoder()
    }

    /// A sink writing to `path`, rotating when it would pass `maxBytes`.
    public init(path: String, maxBytes: Int = 64 << 20, keep: Int = 5) {
        name = "jsonl:\(path)"
        self.path = path
        self.maxBytes = max(1024, maxBytes)
        self.keep = max(0, keep)
        encoder = Self.makeEncoder()
    }

    private static func makeEncoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }

    public func deliver(_ alert: Alert) async throws {
        var line = try encoder.encode(alert)
        line.append(0x0A)
        guard let path else {
            FileHandle.standardOutput.write(line)
            return
        }
        if handle == nil { try open(path) }
        if written > 0 && written + line.count > maxBytes { try rotate(path) }
        try handle!.write(contentsOf: line)
        written += line.count
    }

    public func flush() async throws {
        try handle?.synchronize()
    }

    private func open(_ path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
        }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        written = Int(try h.seekToEnd())
        handle = h
    }

    private func rotate(_ path: String) throws {
        try handle?.close()
        handle = nil
        let fm = FileManager.default
        if keep == 0 {
            try? fm.removeItem(atPath: path)
        } else {
            try? fm.removeItem(atPath: "\(path).\(keep)")
            if keep > 1 {
                for i in stride(from: keep - 1, through: 1, by: -1) where fm.fileExists(atPath: "\(path).\(i)") {
                    try fm.moveItem(atPath: "\(path).\(i)", toPath: "\(path).\(i + 1)")
                }
            }
            try fm.moveItem(atPath: path, toPath: "\(path).1")
        }
        try open(path)
    }
}
