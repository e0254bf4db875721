/// The two-level refcount structure: finds free clusters, counts references, grows itself.
///
/// Writes go straight to the file (write-through); the in-memory blocks are a read cache. New
/// metadata is made durable before anything points at it, so a crash leaves at worst leaks.
final class Refcounts {
    let file: ImageFile
    let g: Geometry
    private(set) var table: [UInt64]
    private(set) var tableOffset: UInt64
    private(set) var tableClusters: Int
    private var blocks: [Int: [UInt8]] = [:]
    private let maxCachedBlocks: Int
    /// No free cluster lies below this one.
    private var freeHint: UInt64 = 0
    /// Clusters being handed out as one run; a new refcount block must not land there.
    private var reserved: Range<UInt64> = 0..<0
    /// Clusters in use that the counts do not show yet (during a repair): no block goes there.
    var inUse: (UInt64) -> Bool = { _ in false }
    /// False while the image is marked dirty (lazy refcounts): then ordering syncs are skipped.
    var ordered = true
    /// The image's metadata: a cluster there is never handed out, whatever its count says.
    let meta: MetadataMap

    var maxRefcount: UInt64 { g.refcountBits == 64 ? .max : (1 << UInt64(g.refcountBits)) - 1 }

    init(file: ImageFile, geometry: Geometry, tableOffset: UInt64, tableClusters: Int, meta: MetadataMap) throws {
        self.file = file
        self.meta = meta
        g = geometry
        self.tableOffset = tableOffset
        self.tableClusters = tableClusters
        let raw = try file.read(count: tableClusters * geometry.clusterSize, at: tableOffset)
        table = (0..<(raw.count / 8)).map { raw.be64($0 * 8) }
        maxCachedBlocks = max(8, (16 << 20) / geometry.clusterSize)
        for (i, e) in table.enumerated() where e & 0x1ff != 0 || e % UInt64(g.clusterSize) != 0 {
            throw Qcow2Error.corrupt(path: file.path, what: "refcount table entry \(i) is not cluster aligned")
        }
    }

    // MARK: entries inside a block

    private func entry(_ block: [UInt8], _ i: Int) -> UInt64 {
        let bits = g.refcountBits
        if bits < 8 {
            let bit = i * bits
            return UInt64(block[bit / 8] >> UInt8(bit % 8)) & ((1 << UInt64(bits)) - 1)
        }
        var v: UInt64 = 0
        let bytes = bits / 8
        for k in 0..<bytes { v = v << 8 | UInt64(block[i * bytes + k]) }
        return v
    }

    /// Sets entry `i`; returns the byte range that changed, for the write-through.
    private func setEntry(_ block: inout [UInt8], _ i: Int, _ value: UInt64) -> Range<Int> {
        let bits = g.refcountBits
        if bits < 8 {
            let bit = i * bits, mask = UInt8((1 << bits) - 1) << UInt8(bit % 8)
            block[bit / 8] = block[bit / 8] & ~mask | (UInt8(value) << UInt8(bit % 8)) & mask
            return (bit / 8)..<(bit / 8 + 1)
        }
        let bytes = bits / 8
        for k in 0..<bytes { block[i * bytes + k] = UInt8(truncatingIfNeeded: value >> UInt64(8 * (bytes - 1 - k))) }
        return (i * bytes)..<((i + 1) * bytes)
    }

    private func loadBlock(_ index: Int) throws -> [UInt8]? {
        let offset = table[index] & ~UInt64(0x1ff)
        if offset == 0 { return nil }
        if let b = blocks[index] { return b }
        let b = try file.read(count: g.clusterSize, at: offset)
        if blocks.count >= maxCachedBlocks { blocks.remove(at: blocks.startIndex) }
        blocks[index] = b
        return b
    }

    // MARK: reading and changing counts

    func get(_ cluster: UInt64) throws -> UInt64 {
        let index = Int(cluster / g.refcountBlockEntries)
        guard index < table.count, let block = try loadBlock(index) else { return 0 }
        return entry(block, Int(cluster % g.refcountBlockEntries))
    }

    func set(_ cluster: UInt64, _ value: UInt64) throws {
        guard value <= maxRefcount else {
            throw Qcow2Error.unsupported(path: file.path, what: "refcount above \(maxRefcount) (refcount_bits \(g.refcountBits))")
        }
        let index = Int(cluster / g.refcountBlockEntries)
        guard index < table.count else {
            throw Qcow2Error.corrupt(path: file.path, what: "cluster \(cluster) is beyond the refcount table")
        }
        if try loadBlock(index) == nil { try createBlock(index, avoiding: cluster) }
        let i = Int(cluster % g.refcountBlockEntries)
        let changed = setEntry(&blocks[index]!, i, value)
        try blocks[index]![changed].withUnsafeBytes {
            try file.write($0, at: (table[index] & ~UInt64(0x1ff)) + UInt64(changed.lowerBound))
        }
        if value == 0 { freeHint = min(freeHint, cluster) }
    }

    /// Drops one reference; returns the count left.
    @discardableResult
    func decrement(_ cluster: UInt64) throws -> UInt64 {
        let v = try get(cluster)
        guard v > 0 else {
            throw Qcow2Error.corrupt(path: file.path, what: "freeing cluster \(cluster) whose refcount is already 0")
        }
        try set(cluster, v - 1)
        return v - 1
    }

    /// A missing block describes itself: every cluster in its range is free (no block), so it
    /// takes one of them and counts it, and only then does the table point at it.
    private func createBlock(_ index: Int, avoiding cluster: UInt64) throws {
        let first = UInt64(index) * g.refcountBlockEntries
        var home = first
        while home == cluster || reserved.contains(home) || inUse(home) || meta.kind(of: home) != nil { home += 1 }
        guard home < first + g.refcountBlockEntries else {
            throw Qcow2Error.unsupported(path: file.path, what: "allocation spanning a whole refcount block")
        }
        var block = [UInt8](repeating: 0, count: g.clusterSize)
        _ = setEntry(&block, Int(home - first), 1)
        let offset = home << UInt64(g.clusterBits)
        try file.write(block, at: offset)
        try file.sync()  // even when dirty: a table entry must never point at an unwritten block
        meta.add(.refcountBlock, offset)
        table[index] = offset
        try file.write(.be64(offset), at: tableOffset + UInt64(index) * 8)
        blocks[index] = block
    }

    // MARK: allocation

    /// One free cluster, counted; returns its byte offset.
    func allocate() throws -> UInt64 {
        try allocate(count: 1)
    }

    /// `count` contiguous free clusters, counted; returns the byte offset of the first.
    /// Clusters at or past the end of the file count as free whatever their refcount says, so
    /// counts a crafted image sets far beyond its end cannot make us extend it there.
    func allocate(count: Int) throws -> UInt64 {
        var start = freeHint
        search: while true {
            let eof = (file.end + UInt64(g.clusterSize) - 1) >> UInt64(g.clusterBits)
            for c in start..<(start + UInt64(count)) {
                let index = Int(c / g.refcountBlockEntries)
                if index >= table.count {
                    try growTable(minEntries: index + 1)
                    continue search  // the new table and blocks took clusters; look again
                }
                if let kind = meta.kind(of: c) {
                    if try get(c) == 0 {
                        throw Qcow2Error.corrupt(path: file.path, what: "cluster \(c) holds the \(kind) but its refcount is 0")
                    }
                    start = c + 1
                    continue search
                }
                if c < eof, try get(c) != 0 {
                    start = c + 1
                    continue search
                }
            }
            break
        }
        reserved = start..<(start + UInt64(count))
        defer { reserved = 0..<0 }
        for c in reserved { try set(c, 1) }
        if count == 1 || start == freeHint { freeHint = start + UInt64(count) }
        return start << UInt64(g.clusterBits)
    }

    /// Moves the refcount table to the first uncovered clusters, followed by new blocks that
    /// count the table and themselves. The header switches to it only once it is durable.
    private func growTable(minEntries: Int) throws {
        let cs = g.clusterSize, epb = g.refcountBlockEntries
        let oldCount = table.count
        let areaStart = UInt64(oldCount) * epb
        var wanted = max(minEntries, oldCount * 2)
        var tableClustersNew = 0, newBlocks = 0
        while true {
            tableClustersNew = (wanted * 8 + cs - 1) / cs
            newBlocks = 0
            while true {
                let need = Int((UInt64(newBlocks + tableClustersNew) + epb - 1) / epb)
                if need == newBlocks { break }
                newBlocks = need
            }
            if oldCount + newBlocks <= tableClustersNew * cs / 8 { break }
            wanted = oldCount + newBlocks
        }
        let areaClusters = newBlocks + tableClustersNew
        var blockBytes = [UInt8](repeating: 0, count: newBlocks * cs)
        for k in 0..<UInt64(areaClusters) {
            let c = areaStart + k
            let b = Int(c / epb) - oldCount
            var one = Array(blockBytes[(b * cs)..<((b + 1) * cs)])
            _ = setEntry(&one, Int(c % epb), 1)
            blockBytes.replaceSubrange((b * cs)..<((b + 1) * cs), with: one)
        }
        var newTable = table + [UInt64](repeating: 0, count: tableClustersNew * cs / 8 - oldCount)
        for b in 0..<newBlocks { newTable[oldCount + b] = (areaStart + UInt64(b)) << UInt64(g.clusterBits) }
        var tableBytes = [UInt8](repeating: 0, count: tableClustersNew * cs)
        for (i, e) in newTable.enumerated() { tableBytes.putBE64(e, at: i * 8) }

        let areaOffset = areaStart << UInt64(g.clusterBits)
        if let (c, kind) = meta.overlap(areaOffset, clusters: UInt64(areaClusters)) {
            throw Qcow2Error.corrupt(path: file.path, what: "cluster \(c), past what the refcount table covers, holds the \(kind)")
        }
        try file.write(blockBytes + tableBytes, at: areaOffset)
        try file.sync()
        var header = [UInt8](repeating: 0, count: 12)
        let newTableOffset = areaOffset + UInt64(newBlocks * cs)
        header.putBE64(newTableOffset, at: 0)
        header.putBE32(UInt32(tableClustersNew), at: 8)
        try file.write(header, at: UInt64(Header.refcountFields))
        try file.sync()

        let oldOffset = tableOffset, oldClusters = tableClusters
        meta.add(.refcountBlock, areaOffset, clusters: UInt64(newBlocks))
        meta.add(.refcountTable, newTableOffset, clusters: UInt64(tableClustersNew))
        meta.remove(oldOffset, clusters: UInt64(oldClusters))
        table = newTable
        tableOffset = newTableOffset
        tableClusters = tableClustersNew
        for b in 0..<newBlocks { blocks[oldCount + b] = Array(blockBytes[(b * cs)..<((b + 1) * cs)]) }
        for k in 0..<UInt64(oldClusters) { try decrement((oldOffset >> UInt64(g.clusterBits)) + k) }
    }

    /// Frees `count` clusters starting at byte `offset` (a table that was replaced).
    func free(offset: UInt64, clusters count: Int) throws {
        for k in 0..<UInt64(count) { try decrement((offset >> UInt64(g.clusterBits)) + k) }
    }
}
