/// A protocol error: what the server answers in an ERROR frame, and what clients throw.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Error codes (Docs/WireProtocol.md).
    public enum Code: UInt16, Sendable, Equatable, CaseIterable {
        /// First frame not a HELLO, or a bad magic.
        case handshakeRequired = 1
        /// HELLO with another major version.
        case unsupportedVersion = 2
        /// Token missing or wrong.
        case unauthorized = 3
        /// Header length above the limit.
        case frameTooLarge = 4
        /// Unknown or server-to-client frame type.
        case unknownType = 5
        /// Body sizes disagree with the length, or reserved bits set.
        case malformedFrame = 6
        /// A layer's element count differs from the model's.
        case shapeMismatch = 7
        /// Layer count differs from the WELCOME's.
        case layerCountMismatch = 8
        /// Sequence not above the previous one.
        case sequenceNotIncreasing = 9
        /// Zero rows or more than max_rows.
        case tooManyRows = 10
        /// A queue was full under the reject policy.
        case overloaded = 11
        /// The server is draining.
        case shuttingDown = 12
        /// The client did not read its replies.
        case slowConsumer = 13

        /// Whether the server closes the connection after sending it.
        public var isFatal: Bool {
            switch self {
            case .handshakeRequired, .unsupportedVersion, .unauthorized, .frameTooLarge, .unknownType, .shuttingDown,
                .slowConsumer:
                return true
            default:
                return false
            }
        }

        /// The name used in docs and metrics.
        public var name: String { "\(self)" }
    }

    /// The code.
    public var code: Code
    /// What went wrong and how to remedy it.
    public var message: String
    /// The OBSERVE sequence it refers to (0: none).
    public var sequence: UInt64

    /// Creates an error.
    public init(_ code: Code, _ message: String, sequence: UInt64 = 0) {
        self.code = code
        self.message = message
        self.sequence = sequence
    }

    public var description: String { "\(message) [\(code.name)]" }
}
