import LatentWatchNumerics
import LatentWatchWire
import NIOCore

/// Decodes one connection's frames (Docs/WireProtocol.md): checks each header against the limit before the
/// body is buffered, checks the body's declared sizes before any payload is copied, and hands OBSERVE
/// inputs to the queue. Runs on the connection's event loop.
final class FrameHandler: ByteToMessageDecoder {
    typealias InboundOut = Never

    let connection: Connection
    let context: ServerContext
    var dead = false

    init(connection: Connection, context: ServerContext) {
        self.connection = connection
        self.context = context
    }

    func decode(context ctx: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if dead {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        guard buffer.readableBytes >= WireFormat.headerSize else { return .needMoreData }
        let header = buffer.withUnsafeReadableBytes {
            FrameHeader.parse(UnsafeRawBufferPointer(rebasing: $0[0..<WireFormat.headerSize]))
        }
        let handshaken = connection.handshaken.load(ordering: .relaxed)
        let limit = handshaken ? context.configuration.maxFrameBytes : WireFormat.handshakeLimit
        guard header.length <= limit else {
            fatal(
                .frameTooLarge,
                "a frame of \(header.length) bytes is over the limit of \(limit) bytes\(handshaken ? " (--max-frame-bytes)" : " before the handshake")",
                buffer: &buffer
            )
            return .needMoreData
        }
        guard let type = FrameType(rawValue: header.type), type.fromClient else {
            fatal(
                .unknownType,
                "frame type 0x\(String(header.type, radix: 16)) is not one a client may send",
                buffer: &buffer
            )
            return .needMoreData
        }
        guard buffer.readableBytes >= WireFormat.headerSize + header.length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: WireFormat.headerSize)
        let body = buffer.readSlice(length: header.length)!
        context.metrics.frames.increment()
        handle(type, header, body, buffer: &buffer)
        return .continue
    }

    func decodeLast(context ctx: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState
    {
        // A partial frame at EOF is an abrupt disconnect: nothing of it was acknowledged.
        while try decode(context: ctx, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    func fatal(_ code: WireError.Code, _ message: String, sequence: UInt64 = 0, buffer: inout ByteBuffer) {
        dead = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.metrics.protocolErrors[code]?.increment()
        connection.sendAndClose(WireError(code, message, sequence: sequence).frame())
    }

    func nonFatal(_ error: WireError) {
        context.metrics.protocolErrors[error.code]?.increment()
        connection.refused(error.sequence)
        connection.send(error.frame())
    }

    func handle(_ type: FrameType, _ header: FrameHeader, _ body: ByteBuffer, buffer: inout ByteBuffer) {
        if !connection.handshaken.load(ordering: .relaxed) {
            guard type == .hello else {
                fatal(.handshakeRequired, "the first frame must be a HELLO (Docs/WireProtocol.md)", buffer: &buffer)
                return
            }
            let hello: Hello
            do { hello = try body.withUnsafeReadableBytes { b throws(WireError) in try Hello.decode(b) } } catch {
                // A HELLO that does not parse (bad magic or sizes) is no handshake.
                fatal(.handshakeRequired, error.message, buffer: &buffer)
                return
            }
            guard hello.major == WireFormat.major else {
                fatal(
                    .unsupportedVersion,
                    "this server speaks protocol \(WireFormat.major).\(WireFormat.minor); the client asked for \(hello.major).\(hello.minor)",
                    buffer: &buffer
                )
                return
            }
            if let token = context.configuration.token, !constantTimeEqual(token, hello.token) {
                fatal(.unauthorized, "the HELLO's token is missing or wrong", buffer: &buffer)
                return
            }
            connection.predictionFields.store(hello.minor >= 1, ordering: .relaxed)
            connection.hostFields.store(hello.minor >= 2, ordering: .relaxed)
            connection.handshaken.store(true, ordering: .relaxed)
            connection.send(context.welcome.frame())
            return
        }
        guard header.reserved == 0 else {
            nonFatal(WireError(.malformedFrame, "the header's reserved field must be 0"))
            return
        }
        if context.draining.load(ordering: .acquiring) && type != .bye {
            fatal(.shuttingDown, "the server is shutting down; this frame was not handled", buffer: &buffer)
            return
        }
        switch type {
        case .observe:
            observe(header, body)
        case .sync, .bye:
            guard header.flags == 0, body.readableBytes == (type == .sync ? 8 : 0) else {
                nonFatal(
                    WireError(
                        .malformedFrame,
                        "a \(type == .sync ? "SYNC body is one u64" : "BYE body is empty") with no flags"
                    )
                )
                return
            }
            let token =
                type == .sync ? body.getInteger(at: body.readerIndex, endianness: .little, as: UInt64.self) ?? 0 : 0
            connection.sync(token: token, bye: type == .bye)
            if type == .bye { dead = true }
        case .hello:
            nonFatal(WireError(.malformedFrame, "HELLO was already received"))
        default:
            break
        }
    }

    func observe(_ header: FrameHeader, _ body: ByteBuffer) {
        let elements = context.elements
        let layout: ObserveLayout
        do {
            layout = try body.withUnsafeReadableBytes { b throws(WireError) in
                try ObserveLayout.decode(
                    b,
                    flags: header.flags,
                    elements: elements,
                    maxRows: context.configuration.maxRows
                )
            }
        } catch {
            nonFatal(error)
            return
        }
        if layout.predictionsOffset != nil {
            guard connection.hostFields.load(ordering: .relaxed) else {
                nonFatal(
                    WireError(
                        .malformedFrame,
                        "the OBSERVE flag predictions is protocol 1.2; the client's HELLO announced an older version",
                        sequence: layout.sequence
                    )
                )
                return
            }
            guard context.takesPredictions else {
                nonFatal(
                    WireError(
                        .malformedFrame,
                        "the OBSERVE carries the host's predictions, but the served model of the primary layer is "
                            + "not a regression model: send activations only",
                        sequence: layout.sequence
                    )
                )
                return
            }
        }
        guard connection.checkSequence(layout.sequence) else {
            nonFatal(
                WireError(
                    .sequenceNotIncreasing,
                    "sequence \(layout.sequence) is not above the previous one",
                    sequence: layout.sequence
                )
            )
            return
        }
        // Sizes are checked: now copy the payload into float32.
        var offsets: [Int] = []
        var total = 0
        for e in elements {
            offsets.append(total)
            total += e * layout.rows
        }
        let half = layout.flags.contains(.half)
        let payload = [Float](unsafeUninitializedCapacity: total) { dst, count in
            body.withUnsafeReadableBytes { src in
                for (i, e) in elements.enumerated() {
                    let n = e * layout.rows
                    let from = src.baseAddress! + layout.payloadOffsets[i]
                    let to = dst.baseAddress! + offsets[i]
                    if half {
                        let tmp = [UInt16](unsafeUninitializedCapacity: n) { t, c in
                            UnsafeMutableRawPointer(t.baseAddress!).copyMemory(from: from, byteCount: n * 2)
                            c = n
                        }
                        tmp.withUnsafeBufferPointer { HalfConversion.convert($0.baseAddress!, to: to, count: n) }
                    } else {
                        UnsafeMutableRawPointer(to).copyMemory(from: from, byteCount: n * 4)
                    }
                }
            }
            count = total
        }
        let predictions = layout.predictionsOffset.map { at in
            body.withUnsafeReadableBytes { src in
                (0..<layout.rows).map { r in
                    Float(bitPattern: src.loadUnaligned(fromByteOffset: at + 4 * r, as: UInt32.self).littleEndian)
                }
            }
        }
        let batch = IngestBatch(
            owner: connection,
            sequence: layout.sequence,
            reply: layout.flags.contains(.reply),
            rows: layout.rows,
            requestIDs: layout.requestIDs,
            payload: payload,
            offsets: offsets,
            elements: elements,
            predictions: predictions
        )
        switch connection.admit(batch) {
        case .queued, .dropped:
            break
        case .rejected:
            context.metrics.protocolErrors[.overloaded]?.increment()
            connection.send(
                WireError(
                    .overloaded,
                    "the queue is full; nothing of this frame was assessed, send it again later",
                    sequence: layout.sequence
                ).frame()
            )
        case .closed:
            dead = true
            connection.sendAndClose(
                WireError(.shuttingDown, "the server is shutting down", sequence: layout.sequence).frame()
            )
        }
    }
}

/// Compares two strings in time that depends only on their lengths.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
