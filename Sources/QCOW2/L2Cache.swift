/// One L2 table in memory, decoded. Shared by reference so updates reach the cached copy.
final class L2Table {
    var entries: [UInt64]
    var lastUse: UInt64 = 0
    /// Entries changed in memory and not written yet.
    var dirty: ClosedRange<Int>?

    init(entries: [UInt64]) { self.entries = entries }

    func set(_ index: Int, _ entry: UInt64) {
        entries[index] = entry
        dirty = dirty.map { min($0.lowerBound, index)...max($0.upperBound, index) } ?? index...index
    }
}

/// Least-recently-used L2 tables keyed by their file offset. Changed tables stay until they are
/// written back (the image writes them back before the cache must drop one).
final class L2Cache {
    let capacity: Int
    private var tables: [UInt64: L2Table] = [:]
    private var clock: UInt64 = 0
    private(set) var dirty: [UInt64: L2Table] = [:]

    init(capacity: Int) { self.capacity = max(2, capacity) }

    var isFull: Bool { tables.count >= capacity }

    func lookup(_ offset: UInt64) -> L2Table? {
        guard let t = tables[offset] else { return nil }
        clock += 1
        t.lastUse = clock
        return t
    }

    func insert(_ offset: UInt64, _ table: L2Table) {
        if isFull, let victim = tables.filter({ $0.value.dirty == nil }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
            tables.removeValue(forKey: victim.key)
        }
        clock += 1
        table.lastUse = clock
        tables[offset] = table
    }

    func markDirty(_ offset: UInt64, _ table: L2Table) { dirty[offset] = table }

    func markClean() {
        for t in dirty.values { t.dirty = nil }
        dirty.removeAll()
    }
}
