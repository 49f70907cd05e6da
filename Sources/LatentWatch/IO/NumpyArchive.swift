/// A .npz archive (a zip of .npy members) held in memory, as written by `numpy.savez` (stored members) or
/// `numpy.savez_compressed` (deflated members), each checked against its zip CRC-32. Read through
/// ``TensorFile``; zip64 archives are refused with a clear error.
package struct NumpyArchive: Sendable {
    /// Members by name, without the `.npy` suffix.
    package let arrays: [String: NumpyArray]

    /// Reads an archive.
    package init(contentsOf path: String) throws {
        do { try self.init(file: TensorFile(path: path)) } catch let e as LatentWatchError {
            throw LatentWatchError(.malformedFile, e.description)
        }
    }

    /// Parses archive bytes.
    package init(bytes: [UInt8]) throws {
        do { try self.init(file: TensorFile(bytes: bytes, name: ".npz")) } catch let e as LatentWatchError {
            throw LatentWatchError(.malformedFile, e.message)
        }
    }

    init(file: TensorFile) throws {
        guard file.format == .npz else {
            throw LatentWatchError(.malformedFile, "\(file.path): not a .npz archive (\(file.format.rawValue))")
        }
        var arrays: [String: NumpyArray] = [:]
        for t in file.tensors {
            var bytes: [UInt8] = []
            try file.forEachRawChunk(t, rowsPerChunk: Int.max) { raw, _ in bytes += raw }
            arrays[t.name] = NumpyArray(shape: t.shape, dtype: t.dtype, bytes: bytes)
        }
        self.arrays = arrays
    }
}
