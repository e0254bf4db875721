import Glibc

extension Qcow2Image {
    /// Creates an empty version 3 image (16-bit refcounts): header and extensions in cluster 0,
    /// refcount table in 1, its one block in 2, then the L1 table. With a backing image the size
    /// defaults to the backing's. Fails if `path` exists. For overlays: one per host over a
    /// shared read-only base.
    public static func create(path: String, size: UInt64? = nil, backing: (path: String, format: ImageFormat)? = nil,
                              clusterSize: Int = 65536) throws {
        guard clusterSize.nonzeroBitCount == 1, (512...(2 << 20)).contains(clusterSize) else {
            throw Qcow2Error.unsupported(path: path, what: "cluster size \(clusterSize) (a power of 2, 512 B to 2 MiB)")
        }
        var virtualSize = size ?? 0
        if size == nil, let backing {
            let b = try openBacking(path: resolveBacking(backing.path, relativeTo: path), format: backing.format,
                                    of: path, chain: [], l2CacheBytes: nil)
            virtualSize = b.virtualSize
            b.closeBacking()
        }
        let g = Geometry(clusterBits: clusterSize.trailingZeroBitCount, refcountOrder: 4)
        let l1Entries = g.l1Entries(forSize: virtualSize)
        let l1Clusters = max(1, (l1Entries * 8 + clusterSize - 1) / clusterSize)
        let used = 3 + l1Clusters
        guard UInt64(used) <= g.refcountBlockEntries else {
            throw Qcow2Error.unsupported(path: path, what: "\(virtualSize) bytes with \(clusterSize)-byte clusters (L1 table too large for one refcount block)")
        }

        var image = [UInt8](repeating: 0, count: used * clusterSize)
        image.putBE32(Header.magic, at: 0)
        image.putBE32(3, at: 4)
        image.putBE32(UInt32(g.clusterBits), at: 20)
        image.putBE64(virtualSize, at: 24)
        image.putBE32(UInt32(l1Entries), at: 36)
        image.putBE64(UInt64(3 * clusterSize), at: 40)
        image.putBE64(UInt64(clusterSize), at: 48)
        image.putBE32(1, at: 56)
        image.putBE32(4, at: 96)  // refcount_order: 16-bit refcounts
        image.putBE32(104, at: 100)
        if let backing {
            let format = Array(backing.format.rawValue.utf8), name = Array(backing.path.utf8)
            var p = 104
            image.putBE32(0xe279_2aca, at: p)
            image.putBE32(UInt32(format.count), at: p + 4)
            image.replaceSubrange((p + 8)..<(p + 8 + format.count), with: format)
            p += 8 + (format.count + 7) / 8 * 8 + 8  // then the end-of-extensions marker (zeros)
            guard name.count <= 1023, p + name.count <= clusterSize else {
                throw Qcow2Error.unsupported(path: path, what: "backing file name of \(name.count) bytes")
            }
            image.replaceSubrange(p..<(p + name.count), with: name)
            image.putBE64(UInt64(p), at: 8)
            image.putBE32(UInt32(name.count), at: 16)
        }
        image.putBE64(UInt64(2 * clusterSize), at: clusterSize)  // refcount table -> block
        for c in 0..<used { image.putBE16(1, at: 2 * clusterSize + 2 * c) }

        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Qcow2Error.io(path: path, operation: "create", errno: errno) }
        Glibc.close(fd)
        do {
            let file = try ImageFile(path: path, writable: true)
            defer { file.close() }
            try file.write(image, at: 0)
            try file.sync()
        } catch {
            unlink(path)
            throw error
        }
    }
}
