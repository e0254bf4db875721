import Glibc

/// An L2 entry to change once the data it will point at is durable.
struct L2Update {
    let table: UInt64
    let index: Int
    let entry: UInt64
}

extension Qcow2Image {
    public func write(at offset: UInt64, from buffers: [UnsafeRawBufferPointer]) throws {
        let iov = IOVector(buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) })
        try checkRange(offset, iov.count)
        try prepareWrite()
        try guarding { try writeVector(at: offset, iov, 0, iov.count) }
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        try write(at: offset, from: [buffer])
    }

    /// Writes in place where a cluster is ours alone; elsewhere allocates a cluster, fills it
    /// (old content around a partial write), and only after a sync points the L2 entry at it.
    func writeVector(at offset: UInt64, _ iov: IOVector, _ ioOffset: Int, _ length: Int) throws {
        var updates: [L2Update] = []
        var released: [UInt64] = []
        var pos = offset, done = 0
        while done < length {
            let inCluster = Int(pos & UInt64(g.clusterSize - 1))
            let n = min(g.clusterSize - inCluster, length - done)
            let io = ioOffset + done
            let (l2, table) = try l2TableForWrite(g.l1Index(pos))
            let index = g.l2Index(pos)
            let old = table.entries[index]
            let m = try decode(old)
            switch m {
            case let .data(host, copied: true):
                var pieces = iov.slice(io, n)
                try file.writev(&pieces, at: host + UInt64(inCluster))
            case let .zero(host?, copied: true):
                // Preallocated zero cluster: ours to fill, zeros around the new bytes.
                try writeCluster(host, base: m, guest: pos - UInt64(inCluster), inCluster, iov, io, n)
                updates.append(L2Update(table: l2, index: index, entry: host | Geometry.copied))
            default:
                let host = try refcounts.allocate()
                try writeCluster(host, base: m, guest: pos - UInt64(inCluster), inCluster, iov, io, n)
                updates.append(L2Update(table: l2, index: index, entry: host | Geometry.copied))
                if holdsClusters(m) { released.append(old) }
            }
            pos += UInt64(n)
            done += n
        }
        try apply(updates)
        try release(released)
    }

    /// Writes one whole new cluster at `host`: the guest bytes it had (`base`) with the new ones on top.
    private func writeCluster(_ host: UInt64, base: Mapping, guest: UInt64, _ inCluster: Int,
                              _ iov: IOVector, _ io: Int, _ n: Int) throws {
        if n == g.clusterSize {
            var pieces = iov.slice(io, n)
            try file.writev(&pieces, at: host)
            return
        }
        var buf = try content(of: base, guest: guest)
        buf.withUnsafeMutableBytes { iov.copyOut($0.baseAddress! + inCluster, io, n) }
        try file.write(buf, at: host)
    }

    /// What a guest cluster reads as now, whole.
    func content(of m: Mapping, guest: UInt64) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: g.clusterSize)
        switch m {
        case .zero:
            break
        case .unallocated:
            if let backing {
                try buf.withUnsafeMutableBytes { b in
                    try backing.read(at: guest, into: IOVector([iovec(iov_base: b.baseAddress, iov_len: b.count)]), 0, b.count)
                }
            }
        case let .data(host, _):
            buf = try file.read(count: g.clusterSize, at: host)
        case let .compressed(entry):
            buf = try decompress(entry)
        }
        return buf
    }

    /// The L2 table for L1 entry `index`, made (empty, durable, counted) if there is none yet.
    func l2TableForWrite(_ index: Int) throws -> (offset: UInt64, table: L2Table) {
        if let t = try l2Table(index) { return t }
        let offset = try refcounts.allocate()
        try file.write([UInt8](repeating: 0, count: g.clusterSize), at: offset)
        try file.sync()
        meta.add(.l2, offset)
        l1[index] = offset | Geometry.copied
        try file.write(.be64(l1[index]), at: header.l1TableOffset + UInt64(index) * 8)
        let t = L2Table(entries: [UInt64](repeating: 0, count: g.l2Entries))
        try cache(offset, t)
        return (offset, t)
    }

    /// Changes the cached tables and writes them back before the request completes: a server
    /// restarted under a running guest must find every completed write in the file (so one
    /// sync per allocating request; with lazy refcounts, none).
    func apply(_ updates: [L2Update]) throws {
        for u in updates {
            let table: L2Table
            if let t = l2Cache.lookup(u.table) {
                table = t
            } else {
                let raw = try file.read(count: g.clusterSize, at: u.table)
                table = L2Table(entries: (0..<g.l2Entries).map { raw.be64($0 * 8) })
                try cache(u.table, table)
            }
            table.set(u.index, u.entry)
            l2Cache.markDirty(u.table, table)
        }
        try writeBackL2()
    }

    /// Whether replacing this mapping drops a reference to host clusters.
    func holdsClusters(_ m: Mapping) -> Bool {
        switch m {
        case .unallocated, .zero(host: nil, _): return false
        default: return true
        }
    }

    /// Drops the references old L2 entries held, once the new entries are durable: a refcount
    /// must never reach zero while a durable L2 entry still points at the cluster.
    func release(_ entries: [UInt64]) throws {
        guard !entries.isEmpty else { return }
        try writeBackL2()
        try file.sync()
        for e in entries {
            if e & Geometry.compressed != 0 {
                let (offset, length) = g.compressedExtent(e)
                let first = (offset & ~511) >> UInt64(g.clusterBits)
                let last = ((offset & ~511) + UInt64((length + Int(offset & 511)) - 1)) >> UInt64(g.clusterBits)
                for c in first...last { try refcounts.decrement(c) }
            } else {
                let host = e & Geometry.offsetMask
                guard host != 0 else { continue }
                if try refcounts.decrement(host >> UInt64(g.clusterBits)) == 0 {
                    file.punchHole(at: host, length: g.clusterSize)
                }
            }
        }
    }
}
