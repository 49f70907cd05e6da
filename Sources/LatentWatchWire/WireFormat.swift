/// Constants of the LatentWatch sidecar wire protocol (Docs/WireProtocol.md).
public enum WireFormat {
    /// The HELLO magic, ASCII `LWP1`.
    public static let magic: [UInt8] = Array("LWP1".utf8)
    /// Protocol major version this build speaks.
    public static let major: UInt16 = 1
    /// Protocol minor version this build speaks.
    public static let minor: UInt16 = 2
    /// Bytes of a frame header.
    public static let headerSize = 8
    /// Largest body accepted before the handshake.
    public static let handshakeLimit = 4096
    /// Largest request id, in bytes.
    public static let maxRequestIDBytes = 256
    /// Bytes of one ASSESSMENT row before its per-layer fields.
    public static let assessmentRowFixed = 56
    /// Bytes of an ASSESSMENT row's prediction fields (rows of frames with the prediction flag).
    public static let assessmentRowPrediction = 40
    /// Bytes of an ASSESSMENT row's host-prediction fields (rows of frames with the host flag; protocol 1.2).
    public static let assessmentRowHost = 24
    /// Bytes per layer in an ASSESSMENT row.
    public static let assessmentRowPerLayer = 16
}

/// Frame types.
public enum FrameType: UInt8, Sendable, CaseIterable {
    /// Client's first frame.
    case hello = 0x01
    /// Inputs to assess.
    case observe = 0x10
    /// Ask for an ACK once everything before it is handled.
    case sync = 0x11
    /// The client is done.
    case bye = 0x12
    /// Server's answer to HELLO.
    case welcome = 0x81
    /// Per-frame assessments.
    case assessment = 0x82
    /// Progress acknowledgement.
    case ack = 0x83
    /// An error.
    case error = 0x84

    /// Whether clients may send this type.
    public var fromClient: Bool { rawValue < 0x80 }
}

/// OBSERVE flag bits.
public struct ObserveFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The server answers with an ASSESSMENT.
    public static let reply = ObserveFlags(rawValue: 1)
    /// Payload in IEEE binary16.
    public static let half = ObserveFlags(rawValue: 2)
    /// The host model's prediction of each input follows the layers, one binary32 per input (protocol 1.2;
    /// servers of a regression model).
    public static let predictions = ObserveFlags(rawValue: 4)
    /// Every defined bit.
    public static let all: ObserveFlags = [.reply, .half, .predictions]
}

/// A parsed frame header.
public struct FrameHeader: Sendable, Equatable {
    /// Body bytes.
    public var length: Int
    /// Raw type byte.
    public var type: UInt8
    /// Flags.
    public var flags: UInt8
    /// Reserved field (must be 0).
    public var reserved: UInt16

    /// Creates a header.
    public init(length: Int, type: UInt8, flags: UInt8 = 0, reserved: UInt16 = 0) {
        self.length = length
        self.type = type
        self.flags = flags
        self.reserved = reserved
    }

    /// Reads a header from the first 8 bytes of `bytes` (the caller checks there are 8).
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> FrameHeader {
        var r = WireReader(bytes)
        // Exactly 8 bytes are present: these reads cannot fail.
        let length = (try? r.u32()) ?? 0
        let type = (try? r.u8()) ?? 0
        let flags = (try? r.u8()) ?? 0
        let reserved = (try? r.u16()) ?? 0
        return FrameHeader(length: Int(length), type: type, flags: flags, reserved: reserved)
    }

    /// Appends the header to `out`.
    public func write(to out: inout [UInt8]) {
        var w = WireWriter(buffer: out)
        w.u32(UInt32(length))
        w.u8(type)
        w.u8(flags)
        w.u16(reserved)
        out = w.buffer
    }
}
