/// A checked OBSERVE: where each layer's payload lies in the body. Decoding validates every declared size
/// against the limits and the body length before the caller allocates anything for the payload.
public struct ObserveLayout: Sendable, Equatable {
    /// Client sequence number.
    public var sequence: UInt64
    /// Flags.
    public var flags: ObserveFlags
    /// Number of inputs.
    public var rows: Int
    /// Request ids, one per input (nil for empty).
    public var requestIDs: [String?]
    /// Byte offset of each layer's payload in the body.
    public var payloadOffsets: [Int]
    /// Floats per input of each layer.
    public var elements: [Int]
    /// Byte offset of the host's predictions (one binary32 per input) when the OBSERVE carries them.
    public var predictionsOffset: Int? = nil

    /// Bytes per element.
    public var elementSize: Int { flags.contains(.half) ? 2 : 4 }

    /// Checks an OBSERVE body against the server's layers.
    /// - Parameters:
    ///   - body: the whole body.
    ///   - flags: the header's flags.
    ///   - elements: floats per input of each layer, as announced in the WELCOME.
    ///   - maxRows: the WELCOME's max_rows.
    public static func decode(
        _ body: UnsafeRawBufferPointer,
        flags rawFlags: UInt8,
        elements expected: [Int],
        maxRows: Int
    ) throws(WireError) -> ObserveLayout {
        var r = WireReader(body)
        let sequence = try r.u64()
        guard rawFlags & ~ObserveFlags.all.rawValue == 0 else {
            throw WireError(
                .malformedFrame,
                "OBSERVE flags 0x\(String(rawFlags, radix: 16)) set undefined bits",
                sequence: sequence
            )
        }
        let flags = ObserveFlags(rawValue: rawFlags)
        let rows = Int(try r.u32())
        guard rows >= 1 && rows <= maxRows else {
            throw WireError(.tooManyRows, "an OBSERVE carries 1 to \(maxRows) inputs, not \(rows)", sequence: sequence)
        }
        let layerCount = Int(try r.u16())
        guard layerCount == expected.count else {
            throw WireError(
                .layerCountMismatch,
                "the server monitors \(expected.count) layer(s); the OBSERVE sent \(layerCount)",
                sequence: sequence
            )
        }
        var ids: [String?] = []
        ids.reserveCapacity(rows)
        for _ in 0..<rows {
            let s = try r.string(limit: WireFormat.maxRequestIDBytes, what: "a request id")
            ids.append(s.isEmpty ? nil : s)
        }
        let size = flags.contains(.half) ? 2 : 4
        // The first layer's count comes right after the ids: a wrong shape is named before the size check.
        if let first = expected.first, r.remaining >= 4 {
            let declared = Int(r.slice(r.offset, 4).loadUnaligned(as: UInt32.self).littleEndian)
            guard declared == first else {
                throw WireError(
                    .shapeMismatch,
                    "layer 0 has \(first) elements per input; the OBSERVE declared \(declared)",
                    sequence: sequence
                )
            }
        }
        // Everything else is determined by rows, the shapes and the dtype: check the total before parsing.
        var needed = flags.contains(.predictions) ? rows * 4 : 0
        for e in expected {
            let (b, o1) = rows.multipliedReportingOverflow(by: e * size)
            let (t, o2) = needed.addingReportingOverflow(4 + b)
            guard !o1, !o2 else { throw WireError(.malformedFrame, "declared sizes overflow", sequence: sequence) }
            needed = t
        }
        guard needed == r.remaining else {
            throw WireError(
                .malformedFrame,
                "\(rows) input(s) of \(expected) \(size == 2 ? "binary16" : "binary32") values"
                    + (flags.contains(.predictions) ? " and \(rows) host prediction(s)" : "")
                    + " need \(needed) bytes after the ids; the frame has \(r.remaining) (are the f16 and predictions flags right?)",
                sequence: sequence
            )
        }
        var offsets: [Int] = []
        offsets.reserveCapacity(layerCount)
        for (i, e) in expected.enumerated() {
            let n = Int(try r.u32())
            guard n == e else {
                throw WireError(
                    .shapeMismatch,
                    "layer \(i) has \(e) elements per input; the OBSERVE declared \(n)",
                    sequence: sequence
                )
            }
            let (bytes, overflow) = rows.multipliedReportingOverflow(by: n * size)
            guard !overflow, bytes <= r.remaining else {
                throw WireError(
                    .malformedFrame,
                    "layer \(i) declares \(rows) × \(n) values but the frame has only \(r.remaining) bytes left",
                    sequence: sequence
                )
            }
            offsets.append(try r.skip(bytes))
        }
        let predictionsOffset = flags.contains(.predictions) ? try r.skip(rows * 4) : nil
        do { try r.expectEnd("the OBSERVE") } catch { throw WireError(error.code, error.message, sequence: sequence) }
        return ObserveLayout(
            sequence: sequence,
            flags: flags,
            rows: rows,
            requestIDs: ids,
            payloadOffsets: offsets,
            elements: expected,
            predictionsOffset: predictionsOffset
        )
    }

    /// Encodes an OBSERVE frame from float32 rows: `layers[i]` holds `rows × elements[i]` values, and
    /// `predictions`, when given, the host's prediction of each input (protocol 1.2).
    public static func frame(
        sequence: UInt64,
        reply: Bool,
        rows: Int,
        requestIDs: [String?] = [],
        layers: [UnsafeBufferPointer<Float>],
        predictions: UnsafeBufferPointer<Float>? = nil
    ) -> [UInt8] {
        var w = WireWriter()
        let payload = layers.reduce(0) { $0 + $1.count * 4 } + (predictions?.count ?? 0) * 4
        w.buffer.reserveCapacity(WireFormat.headerSize + 16 + payload + layers.count * 4 + rows * 2)
        var flags: ObserveFlags = reply ? .reply : []
        if predictions != nil { flags.insert(.predictions) }
        FrameHeader(length: 0, type: FrameType.observe.rawValue, flags: flags.rawValue).write(to: &w.buffer)
        w.u64(sequence)
        w.u32(UInt32(rows))
        w.u16(UInt16(layers.count))
        for i in 0..<rows { w.string(i < requestIDs.count ? requestIDs[i] ?? "" : "") }
        for l in layers {
            w.u32(UInt32(rows > 0 ? l.count / rows : 0))
            #if _endian(little)
            w.bytes(UnsafeRawBufferPointer(l))
            #else
            for v in l { w.u32(v.bitPattern) }
            #endif
        }
        if let predictions { for v in predictions { w.u32(v.bitPattern) } }
        let length = UInt32(w.buffer.count - WireFormat.headerSize)
        withUnsafeBytes(of: length.littleEndian) { b in for k in 0..<4 { w.buffer[k] = b[k] } }
        return w.buffer
    }
}
