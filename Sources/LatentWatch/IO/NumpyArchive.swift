import Foundation

/// A .npz archive (a zip of .npy members), as written by `numpy.savez`. Stored (uncompressed) members are
/// read; deflated members (`numpy.savez_compressed`) and zip64 archives are refused with a clear error.
public struct NumpyArchive: Sendable {
    /// Members by name, without the `.npy` suffix.
    public let arrays: [String: NumpyArray]

    /// Reads an archive.
    public init(contentsOf path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw NumpyError("\(path): cannot read: \(error.localizedDescription)")
        }
        do { try self.init(bytes: Array(data)) } catch let e as NumpyError { throw NumpyError("\(path): \(e.message)") }
    }

    /// Parses archive bytes.
    public init(bytes b: [UInt8]) throws {
        func u16(_ o: Int) throws -> Int {
            guard o >= 0, o + 2 <= b.count else { throw NumpyError("truncated .npz (offset \(o))") }
            return Int(b[o]) | Int(b[o + 1]) << 8
        }
        func u32(_ o: Int) throws -> Int {
            guard o >= 0, o + 4 <= b.count else { throw NumpyError("truncated .npz (offset \(o))") }
            return Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24
        }
        // End of central directory: the last occurrence of its signature within 64 KiB of the end.
        var eocd = -1
        var i = b.count - 22
        while i >= max(0, b.count - 65_557) {
            if b[i] == 0x50 && b[i + 1] == 0x4B && b[i + 2] == 0x05 && b[i + 3] == 0x06 {
                eocd = i
                break
            }
            i -= 1
        }
        guard eocd >= 0 else { throw NumpyError("not a .npz archive (no zip directory)") }
        let entries = try u16(eocd + 10)
        let dirOffset = try u32(eocd + 16)
        if dirOffset == 0xFFFF_FFFF || entries == 0xFFFF { throw NumpyError("zip64 .npz archives are not supported") }
        var arrays: [String: NumpyArray] = [:]
        var p = dirOffset
        for _ in 0..<entries {
            guard try u32(p) == 0x0201_4B50 else { throw NumpyError("corrupt .npz central directory") }
            let method = try u16(p + 10)
            let compressed = try u32(p + 20)
            let size = try u32(p + 24)
            let nameLength = try u16(p + 28)
            let extra = try u16(p + 30)
            let comment = try u16(p + 32)
            let local = try u32(p + 42)
            guard p + 46 + nameLength <= b.count else { throw NumpyError("truncated .npz directory") }
            let name = String(decoding: b[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            p += 46 + nameLength + extra + comment
            guard method == 0 else {
                throw NumpyError(
                    "member '\(name)' is compressed (method \(method)); only numpy.savez (stored) archives are read so far"
                )
            }
            guard compressed == size, try u32(local) == 0x0403_4B50 else {
                throw NumpyError("corrupt .npz member '\(name)'")
            }
            let start = local + 30 + (try u16(local + 26)) + (try u16(local + 28))
            guard start >= 0, start + size <= b.count else { throw NumpyError("truncated .npz member '\(name)'") }
            let key = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
            do {
                arrays[key] = try NumpyArray(bytes: Array(b[start..<(start + size)]))
            } catch let e as NumpyError {
                throw NumpyError("member '\(name)': \(e.message)")
            }
        }
        self.arrays = arrays
    }
}
