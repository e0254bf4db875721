/// Keeping guest writes off the image's own metadata, and what happens when the metadata is
/// inconsistent: the request fails, the image is marked corrupt (the header's corrupt bit, as
/// QEMU does, so `qemu-img check` and the next writable open see it) and no more writes are
/// taken. Reads go on where the image is sound, so data can still be copied out.
extension Qcow2Image {
    /// Runs one public operation; metadata corruption found on the way marks the image corrupt.
    func guarding<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as Qcow2Error {
            if case .corrupt = e { markCorrupt() }
            throw e
        }
    }

    /// Sets the corrupt bit once. A failure to set it is not reported: the request fails anyway,
    /// and this process takes no more writes either way.
    func markCorrupt() {
        guard !readOnly, !markedCorrupt else { return }
        markedCorrupt = true
        header.incompatible |= Header.Incompatible.corrupt
        try? file.write(.be64(header.incompatible), at: UInt64(Header.incompatibleField))
        try? file.sync()
    }

    func refuseIfCorrupt() throws {
        guard !markedCorrupt else {
            throw corrupt("marked corrupt after an earlier error; no more writes until it is repaired (qemu-img check -r all)")
        }
    }

    /// An L2 table we are about to read or change: inside the file and known as an L2 table (so
    /// not the header, the L1 or refcount tables, or any other structure).
    func checkL2Table(_ offset: UInt64, index: Int) throws {
        guard offset < file.end else {
            throw corrupt("L1 entry \(index) points past the end of the file (L2 table at \(offset), file ends at \(file.end))")
        }
        let kind = meta.kind(of: offset >> UInt64(g.clusterBits))
        guard kind == .l2 else {
            throw corrupt("L1 entry \(index) points into the \(kind.map { "\($0)" } ?? "unknown area") at \(offset)")
        }
    }

    /// A data cluster an L2 entry names: inside the file and not metadata.
    func checkDataCluster(_ host: UInt64) throws {
        guard host < file.end else {
            throw corrupt("L2 entry points past the end of the file (data cluster at \(host), file ends at \(file.end))")
        }
        if let (_, kind) = meta.overlap(host) {
            throw corrupt("L2 entry points into the \(kind) at \(host)")
        }
    }

    func checkCompressed(_ offset: UInt64, _ length: Int) throws {
        guard offset < file.end else {
            throw corrupt("compressed cluster at \(offset) starts past the end of the file (\(file.end))")
        }
        let first = offset >> UInt64(g.clusterBits), last = (offset + UInt64(length) - 1) >> UInt64(g.clusterBits)
        if let (c, kind) = meta.overlap(first << UInt64(g.clusterBits), clusters: last - first + 1) {
            throw corrupt("compressed cluster at \(offset) overlaps the \(kind) at \(c << UInt64(g.clusterBits))")
        }
    }
}

/// Records where the metadata is, from the header, L1 and refcount tables and the bitmap
/// directory. `strict` (a writable open): a structure outside the file or two in one cluster
/// refuse the open. Read-only opens keep going; the bad parts answer I/O errors when reached.
func mapMetadata(_ meta: MetadataMap, header h: Header, l1: [UInt64], refcountTable: [UInt64], file: ImageFile,
                 strict: Bool) throws {
    let cs = UInt64(h.clusterSize), end = file.end
    func corrupt(_ what: String) -> Qcow2Error { .corrupt(path: file.path, what: what) }
    func clusters(_ bytes: UInt64) -> UInt64 { max(1, (bytes + cs - 1) / cs) }
    func record(_ kind: MetadataMap.Kind, _ offset: UInt64, _ bytes: UInt64, _ name: String) throws {
        if let old = meta.add(kind, offset / cs * cs, clusters: clusters(bytes + offset % cs)), strict {
            throw corrupt("\(name) at \(offset) overlaps the \(old)")
        }
    }
    meta.add(.header, 0)
    if h.backingFileOffset != 0 {
        meta.add(.header, h.backingFileOffset / cs * cs, clusters: clusters(UInt64(h.backingFileSize) + h.backingFileOffset % cs))
    }
    if !l1.isEmpty { try record(.l1, h.l1TableOffset, UInt64(l1.count) * 8, "the L1 table") }
    try record(.refcountTable, h.refcountTableOffset, UInt64(h.refcountTableClusters) * cs, "the refcount table")
    for (i, e) in refcountTable.enumerated() where e != 0 {
        guard e < end else {
            if strict { throw corrupt("refcount block \(i) at \(e) is past the end of the file (\(end))") }
            continue
        }
        try record(.refcountBlock, e, cs, "refcount block \(i)")
    }
    for (i, e) in l1.enumerated() {
        let offset = e & Geometry.offsetMask
        guard offset != 0 else { continue }
        guard offset < end else {
            if strict { throw corrupt("L1 entry \(i) points past the end of the file (L2 table at \(offset), file ends at \(end))") }
            continue
        }
        try record(.l2, offset, cs, "the L2 table of L1 entry \(i)")
    }
    if h.hasBitmaps { try mapBitmaps(meta, header: h, file: file, strict: strict, record: record) }
}

/// The bitmap directory, each bitmap's table and the clusters it names.
private func mapBitmaps(_ meta: MetadataMap, header h: Header, file: ImageFile, strict: Bool,
                        record: (MetadataMap.Kind, UInt64, UInt64, String) throws -> Void) throws {
    let cs = UInt64(h.clusterSize), end = file.end
    let (dirOffset, dirSize) = h.bitmapDirectory
    guard dirSize > 0 else { return }
    guard dirOffset % cs == 0, dirSize <= 64 << 20, dirOffset < end, dirSize <= end - dirOffset else {
        if strict { throw Qcow2Error.corrupt(path: file.path, what: "bitmap directory at \(dirOffset) of \(dirSize) bytes is outside the file") }
        return
    }
    try record(.bitmapDirectory, dirOffset, dirSize, "the bitmap directory")
    let dir = try file.read(count: Int(dirSize), at: dirOffset)
    var p = 0
    while p + 24 <= dir.count {
        let tableOffset = dir.be64(p), tableSize = UInt64(dir.be32(p + 8))
        let nameSize = Int(dir[p + 16]) << 8 | Int(dir[p + 17]), extra = Int(dir.be32(p + 20))
        p += (24 + extra + nameSize + 7) / 8 * 8
        guard tableSize > 0 else { continue }
        guard tableOffset % cs == 0, tableOffset < end, tableSize * 8 <= end - tableOffset else {
            if strict { throw Qcow2Error.corrupt(path: file.path, what: "bitmap table at \(tableOffset) is outside the file") }
            continue
        }
        try record(.bitmapTable, tableOffset, tableSize * 8, "a bitmap table")
        let table = try file.read(count: Int(tableSize) * 8, at: tableOffset)
        for i in 0..<Int(tableSize) {
            let data = table.be64(i * 8) & Geometry.offsetMask
            if data != 0, data < end, data % cs == 0 { try record(.bitmapData, data, cs, "a bitmap data cluster") }
        }
    }
}
