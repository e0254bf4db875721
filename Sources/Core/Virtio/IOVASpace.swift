/// The device's view of driver memory: ranges of I/O virtual addresses (the only addresses
/// VDUSE ever shows us) mapped into this process. Every access to driver memory goes through
/// `buffer(iova:length:writable:)`, which checks the whole range against the mapped regions
/// before any pointer is handed out.
final class IOVASpace {
    struct Region {
        /// First and last IOVA covered (inclusive, as the kernel reports them).
        let first: UInt64
        let last: UInt64
        let base: UnsafeMutableRawPointer
        let readable: Bool
        let writable: Bool
        /// Releases the mapping (munmap); nil for memory the caller owns (tests).
        let release: (() -> Void)?
    }

    private var regions: [Region] = []
    /// Looks a missing address up (VDUSE_IOTLB_GET_FD + mmap in production).
    private let resolver: ((UInt64) -> Region?)?

    init(resolver: ((UInt64) -> Region?)? = nil) {
        self.resolver = resolver
    }

    deinit { unmapAll() }

    func add(_ region: Region) {
        regions.append(region)
    }

    private func region(containing iova: UInt64) -> Region? {
        for r in regions where r.first <= iova && iova <= r.last { return r }
        guard let found = resolver?(iova), found.first <= iova, iova <= found.last else { return nil }
        regions.append(found)
        return found
    }

    /// A pointer to `length` bytes at `iova` when the whole range lies in one mapped region with
    /// the needed permission; nil otherwise. Used for rings and descriptor tables.
    func contiguous(iova: UInt64, length: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        guard length > 0, let r = region(containing: iova) else { return nil }
        let (end, overflow) = iova.addingReportingOverflow(UInt64(length - 1))
        guard !overflow, end <= r.last, writable ? r.writable : r.readable else { return nil }
        return r.base + Int(iova - r.first)
    }

    /// Appends the pieces of [iova, iova+length) to `pieces`, split where regions end.
    /// Returns false (appending nothing usable) when any byte is unmapped or lacks the permission.
    func gather(iova: UInt64, length: UInt32, writable: Bool, into pieces: inout [MemoryPiece]) -> Bool {
        guard length > 0 else { return false }
        var cursor = iova
        var remaining = UInt64(length)
        while remaining > 0 {
            guard let r = region(containing: cursor), writable ? r.writable : r.readable else { return false }
            let inRegion = min(remaining, r.last - cursor + 1)  // last >= cursor, so no underflow
            pieces.append(MemoryPiece(base: r.base + Int(cursor - r.first), length: Int(inRegion), writable: writable))
            remaining -= inRegion
            let (next, overflow) = cursor.addingReportingOverflow(inRegion)
            if overflow && remaining > 0 { return false }
            cursor = next
        }
        return true
    }

    /// Drops every mapping that overlaps [first, last].
    func unmap(first: UInt64, last: UInt64) {
        regions.removeAll { r in
            guard r.first <= last && first <= r.last else { return false }
            r.release?()
            return true
        }
    }

    func unmapAll() { unmap(first: 0, last: .max) }
}

/// A piece of driver memory that passed the bounds and permission checks.
struct MemoryPiece {
    var base: UnsafeMutableRawPointer
    var length: Int
    var writable: Bool
}
