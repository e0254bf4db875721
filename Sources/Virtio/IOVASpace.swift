/// The device's view of driver memory: ranges of I/O virtual addresses (the only addresses
/// VDUSE ever shows us) mapped into this process. Every access to driver memory goes through
/// `buffer(iova:length:writable:)`, which checks the whole range against the mapped regions
/// before any pointer is handed out.
package final class IOVASpace {
    package struct Region {
        /// First and last IOVA covered (inclusive, as the kernel reports them).
        package let first: UInt64
        package let last: UInt64
        package let base: UnsafeMutableRawPointer
        package let readable: Bool
        package let writable: Bool
        /// Keeps the mapping alive while this region is in use (the mapping unmaps itself when
        /// the last holder lets go); nil for memory the caller owns (tests).
        package let owner: AnyObject?

        package init(first: UInt64, last: UInt64, base: UnsafeMutableRawPointer, readable: Bool, writable: Bool,
                     owner: AnyObject? = nil) {
            self.first = first
            self.last = last
            self.base = base
            self.readable = readable
            self.writable = writable
            self.owner = owner
        }
    }

    /// The mapped regions, behind one pointer like a queue engine's state: this space is used on
    /// its export's iothread only and no method calls out while it changes the array (the
    /// resolver runs before the append), so the run-time exclusivity check a stored property
    /// costs on every lookup (three per request) would guard nothing.
    private let regions: UnsafeMutablePointer<[Region]>
    /// Looks a missing address up (VDUSE_IOTLB_GET_FD + mmap in production).
    private let resolver: ((UInt64) -> Region?)?

    package init(resolver: ((UInt64) -> Region?)? = nil) {
        self.resolver = resolver
        regions = .allocate(capacity: 1)
        regions.initialize(to: [])
    }

    deinit {
        regions.deinitialize(count: 1)
        regions.deallocate()
    }

    package func add(_ region: Region) {
        regions.pointee.append(region)
    }

    private func region(containing iova: UInt64) -> Region? {
        for r in regions.pointee where r.first <= iova && iova <= r.last { return r }
        guard let found = resolver?(iova), found.first <= iova, iova <= found.last else { return nil }
        regions.pointee.append(found)
        return found
    }

    /// A pointer to `length` bytes at `iova` when the whole range lies in one mapped region with
    /// the needed permission; nil otherwise. Used for rings and descriptor tables.
    package func contiguous(iova: UInt64, length: Int, writable: Bool) -> UnsafeMutableRawPointer? {
        guard length > 0, let r = region(containing: iova) else { return nil }
        let (end, overflow) = iova.addingReportingOverflow(UInt64(length - 1))
        guard !overflow, end <= r.last, writable ? r.writable : r.readable else { return nil }
        return r.base + Int(iova - r.first)
    }

    /// Appends the pieces of [iova, iova+length) to `pieces`, split where regions end.
    /// Returns false (appending nothing usable) when any byte is unmapped or lacks the permission.
    package func gather(iova: UInt64, length: UInt32, writable: Bool, into pieces: inout [MemoryPiece]) -> Bool {
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

    /// Forgets every mapping that overlaps [first, last] (unmapped once no request uses it).
    package func unmap(first: UInt64, last: UInt64) {
        regions.pointee.removeAll { r in r.first <= last && first <= r.last }
    }

    package func unmapAll() { unmap(first: 0, last: .max) }
}

/// A piece of driver memory that passed the bounds and permission checks.
package struct MemoryPiece {
    package var base: UnsafeMutableRawPointer
    package var length: Int
    package var writable: Bool
}
