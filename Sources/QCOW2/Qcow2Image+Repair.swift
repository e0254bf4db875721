extension Qcow2Image {
    /// Rebuilds the refcounts of an image left dirty by lazy refcounts: counts every reference
    /// the metadata makes, raises stored counts that are too low (sync), then lowers those that
    /// are too high (leaks), so a cluster in use is never counted free, even mid-repair.
    /// Images with internal snapshots never get here (they are refused for writing).
    func repairRefcounts() throws {
        let cs = UInt64(g.clusterSize), bits = UInt64(g.clusterBits)
        var counts: [UInt64: UInt64] = [:]
        func reference(_ offset: UInt64, _ bytes: UInt64) {
            guard bytes > 0 else { return }
            for c in (offset >> bits)...((offset + bytes - 1) >> bits) { counts[c, default: 0] += 1 }
        }
        reference(0, cs)
        reference(header.l1TableOffset, UInt64(l1.count) * 8)
        reference(refcounts.tableOffset, UInt64(refcounts.tableClusters) * cs)
        for e in refcounts.table where e != 0 { reference(e & ~UInt64(0x1ff), cs) }
        for (index, l1Entry) in l1.enumerated() {
            let l2 = l1Entry & Geometry.offsetMask
            guard l2 != 0 else { continue }
            try checkL2Table(l2, index: index)
            reference(l2, cs)
            let raw = try file.read(count: g.clusterSize, at: l2)
            for i in 0..<g.l2Entries {
                let e = raw.be64(i * 8)
                let host = e & Geometry.offsetMask
                if e & Geometry.compressed != 0 {
                    let (offset, length) = g.compressedExtent(e)
                    try checkCompressed(offset, length)
                    reference(offset & ~511, UInt64(length) + (offset & 511))
                } else if host != 0, host >= file.end {
                    // Without ordering, an L2 entry may have reached the disk before the data
                    // that extends the file. That data was never flushed and the cluster reads
                    // as zeros now: say so with the zero flag (v3, as lazy refcounts are)
                    // instead of growing the file to wherever the entry points.
                    try file.write(.be64(Geometry.zero), at: l2 + UInt64(i) * 8)
                } else if host != 0 {
                    try checkDataCluster(host)
                    reference(host, cs)
                }
            }
        }
        refcounts.inUse = { counts[$0] != nil }
        defer { refcounts.inUse = { _ in false } }
        for (c, n) in counts.sorted(by: { $0.key < $1.key }) where try refcounts.get(c) < n {
            try refcounts.set(c, n)
        }
        try file.sync()
        // Blocks made while raising counts are references too.
        for e in refcounts.table where e != 0 { counts[e >> bits] = max(counts[e >> bits] ?? 0, 1) }
        let limit = max((try file.size() + cs - 1) >> bits, (counts.keys.max() ?? 0) + 1)
        let covered = UInt64(refcounts.table.count) * g.refcountBlockEntries
        for c in 0..<min(limit, covered) {
            let want = counts[c] ?? 0
            if try refcounts.get(c) > want { try refcounts.set(c, want) }
        }
        try file.sync()
    }
}
