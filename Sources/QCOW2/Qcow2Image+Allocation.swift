import Glibc

extension Qcow2Image {
    /// Whether a read of [offset, offset + length) takes any byte from this image or from a qcow2
    /// image of its backing chain above the file `base`, rather than from `base` or below: what a
    /// commit into `base` has to copy.
    public func allocatedAbove(base: String, at offset: UInt64, length: UInt64) throws -> Bool {
        var image: Qcow2Image? = self
        while let img = image, img.path != base {
            var c = img.g.clusterStart(offset)
            while c < offset + length && c < img.virtualSize {
                if try img.mapping(at: c) != .unallocated { return true }
                c += UInt64(img.g.clusterSize)
            }
            image = img.backingPath == base ? nil : img.backing as? Qcow2Image
        }
        return false
    }

    /// The files of the chain that starts at `path`, top first, as the headers name them (each
    /// opened read-only for a moment, without locks: the chain may be in use).
    public static func chain(of path: String) throws -> [String] {
        var files: [String] = []
        var next: String? = path
        while let p = next, files.count < 64 {
            files.append(p)
            guard try ImageFormat.probe(path: p) == .qcow2 else { break }
            let image = try Qcow2Image(path: p, readOnly: true, backing: .none)
            next = image.header.backingFile.map { resolveBacking($0, relativeTo: p) }
            try image.close()
        }
        return files
    }
}

extension Qcow2Image {
    /// The fd of the file `path` in this image's chain (the image itself or a backing file), for
    /// the locks its user keeps on it; nil if the chain has no such file.
    public func descriptor(of path: String) -> Int32? {
        if path == self.path { return file.fd }
        if let q = backing as? Qcow2Image { return q.descriptor(of: path) }
        if backingPath == path, let r = backing as? RawBacking { return r.file.fd }
        return nil
    }
}
