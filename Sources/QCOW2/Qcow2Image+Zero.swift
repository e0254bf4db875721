import Glibc

extension Qcow2Image {
    enum ZeroMode {
        case discard
        case zero(unmap: Bool)
    }

    /// Gives back whole clusters in the range; partial clusters at either end are left alone
    /// (a discard is a hint). Afterwards they read as zeros (v3) or from the backing image (v2).
    public func discard(at offset: UInt64, length: Int) throws {
        try checkRange(offset, length)
        try prepareWrite()
        let (start, end) = wholeClusters(offset, length)
        if start < end { try guarding { try zeroClusters(start, end, .discard) } }
    }

    /// Makes the range read as zeros: zero flags for whole clusters (v3; `unmap` also frees
    /// their space), zero bytes written for partial ones and for v2.
    public func writeZeroes(at offset: UInt64, length: Int, unmap: Bool) throws {
        try checkRange(offset, length)
        try prepareWrite()
        try guarding { try zeroRange(offset, length, unmap: unmap) }
    }

    private func zeroRange(_ offset: UInt64, _ length: Int, unmap: Bool) throws {
        let (start, end) = wholeClusters(offset, length)
        guard start < end else { return try writeZeroBytes(offset, length) }
        if offset < start { try writeZeroBytes(offset, Int(start - offset)) }
        if header.version >= 3 || (unmap && backing == nil) {
            try zeroClusters(start, end, .zero(unmap: unmap))
        } else {
            try writeZeroBytes(start, Int(min(end, virtualSize) - start))
        }
        let stop = offset + UInt64(length)
        if end < stop { try writeZeroBytes(end, Int(stop - end)) }
    }

    /// The cluster-aligned part of a range; the image's last cluster counts as whole when the
    /// range reaches the end of the image.
    private func wholeClusters(_ offset: UInt64, _ length: Int) -> (UInt64, UInt64) {
        let cs = UInt64(g.clusterSize)
        let start = (offset + cs - 1) / cs * cs
        let stop = offset + UInt64(length)
        let end = stop == virtualSize ? (stop + cs - 1) / cs * cs : stop / cs * cs
        return (start, max(start, end))
    }

    /// Writes zeros through the normal write path, skipping clusters that already read as zeros.
    private func writeZeroBytes(_ offset: UInt64, _ length: Int) throws {
        let zeros = [UInt8](repeating: 0, count: g.clusterSize)
        var pos = offset, left = length
        while left > 0 {
            let n = min(g.clusterSize - Int(pos & UInt64(g.clusterSize - 1)), left)
            if try !readsAsZeros(pos) {
                try zeros.withUnsafeBytes { z in
                    try writeVector(at: pos, IOVector([iovec(iov_base: UnsafeMutableRawPointer(mutating: z.baseAddress), iov_len: n)]), 0, n)
                }
            }
            pos += UInt64(n)
            left -= n
        }
    }

    private func readsAsZeros(_ guest: UInt64) throws -> Bool {
        switch try mapping(at: guest) {
        case .zero: return true
        case .unallocated: return backing == nil || backing!.virtualSize <= g.clusterStart(guest)
        default: return false
        }
    }

    /// Rewrites the L2 entries of whole clusters [start, end) as `mode` says, then frees what
    /// they held (after the new entries are durable).
    func zeroClusters(_ start: UInt64, _ end: UInt64, _ mode: ZeroMode) throws {
        let cs = UInt64(g.clusterSize)
        let l2Span = cs * UInt64(g.l2Entries)
        let v3 = header.version >= 3
        var updates: [L2Update] = []
        var released: [UInt64] = []
        var pos = start
        while pos < end {
            let index = g.l1Index(pos)
            var found = try l2Table(index)
            if found == nil {
                // Nothing allocated here: only a backing image can make these clusters non-zero.
                guard v3, backing != nil else {
                    pos = min(end, (pos / l2Span + 1) * l2Span)
                    continue
                }
                found = try l2TableForWrite(index)
            }
            let (l2, table) = found!
            let tableEnd = min(end, (pos / l2Span + 1) * l2Span)
            while pos < tableEnd {
                let i = g.l2Index(pos)
                let old = table.entries[i]
                let m = try decode(old)
                let new = replacement(m, old, mode, v3: v3)
                if new != old {
                    updates.append(L2Update(table: l2, index: i, entry: new))
                    if new & Geometry.offsetMask == 0, holdsClusters(m) { released.append(old) }
                }
                pos += cs
            }
        }
        try apply(updates)
        try release(released)
    }

    private func replacement(_ m: Mapping, _ old: UInt64, _ mode: ZeroMode, v3: Bool) -> UInt64 {
        guard v3 else { return 0 }  // v2 has no zero flag: unallocated (we get here only without backing or for discard)
        let zero = Geometry.zero
        switch (mode, m) {
        case (_, .unallocated):
            return backing == nil ? old : zero
        case (.discard, .zero(host: nil, _)):
            return old
        case (.discard, _):
            return zero
        case let (.zero(unmap), .zero(host, copied)):
            return unmap && host != nil || !copied ? zero : old
        case let (.zero(unmap), .data(host, copied: true)):
            return unmap ? zero : host | Geometry.copied | zero
        case (.zero, _):
            return zero
        }
    }
}
