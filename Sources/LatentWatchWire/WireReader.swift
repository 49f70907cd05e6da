/// A bounds-checked little-endian cursor over a frame body. Every read past the end throws
/// `malformedFrame`; nothing here can trap on input data.
public struct WireReader {
    let bytes: UnsafeRawBufferPointer
    /// Current offset.
    public private(set) var offset = 0

    /// A reader at the start of `bytes`.
    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Bytes not read yet.
    public var remaining: Int { bytes.count - offset }

    mutating func take(_ n: Int) throws(WireError) -> Int {
        guard n >= 0, n <= remaining else {
            throw WireError(.malformedFrame, "the frame ends \(n - remaining) bytes early (at offset \(offset))")
        }
        let at = offset
        offset += n
        return at
    }

    /// Reads a byte.
    public mutating func u8() throws(WireError) -> UInt8 { bytes[try take(1)] }

    /// Reads a u16.
    public mutating func u16() throws(WireError) -> UInt16 {
        let at = try take(2)
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    /// Reads a u32.
    public mutating func u32() throws(WireError) -> UInt32 {
        let at = try take(4)
        return bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian
    }

    /// Reads a u64.
    public mutating func u64() throws(WireError) -> UInt64 {
        let at = try take(8)
        return bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian
    }

    /// Reads an i32.
    public mutating func i32() throws(WireError) -> Int32 { Int32(bitPattern: try u32()) }

    /// Reads an f64.
    public mutating func f64() throws(WireError) -> Double { Double(bitPattern: try u64()) }

    /// Reads a u16-prefixed UTF-8 string of at most `limit` bytes.
    public mutating func string(limit: Int, what: String) throws(WireError) -> String {
        let n = Int(try u16())
        guard n <= limit else {
            throw WireError(.malformedFrame, "\(what) is \(n) bytes; at most \(limit) are allowed")
        }
        let at = try take(n)
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]), as: UTF8.self)
    }

    /// Skips `n` bytes and returns where they start.
    public mutating func skip(_ n: Int) throws(WireError) -> Int { try take(n) }

    /// The raw bytes at `range` of the body.
    public func slice(_ start: Int, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)])
    }

    /// Throws unless the whole body was read.
    public func expectEnd(_ what: String) throws(WireError) {
        guard remaining == 0 else {
            throw WireError(.malformedFrame, "\(what) has \(remaining) bytes more than its fields declare")
        }
    }
}

/// A little-endian byte appender.
public struct WireWriter: Sendable {
    /// The bytes written.
    public var buffer: [UInt8]

    /// A writer appending to `buffer`.
    public init(buffer: [UInt8] = []) { self.buffer = buffer }

    public mutating func u8(_ v: UInt8) { buffer.append(v) }
    public mutating func u16(_ v: UInt16) {
        buffer.append(UInt8(v & 0xFF))
        buffer.append(UInt8(v >> 8))
    }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) } }
    public mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    public mutating func f64(_ v: Double) { u64(v.bitPattern) }

    /// Writes a u16-prefixed string, truncated to 65,535 bytes.
    public mutating func string(_ s: String) {
        let b = Array(s.utf8.prefix(Int(UInt16.max)))
        u16(UInt16(b.count))
        buffer.append(contentsOf: b)
    }

    /// Appends raw bytes.
    public mutating func bytes(_ b: UnsafeRawBufferPointer) { buffer.append(contentsOf: b) }
}
