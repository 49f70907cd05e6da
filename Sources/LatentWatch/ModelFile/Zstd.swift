import CZstd

/// One-shot zstd compression through libzstd.
enum Zstd {
    static func compress(_ input: [UInt8], level: Int32 = 9) throws(ModelFileError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { o in
            input.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, bound, i.baseAddress, input.count, level) }
        }
        if ZSTD_isError(written) != 0 {
            throw ModelFileError(
                .io,
                "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))",
                remedy: "report this as a bug"
            )
        }
        out.removeSubrange(written...)
        return out
    }

    /// Decompresses one frame that must decode to exactly `expected` bytes.
    static func decompress(_ input: ArraySlice<UInt8>, expected: Int, section: Int) throws(ModelFileError) -> [UInt8] {
        let declared = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, input.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two largest UInt64 values.
        if declared >= UInt64.max - 1 || declared != UInt64(expected) {
            throw ModelFileError(
                .decompressionFailed,
                "section \(section) is not a zstd frame of the declared \(expected) bytes",
                remedy: "the file is damaged; restore it from a good copy or refit"
            )
        }
        var out = [UInt8](repeating: 0, count: expected)
        let got = out.withUnsafeMutableBytes { o in
            input.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, expected, i.baseAddress, input.count) }
        }
        if ZSTD_isError(got) != 0 || got != expected {
            let reason = ZSTD_isError(got) != 0 ? String(cString: ZSTD_getErrorName(got)) : "decoded \(got) bytes"
            throw ModelFileError(
                .decompressionFailed,
                "section \(section) does not decompress: \(reason)",
                remedy: "the file is damaged; restore it from a good copy or refit"
            )
        }
        return out
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
