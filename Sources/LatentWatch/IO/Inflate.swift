import CZlib

/// Streaming raw-deflate decoding (zip method 8) through zlib, reading compressed bytes from a file range.
final class InflateStream {
    private var stream = z_stream()
    private let file: FileBytes
    private var next: Int
    private let end: Int
    private var input: [UInt8] = []
    private var position = 0
    private var finished = false
    private let member: String

    init(file: FileBytes, offset: Int, length: Int, member: String) throws(LatentWatchError) {
        self.file = file
        self.next = offset
        self.end = offset + length
        self.member = member
        guard lw_inflate_init_raw(&stream) == Z_OK else {
            throw LatentWatchError.malformed(file.path, "zlib could not start inflating member '\(member)'")
        }
    }

    deinit { inflateEnd(&stream) }

    /// Fills `buffer` completely with decoded bytes; throws when the stream ends early or is corrupt.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(LatentWatchError) {
        var produced = 0
        while produced < buffer.count {
            if finished {
                throw LatentWatchError.malformed(
                    file.path,
                    "member '\(member)' decompresses to fewer bytes than declared"
                )
            }
            if position == input.count {
                let n = min(1 << 16, end - next)
                if n <= 0 {
                    throw LatentWatchError.malformed(
                        file.path,
                        "member '\(member)' is truncated (deflate stream ends early)"
                    )
                }
                input = try file.read(at: next, count: n)
                position = 0
                next += n
            }
            let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
                stream.next_in = inBuf.baseAddress! + position
                stream.avail_in = UInt32(inBuf.count - position)
                stream.next_out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) + produced
                stream.avail_out = UInt32(buffer.count - produced)
                let before = stream.avail_out
                let s = inflate(&stream, Z_NO_FLUSH)
                produced += Int(before - stream.avail_out)
                position = inBuf.count - Int(stream.avail_in)
                return s
            }
            switch status {
            case Z_OK, Z_BUF_ERROR: continue
            case Z_STREAM_END: finished = true
            default:
                let msg = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                throw LatentWatchError.malformed(file.path, "member '\(member)' is corrupt (deflate: \(msg))")
            }
        }
    }
}
