import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only file read by offset (`pread`), so large files are read in pieces, never loaded whole; or
/// bytes already in memory, read the same way.
final class FileBytes: @unchecked Sendable {
    let path: String
    let size: Int
    private let fd: Int32
    private let memory: [UInt8]?

    init(path: String) throws(LatentWatchError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw LatentWatchError(.io, "cannot open: \(String(cString: strerror(errno)))", path: path)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw LatentWatchError.malformed(path, "not a regular file")
        }
        self.fd = fd
        self.path = path
        self.size = Int(st.st_size)
        self.memory = nil
    }

    /// Bytes in memory; `name` stands for the path in messages.
    init(bytes: [UInt8], name: String) {
        fd = -1
        path = name
        size = bytes.count
        memory = bytes
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Reads exactly `count` bytes at `offset` into `buffer`.
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(LatentWatchError) {
        guard offset >= 0, buffer.count <= size - offset else {
            throw LatentWatchError.malformed(
                path,
                "truncated: needs bytes \(offset)..<\(offset + buffer.count), file has \(size)"
            )
        }
        if let memory {
            memory.withUnsafeBytes {
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + buffer.count)]))
            }
            return
        }
        var done = 0
        while done < buffer.count {
            let r = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if r < 0 {
                if errno == EINTR { continue }
                throw LatentWatchError(.io, "read failed: \(String(cString: strerror(errno)))", path: path)
            }
            if r == 0 { throw LatentWatchError.malformed(path, "truncated at byte \(offset + done)") }
            done += r
        }
    }

    /// Reads exactly `count` bytes at `offset`.
    func read(at offset: Int, count: Int) throws(LatentWatchError) -> [UInt8] {
        guard count >= 0 else { throw LatentWatchError.malformed(path, "negative length") }
        guard offset >= 0, count <= size - offset else {
            throw LatentWatchError.malformed(
                path,
                "truncated: needs bytes \(offset)..<\(offset + count), file has \(size)"
            )
        }
        var out = [UInt8](repeating: 0, count: count)
        try out.fill { (b) throws(LatentWatchError) in try read(at: offset, into: b) }
        return out
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeMutableBytes` for a body with a typed throw.
    mutating func fill(
        _ body: (UnsafeMutableRawBufferPointer) throws(LatentWatchError) -> Void
    ) throws(LatentWatchError) {
        var failure: LatentWatchError?
        withUnsafeMutableBytes { b in
            do throws(LatentWatchError) { try body(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
