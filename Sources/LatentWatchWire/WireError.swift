/// A protocol error: what the server answers in an ERROR frame, and what clients throw.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Error codes (Docs/WireProtocol.md): a struct over the wire's UInt16, so a code from a newer server is kept
    /// (and named by its number) instead of being lost, and new codes do not break callers' `switch`es.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code on the wire.
        public let rawValue: UInt16

        /// A code by its wire value.
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// First frame not a HELLO, or a bad magic.
        public static let handshakeRequired = Code(rawValue: 1)
        /// HELLO with another major version.
        public static let unsupportedVersion = Code(rawValue: 2)
        /// Token missing or wrong.
        public static let unauthorized = Code(rawValue: 3)
        /// Header length above the limit.
        public static let frameTooLarge = Code(rawValue: 4)
        /// Unknown or server-to-client frame type.
        public static let unknownType = Code(rawValue: 5)
        /// Body sizes disagree with the length, or reserved bits set.
        public static let malformedFrame = Code(rawValue: 6)
        /// A layer's element count differs from the model's.
        public static let shapeMismatch = Code(rawValue: 7)
        /// Layer count differs from the WELCOME's.
        public static let layerCountMismatch = Code(rawValue: 8)
        /// Sequence not above the previous one.
        public static let sequenceNotIncreasing = Code(rawValue: 9)
        /// Zero rows or more than max_rows.
        public static let tooManyRows = Code(rawValue: 10)
        /// A queue was full under the reject policy.
        public static let overloaded = Code(rawValue: 11)
        /// The server is draining.
        public static let shuttingDown = Code(rawValue: 12)
        /// The client did not read its replies.
        public static let slowConsumer = Code(rawValue: 13)

        /// Every code this version knows, in wire order.
        public static let known: [Code] = [
            .handshakeRequired,
            .unsupportedVersion,
            .unauthorized,
            .frameTooLarge,
            .unknownType,
            .malformedFrame,
            .shapeMismatch,
            .layerCountMismatch,
            .sequenceNotIncreasing,
            .tooManyRows,
            .overloaded,
            .shuttingDown,
            .slowConsumer,
        ]

        static let names: [UInt16: String] = [
            1: "handshakeRequired",
            2: "unsupportedVersion",
            3: "unauthorized",
            4: "frameTooLarge",
            5: "unknownType",
            6: "malformedFrame",
            7: "shapeMismatch",
            8: "layerCountMismatch",
            9: "sequenceNotIncreasing",
            10: "tooManyRows",
            11: "overloaded",
            12: "shuttingDown",
            13: "slowConsumer",
        ]

        /// Whether the server closes the connection after sending it (codes this version does not know: no).
        public var isFatal: Bool {
            switch self {
            case .handshakeRequired, .unsupportedVersion, .unauthorized, .frameTooLarge, .unknownType, .shuttingDown,
                .slowConsumer:
                return true
            default:
                return false
            }
        }

        /// The name used in docs and metrics ("code<N>" for a code this version does not know).
        public var name: String { Code.names[rawValue] ?? "code\(rawValue)" }

        /// The name.
        public var description: String { name }
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
