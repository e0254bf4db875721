import CQcow2
import Glibc

/// What one guest cluster maps to, decoded from its L2 entry.
enum Mapping: Equatable {
    case unallocated  // read through to the backing image, or zeros
    case zero(host: UInt64?, copied: Bool)  // reads as zeros; `host` is a preallocated cluster
    case data(host: UInt64, copied: Bool)
    case compressed(entry: UInt64)
}

extension Qcow2Image {
    /// Every entry is checked before use: a compressed extent or cluster inside the file and off
    /// the metadata, so no read or write can reach outside the image or into its tables.
    func decode(_ e: UInt64) throws -> Mapping {
        if e & Geometry.compressed != 0 {
            let (offset, length) = g.compressedExtent(e)
            try checkCompressed(offset, length)
            return .compressed(entry: e)
        }
        let host = e & Geometry.offsetMask
        guard host % UInt64(g.clusterSize) == 0 else { throw corrupt("L2 entry points to unaligned offset \(host)") }
        if host != 0 { try checkDataCluster(host) }
        let copied = e & Geometry.copied != 0
        if header.version >= 3, e & Geometry.zero != 0 { return .zero(host: host == 0 ? nil : host, copied: copied) }
        return host == 0 ? .unallocated : .data(host: host, copied: copied)
    }

    /// The L2 table behind L1 entry `index`, or nil if there is none.
    func l2Table(_ index: Int) throws -> (offset: UInt64, table: L2Table)? {
        let offset = l1[index] & Geometry.offsetMask
        if offset == 0 { return nil }
        if let t = l2Cache.lookup(offset) { return (offset, t) }
        try checkL2Table(offset, index: index)
        let raw = try file.read(count: g.clusterSize, at: offset)
        let t = L2Table(entries: (0..<g.l2Entries).map { raw.be64($0 * 8) })
        try cache(offset, t)
        return (offset, t)
    }

    /// Adds a table to the cache, first writing back changed tables if it is full of them.
    func cache(_ offset: UInt64, _ table: L2Table) throws {
        if l2Cache.isFull, !l2Cache.dirty.isEmpty { try writeBackL2() }
        l2Cache.insert(offset, table)
    }

    /// Writes the changed L2 entries, after a sync has made durable the data and refcounts
    /// they point at (with lazy refcounts, a repair on open covers what the sync would).
    func writeBackL2() throws {
        guard !l2Cache.dirty.isEmpty else { return }
        if refcounts.ordered { try file.sync() }
        for (offset, t) in l2Cache.dirty {
            guard let span = t.dirty else { continue }
            var bytes = [UInt8](repeating: 0, count: span.count * 8)
            for i in span { bytes.putBE64(t.entries[i], at: (i - span.lowerBound) * 8) }
            try file.write(bytes, at: offset + UInt64(span.lowerBound) * 8)
        }
        l2Cache.markClean()
    }

    func entry(at guest: UInt64) throws -> UInt64 {
        guard let (_, t) = try l2Table(g.l1Index(guest)) else { return 0 }
        return t.entries[g.l2Index(guest)]
    }

    func mapping(at guest: UInt64) throws -> Mapping { try decode(entry(at: guest)) }

    /// One whole guest cluster's data, decompressed (the last one is kept: reads of a compressed
    /// cluster usually come in several pieces).
    func decompress(_ entry: UInt64) throws -> [UInt8] {
        if let last = lastDecompressed, last.entry == entry { return last.data }
        let (offset, length) = g.compressedExtent(entry)
        let input = try file.read(count: length, at: offset)
        var out = [UInt8](repeating: 0, count: g.clusterSize)
        let rc = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                header.compressionType == 1
                    ? cc_zstd_decompress(src.baseAddress, src.count, dst.baseAddress, dst.count)
                    : cc_inflate_raw(src.baseAddress, src.count, dst.baseAddress, dst.count)
            }
        }
        // Bad compressed data is damaged guest data, not inconsistent metadata: no corrupt bit.
        guard rc == 0 else { throw Qcow2Error.io(path: path, operation: "decompressing the cluster at \(offset)", errno: EIO) }
        lastDecompressed = (entry, out)
        return out
    }
}
