/// Builds whole frames (header + body).
public enum Frame {
    /// A frame of `type` with `body`.
    public static func make(_ type: FrameType, flags: UInt8 = 0, body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(WireFormat.headerSize + body.count)
        FrameHeader(length: body.count, type: type.rawValue, flags: flags).write(to: &out)
        out.append(contentsOf: body)
        return out
    }

    /// Builds a body with a writer, then the frame.
    public static func make(_ type: FrameType, flags: UInt8 = 0, _ build: (inout WireWriter) -> Void) -> [UInt8] {
        var w = WireWriter()
        build(&w)
        return make(type, flags: flags, body: w.buffer)
    }
}
