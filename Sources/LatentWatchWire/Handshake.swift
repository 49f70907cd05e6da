/// The client's HELLO.
public struct Hello: Sendable, Equatable {
    /// Protocol major version.
    public var major: UInt16
    /// Protocol minor version.
    public var minor: UInt16
    /// Bearer token ("" when none).
    public var token: String
    /// Client name for logs.
    public var client: String

    /// Creates a HELLO for this build's protocol version.
    public init(
        token: String = "",
        client: String = "",
        major: UInt16 = WireFormat.major,
        minor: UInt16 = WireFormat.minor
    ) {
        self.major = major
        self.minor = minor
        self.token = token
        self.client = client
    }

    /// The whole frame.
    public func frame() -> [UInt8] {
        Frame.make(.hello) { w in
            w.buffer.append(contentsOf: WireFormat.magic)
            w.u16(major)
            w.u16(minor)
            w.string(token)
            w.string(client)
        }
    }

    /// Parses a HELLO body.
    public static func decode(_ body: UnsafeRawBufferPointer) throws(WireError) -> Hello {
        var r = WireReader(body)
        guard body.count >= 4, Array(r.slice(0, 4)) == WireFormat.magic else {
            throw WireError(
                .handshakeRequired,
                "the HELLO does not start with the magic LWP1: is this a LatentWatch client?"
            )
        }
        _ = try r.skip(4)
        let major = try r.u16()
        let minor = try r.u16()
        let token = try r.string(limit: 1024, what: "the token")
        let client = try r.string(limit: 256, what: "the client name")
        try r.expectEnd("HELLO")
        return Hello(token: token, client: client, major: major, minor: minor)
    }
}

/// One monitored layer as the server announces it.
public struct WireLayer: Sendable, Equatable {
    /// Layer name.
    public var name: String
    /// Floats per input.
    public var elements: Int
    /// CRC-32 of the model file.
    public var modelID: UInt32

    /// Creates a layer description.
    public init(name: String, elements: Int, modelID: UInt32) {
        self.name = name
        self.elements = elements
        self.modelID = modelID
    }
}

/// The server's WELCOME.
public struct Welcome: Sendable, Equatable {
    /// Protocol major version.
    public var major: UInt16
    /// Protocol minor version.
    public var minor: UInt16
    /// Largest body accepted.
    public var maxFrame: Int
    /// Largest row count of one OBSERVE.
    public var maxRows: Int
    /// ACK period in OBSERVE frames.
    public var ackEvery: Int
    /// The layers, in OBSERVE order.
    public var layers: [WireLayer]

    /// Creates a WELCOME.
    public init(
        maxFrame: Int,
        maxRows: Int,
        ackEvery: Int,
        layers: [WireLayer],
        major: UInt16 = WireFormat.major,
        minor: UInt16 = WireFormat.minor
    ) {
        self.major = major
        self.minor = minor
        self.maxFrame = maxFrame
        self.maxRows = maxRows
        self.ackEvery = ackEvery
        self.layers = layers
    }

    /// The whole frame.
    public func frame() -> [UInt8] {
        Frame.make(.welcome) { w in
            w.u16(major)
            w.u16(minor)
            w.u32(UInt32(maxFrame))
            w.u32(UInt32(maxRows))
            w.u32(UInt32(ackEvery))
            w.u16(UInt16(layers.count))
            for l in layers {
                w.string(l.name)
                w.u32(UInt32(l.elements))
                w.u32(l.modelID)
            }
        }
    }

    /// Parses a WELCOME body.
    public static func decode(_ body: UnsafeRawBufferPointer) throws(WireError) -> Welcome {
        var r = WireReader(body)
        let major = try r.u16()
        let minor = try r.u16()
        let maxFrame = Int(try r.u32())
        let maxRows = Int(try r.u32())
        let ackEvery = Int(try r.u32())
        let n = Int(try r.u16())
        var layers: [WireLayer] = []
        for _ in 0..<n {
            let name = try r.string(limit: 4096, what: "a layer name")
            let elements = Int(try r.u32())
            let id = try r.u32()
            layers.append(WireLayer(name: name, elements: elements, modelID: id))
        }
        try r.expectEnd("WELCOME")
        return Welcome(
            maxFrame: maxFrame,
            maxRows: maxRows,
            ackEvery: ackEvery,
            layers: layers,
            major: major,
            minor: minor
        )
    }
}
