/// One L2 table in memory, decoded. Shared by reference so updates reach the cached copy.
final class L2Table {
    var entries: [UInt64]
    var lastUse: UInt64 = 0

    init(entries: [UInt64]) { self.entries = entries }
}

/// Least-recently-used L2 tables keyed by their file offset. Tables are written through on
/// every change, so dropping one never loses anything.
final class L2Cache {
    let capacity: Int
    private var tables: [UInt64: L2Table] = [:]
    private var clock: UInt64 = 0

    init(capacity: Int) { self.capacity = max(2, capacity) }

    func lookup(_ offset: UInt64) -> L2Table? {
        guard let t = tables[offset] else { return nil }
        clock += 1
        t.lastUse = clock
        return t
    }

    func insert(_ offset: UInt64, _ table: L2Table) {
        if tables.count >= capacity, let victim = tables.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            tables.removeValue(forKey: victim.key)
        }
        clock += 1
        table.lastUse = clock
        tables[offset] = table
    }
}
