extension Qcow2Image {
    /// Grows the virtual disk. The L1 table moves if it needs more clusters: the new one is
    /// durable before the header points at it, the old one freed after.
    public func resize(to newSize: UInt64) throws {
        guard !readOnly else { throw Qcow2Error.readOnly(path: path) }
        try refuseIfCorrupt()
        try guarding { try grow(to: newSize) }
    }

    private func grow(to newSize: UInt64) throws {
        guard newSize >= virtualSize else {
            throw Qcow2Error.unsupported(path: path, what: "shrinking (from \(virtualSize) to \(newSize) bytes)")
        }
        guard newSize > virtualSize else { return }
        let l2Coverage = UInt64(g.clusterSize) * UInt64(g.l2Entries)
        let entries = newSize / l2Coverage + (newSize % l2Coverage == 0 ? 0 : 1)  // no overflow near 2^64
        guard entries * 8 <= Header.maxTableBytes else {
            throw Qcow2Error.unsupported(path: path, what: "\(newSize) bytes needs an L1 table above 32 MiB")
        }
        let needed = Int(entries)
        if needed > l1.count { try growL1(to: needed) }

        var size = [UInt8](repeating: 0, count: 8)
        size.putBE64(newSize, at: 0)
        try file.write(size, at: UInt64(Header.sizeField))
        try file.sync()
        let oldSize = virtualSize
        virtualSize = newSize
        header.size = newSize
        // A longer backing image must not show through in the new area.
        if let backing, backing.virtualSize > oldSize {
            try writeZeroes(at: oldSize, length: Int(min(newSize, backing.virtualSize) - oldSize), unmap: false)
        }
    }

    private func growL1(to needed: Int) throws {
        let cs = g.clusterSize
        var fields = [UInt8](repeating: 0, count: 12)
        fields.putBE32(UInt32(needed), at: 0)
        if needed <= l1Capacity {
            // Room in the current clusters: zero the new entries before l1_size covers them.
            try file.write([UInt8](repeating: 0, count: (needed - l1.count) * 8),
                           at: header.l1TableOffset + UInt64(l1.count) * 8)
            try file.sync()
            try file.write(Array(fields[0..<4]), at: UInt64(Header.l1Fields))
            try file.sync()
        } else {
            let clusters = (needed * 8 + cs - 1) / cs
            let offset = try refcounts.allocate(count: clusters)
            var table = [UInt8](repeating: 0, count: clusters * cs)
            for (i, e) in l1.enumerated() { table.putBE64(e, at: i * 8) }
            try file.write(table, at: offset)
            try file.sync()
            fields.putBE64(offset, at: 4)
            try file.write(fields, at: UInt64(Header.l1Fields))
            try file.sync()
            let oldOffset = header.l1TableOffset, oldClusters = l1.isEmpty ? 0 : l1Capacity * 8 / cs
            header.l1TableOffset = offset
            l1Capacity = clusters * cs / 8
            meta.add(.l1, offset, clusters: UInt64(clusters))
            if oldOffset != 0, oldClusters > 0 {
                meta.remove(oldOffset, clusters: UInt64(oldClusters))
                try refcounts.free(offset: oldOffset, clusters: oldClusters)
            }
        }
        l1 += [UInt64](repeating: 0, count: needed - l1.count)
        header.l1Size = UInt32(needed)
    }
}
