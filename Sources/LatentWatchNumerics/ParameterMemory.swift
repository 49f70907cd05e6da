import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Immutable model parameters that the scoring kernels stream through on every input (the packed factors), in
/// memory that the kernel can map with 2 MB pages.
///
/// A model of D = 512 and 10 classes holds 5.3 MB of factors: 1,300 pages of 4 KB, about all the second-level TLB
/// of a current x86 core. Scoring one input in a tight loop keeps those translations cached, but a host that does
/// anything between two calls (an interpreter building its result objects, a forward pass) evicts them, and the
/// next call pays a page walk per page: measured from Python, about 15 us per call. Packed into transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`, which Linux honours under its default `madvise` setting) the same factors need
/// three translations.
///
/// Buffers are carved from 2 MB-aligned regions of at least 32 MB of address space, of which only the pages
/// written become resident, so models loaded one after another share huge pages. A region is returned to the
/// system when its last buffer is freed and it is no longer the one being filled. Where huge pages do not apply
/// (not Linux, `mmap` refused, an AddressSanitizer build, whose checks need `malloc`, or the environment variable
/// `LATENTWATCH_HUGE_PAGES=0`), a buffer is a plain 64-byte-aligned allocation.
package final class ParameterBuffer: @unchecked Sendable {
    /// The first byte (64-byte aligned).
    package let base: UnsafeMutableRawPointer
    /// Bytes usable from `base`.
    package let byteCount: Int
    private let region: ParameterRegion?

    /// Zero-filled memory of `byteCount` bytes.
    package init(byteCount: Int) {
        self.byteCount = byteCount
        let (base, region) = ParameterMemory.allocate(byteCount)
        self.base = base
        self.region = region
    }

    deinit {
        if let region {
            region.release()
        } else {
            free(base)
        }
    }

    /// Whether the buffer lies in a region advised for huge pages (the kernel may still back it with 4 KB pages,
    /// for example when transparent huge pages are disabled).
    package var isInHugePageRegion: Bool { region != nil }
}

/// An `mmap`ed, 2 MB-aligned range that buffers are carved from. `users` counts its live buffers, plus one while
/// it is the region being filled.
final class ParameterRegion: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    private let users = Atomic<Int>(1)

    init(base: UnsafeMutableRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    func retain() { users.add(1, ordering: .relaxed) }

    func release() {
        if users.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            #if os(Linux)
            munmap(base, size)
            #endif
        }
    }
}

/// The allocator behind ``ParameterBuffer``: a bump pointer in the current region, under a lock (models are built
/// rarely; scoring never allocates here).
package enum ParameterMemory {
    static let hugePage = 2 << 20
    static let regionSize = 32 << 20
    private static let current = Mutex<(region: ParameterRegion?, used: Int)>((nil, 0))

    /// Whether buffers come from huge-page regions in this process.
    package static let usesHugePageRegions: Bool = {
        #if os(Linux)
        if let v = getenv("LATENTWATCH_HUGE_PAGES"), String(cString: v) == "0" { return false }
        // AddressSanitizer only checks memory it allocated: keep parameters on malloc under it.
        return dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") == nil
        #else
        return false
        #endif
    }()

    static func allocate(_ byteCount: Int) -> (UnsafeMutableRawPointer, ParameterRegion?) {
        let size = max(64, (byteCount + 63) & ~63)
        if usesHugePageRegions {
            let placed = current.withLock { s -> (UnsafeMutableRawPointer, ParameterRegion)? in
                if s.region == nil || s.used + size > s.region!.size {
                    guard let fresh = mapRegion(atLeast: size) else { return nil }
                    s.region?.release()
                    s.region = fresh
                    s.used = 0
                }
                let r = s.region!
                let p = r.base + s.used
                s.used += size
                r.retain()
                return (p, r)
            }
            if let placed { return placed }
        }
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, 64, size) == 0, let p else {
            fatalError("LatentWatch: out of memory allocating \(size) bytes of model parameters")
        }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        return (p, nil)
    }

    /// A fresh, zero-filled, 2 MB-aligned mapping of at least `bytes` (and at least ``regionSize``), advised for
    /// huge pages; nil when the system refuses.
    private static func mapRegion(atLeast bytes: Int) -> ParameterRegion? {
        #if os(Linux)
        let size = max(regionSize, (bytes + hugePage - 1) / hugePage * hugePage)
        let span = size + hugePage
        guard let raw = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            raw != MAP_FAILED
        else { return nil }
        // Trim to a 2 MB-aligned range: huge pages map only aligned 2 MB extents.
        let start = Int(bitPattern: raw)
        let aligned = (start + hugePage - 1) / hugePage * hugePage
        let head = aligned - start
        if head > 0 { munmap(raw, head) }
        let tail = span - head - size
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + size), tail) }
        let base = UnsafeMutableRawPointer(bitPattern: aligned)!
        _ = madvise(base, size, 14)  // MADV_HUGEPAGE; advisory, so a refusal only costs speed
        return ParameterRegion(base: base, size: size)
        #else
        return nil
        #endif
    }
}
