/// CRC-32 (ISO-HDLC, the polynomial of zlib's `crc32`), slice-by-8.
package enum CRC32 {
    static let tables: [[UInt32]] = {
        var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 {
            for s in 1..<8 { t[s][i] = (t[s - 1][i] >> 8) ^ t[0][Int(t[s - 1][i] & 0xFF)] }
        }
        return t
    }()

    /// CRC-32 of bytes, continuing from `crc` (0 to start).
    package static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        let t = tables
        var i = 0
        let n = bytes.count
        t[0].withUnsafeBufferPointer { t0 in
            t[1].withUnsafeBufferPointer { t1 in
                t[2].withUnsafeBufferPointer { t2 in
                    t[3].withUnsafeBufferPointer { t3 in
                        t[4].withUnsafeBufferPointer { t4 in
                            t[5].withUnsafeBufferPointer { t5 in
                                t[6].withUnsafeBufferPointer { t6 in
                                    t[7].withUnsafeBufferPointer { t7 in
                                        while i + 8 <= n {
                                            let lo =
                                                c
                                                ^ (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                                                    << 16 | UInt32(bytes[i + 3]) << 24)
                                            let hi =
                                                UInt32(bytes[i + 4]) | UInt32(bytes[i + 5]) << 8 | UInt32(bytes[i + 6])
                                                << 16 | UInt32(bytes[i + 7]) << 24
                                            c =
                                                t7[Int(lo & 0xFF)] ^ t6[Int((lo >> 8) & 0xFF)]
                                                ^ t5[Int((lo >> 16) & 0xFF)] ^ t4[Int(lo >> 24)]
                                                ^ t3[Int(hi & 0xFF)] ^ t2[Int((hi >> 8) & 0xFF)]
                                                ^ t1[Int((hi >> 16) & 0xFF)] ^ t0[Int(hi >> 24)]
                                            i += 8
                                        }
                                        while i < n {
                                            c = t0[Int((c ^ UInt32(bytes[i])) & 0xFF)] ^ (c >> 8)
                                            i += 1
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return ~c
    }

    /// CRC-32 of a byte array, continuing from `crc` (0 to start).
    package static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }
}
