import CZstd

/// One-shot zstd compression through libzstd, shared by model files and recordings.
enum Zstd {
    /// Compresses `input` into one frame; nil when libzstd fails.
    static func compressed(_ input: [UInt8], level: Int32) -> [UInt8]? {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { o in
            input.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, bound, i.baseAddress, input.count, level) }
        }
        if ZSTD_isError(written) != 0 { return nil }
        out.removeSubrange(written...)
        return out
    }

    /// Decodes one frame that declares and decodes to exactly `expected` bytes; otherwise the reason.
    static func decompressed(_ input: ArraySlice<UInt8>, expected: Int) -> Result<[UInt8], ZstdFailure> {
        let declared = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, input.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two largest UInt64 values.
        if declared >= UInt64.max - 1 || declared != UInt64(expected) { return .failure(.notAFrameOfDeclaredSize) }
        var out = [UInt8](repeating: 0, count: expected)
        let got = out.withUnsafeMutableBytes { o in
            input.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, expected, i.baseAddress, input.count) }
        }
        if ZSTD_isError(got) != 0 { return .failure(.undecodable(String(cString: ZSTD_getErrorName(got)))) }
        if got != expected { return .failure(.undecodable("decoded \(got) bytes")) }
        return .success(out)
    }

    enum ZstdFailure: Error {
        case notAFrameOfDeclaredSize
        case undecodable(String)
    }

    static func compress(_ input: [UInt8], level: Int32 = 9) throws(LatentWatchError) -> [UInt8] {
        guard let out = compressed(input, level: level) else {
            throw LatentWatchError(.io, "zstd compression failed", remedy: "report this as a bug")
        }
        return out
    }

    /// Decompresses one frame that must decode to exactly `expected` bytes.
    static func decompress(_ input: ArraySlice<UInt8>, expected: Int, section: Int) throws(LatentWatchError) -> [UInt8]
    {
        switch decompressed(input, expected: expected) {
        case .success(let out): return out
        case .failure(.notAFrameOfDeclaredSize):
            throw LatentWatchError(
                .decompressionFailed,
                "section \(section) is not a zstd frame of the declared \(expected) bytes",
                remedy: "the file is damaged; restore it from a good copy or refit"
            )
        case .failure(.undecodable(let reason)):
            throw LatentWatchError(
                .decompressionFailed,
                "section \(section) does not decompress: \(reason)",
                remedy: "the file is damaged; restore it from a good copy or refit"
            )
        }
    }
}

/// Byte shuffling of fixed-width elements (all byte 0s, then all byte 1s, ...), undone on read.
enum ByteShuffle {
    static func shuffle(_ b: [UInt8], width w: Int) -> [UInt8] {
        guard w > 1, b.count % w == 0 else { return b }
        let n = b.count / w
        var out = [UInt8](repeating: 0, count: b.count)
        for i in 0..<n { for k in 0..<w { out[k * n + i] = b[i * w + k] } }
        return out
    }

    static func unshuffle(_ b: [UInt8], width w: Int) -> [UInt8] {
        guard w > 1, b.count % w == 0 else { return b }
        let n = b.count / w
        var out = [UInt8](repeating: 0, count: b.count)
        for i in 0..<n { for k in 0..<w { out[i * w + k] = b[k * n + i] } }
        return out
    }
}
