import Glibc

/// Takes whatever locks the caller keeps on an image file: (fd, path, opened for writing).
/// The locks live as long as the fd (open-file-description locks).
public typealias FileLocker = @Sendable (_ fd: Int32, _ path: String, _ writable: Bool) throws -> Void

/// A qcow2 image opened for I/O. Synchronous and positional; one thread at a time.
///
/// Metadata reaches the file before a request completes (a restarted server must see every
/// completed write); changed L2 entries go in one write-back per request, after one sync. So the image
/// is consistent at every instant (leaks allowed): data and refcounts are durable before an L2
/// entry points at them, and an L2 entry stops pointing at a cluster before its refcount drops.
public final class Qcow2Image {
    public static let defaultL2CacheBytes = 32 << 20

    public let path: String
    public let readOnly: Bool
    public internal(set) var virtualSize: UInt64
    /// The backing file actually opened, if any.
    public let backingPath: String?

    let file: ImageFile
    var header: Header
    let g: Geometry
    var l1: [UInt64]
    /// Entries the clusters holding the L1 table have room for.
    var l1Capacity: Int
    let l2Cache: L2Cache
    let refcounts: Refcounts
    /// Where the metadata lives: guest data never goes there.
    let meta: MetadataMap
    let backing: BackingImage?
    /// Set when lazy refcounts let us mark the image dirty; cleared on close.
    var markedDirty = false
    /// Set when this process found the metadata inconsistent (and set the corrupt bit).
    public internal(set) var markedCorrupt = false
    var lastDecompressed: (entry: UInt64, data: [UInt8])?
    private var closed = false

    /// Opens `path`; every check happens before the first write to any file. `lock` is called
    /// for every file of the chain as soon as it is open (the image itself first, then its
    /// backing files, read-only), before anything is read or written.
    public convenience init(path: String, readOnly: Bool = false, backing: BackingChoice = .fromHeader,
                            l2CacheBytes: Int? = nil, lock: FileLocker? = nil) throws {
        let probe = try ImageFile(path: path, writable: false)
        let id = try probe.identity()
        probe.close()
        try self.init(path: path, readOnly: readOnly, backing: backing, l2CacheBytes: l2CacheBytes,
                      chain: [(path, id)], lock: lock)
    }

    init(path: String, readOnly: Bool, backing choice: BackingChoice, l2CacheBytes: Int?,
         chain: [(String, FileIdentity)], lock: FileLocker? = nil) throws {
        let file = try ImageFile(path: path, writable: !readOnly)
        var opened: BackingImage?
        do {
            try lock?(file.fd, path, !readOnly)
            let h = try Header.read(file)
            if !readOnly {
                if h.incompatible & Header.Incompatible.corrupt != 0 {
                    throw Qcow2Error.corrupt(path: path, what: "the corrupt bit is set; open it read-only or repair it with qemu-img check -r all")
                }
                if h.incompatible & Header.Incompatible.dirty != 0, h.hasBitmaps {
                    throw Qcow2Error.unsupported(path: path, what: "repairing the refcounts of a dirty image with bitmaps: repair it with qemu-img check -r all, or open it read-only")
                }
                if h.nbSnapshots != 0 {
                    throw Qcow2Error.unsupported(path: path, what: "writing to an image with internal snapshots (\(h.nbSnapshots)); open it read-only")
                }
            }
            let g = Geometry(clusterBits: h.clusterBits, refcountOrder: h.refcountOrder)
            let raw = try file.read(count: Int(h.l1Size) * 8, at: h.l1TableOffset)
            l1 = (0..<Int(h.l1Size)).map { raw.be64($0 * 8) }
            for (i, e) in l1.enumerated() where (e & Geometry.offsetMask) % UInt64(g.clusterSize) != 0 {
                throw Qcow2Error.corrupt(path: path, what: "L1 entry \(i) is not cluster aligned")
            }
            let meta = MetadataMap(clusterBits: h.clusterBits)
            let refcounts = try Refcounts(file: file, geometry: g, tableOffset: h.refcountTableOffset,
                                          tableClusters: Int(h.refcountTableClusters), meta: meta)
            try mapMetadata(meta, header: h, l1: l1, refcountTable: refcounts.table, file: file, strict: !readOnly)

            switch choice {
            case .none:
                backingPath = nil
            case let .file(p, format):
                backingPath = p
                opened = try openBacking(path: p, format: format, of: path, chain: chain, l2CacheBytes: l2CacheBytes, lock: lock)
            case .fromHeader:
                if let name = h.backingFile {
                    let p = resolveBacking(name, relativeTo: path)
                    var format: ImageFormat?
                    if let f = h.backingFormat {
                        guard let known = ImageFormat(rawValue: f) else {
                            throw Qcow2Error.unsupported(path: path, what: "backing file format '\(f)' (only raw and qcow2)")
                        }
                        format = known
                    }
                    backingPath = p
                    opened = try openBacking(path: p, format: format, of: path, chain: chain, l2CacheBytes: l2CacheBytes, lock: lock)
                } else {
                    backingPath = nil
                }
            }

            self.path = path
            self.readOnly = readOnly
            self.file = file
            header = h
            self.g = g
            virtualSize = h.size
            l1Capacity = (Int(h.l1Size) * 8 + g.clusterSize - 1) / g.clusterSize * g.clusterSize / 8
            l2Cache = L2Cache(capacity: (l2CacheBytes ?? Self.defaultL2CacheBytes) / g.clusterSize)
            self.refcounts = refcounts
            self.meta = meta
            self.backing = opened

            // A dirty image (lazy refcounts, then a crash) gets its refcounts rebuilt first.
            if !readOnly, h.incompatible & Header.Incompatible.dirty != 0 {
                try repairRefcounts()
                header.incompatible &= ~Header.Incompatible.dirty
                try file.write(.be64(header.incompatible), at: UInt64(Header.incompatibleField))
                try file.sync()
            }
            // Unknown auto-clear features must be cleared before we write (bitmaps we do not keep).
            if !readOnly, h.autoclear != 0 {
                try file.write(.be64(0), at: UInt64(Header.autoclearField))
                try file.sync()
                header.autoclear = 0
            }
        } catch {
            opened?.closeBacking()
            file.close()
            throw error
        }
    }

    deinit {
        if !closed {
            backing?.closeBacking()
            file.close()
        }
    }

    /// Every write and sync this image issues from now on (crash simulation in tests).
    package func observeFile(_ observer: @escaping (FileEvent) -> Void) { file.observer = observer }

    public var version: Int { Int(header.version) }
    public var clusterSize: Int { g.clusterSize }

    /// Makes every completed write durable, data and metadata.
    public func flush() throws {
        guard !readOnly else { return }
        try guarding {
            try writeBackL2()
            try file.sync()
        }
    }

    /// Flushes, clears the dirty bit we set, and closes the whole chain.
    public func close() throws {
        guard !closed else { return }
        defer {
            closed = true
            backing?.closeBacking()
            file.close()
        }
        if !readOnly {
            try writeBackL2()
            try file.sync()
            if markedDirty {
                header.incompatible &= ~Header.Incompatible.dirty
                try file.write(.be64(header.incompatible), at: UInt64(Header.incompatibleField))
                try file.sync()
                markedDirty = false
            }
        }
    }

    /// With lazy refcounts, the first change marks the image dirty; refcount ordering then no
    /// longer needs syncs, since a dirty image gets its refcounts rebuilt before use.
    func prepareWrite() throws {
        guard !readOnly else { throw Qcow2Error.readOnly(path: path) }
        try refuseIfCorrupt()
        guard !markedDirty, header.version >= 3, header.compatible & Header.lazyRefcounts != 0 else { return }
        header.incompatible |= Header.Incompatible.dirty
        try file.write(.be64(header.incompatible), at: UInt64(Header.incompatibleField))
        try file.sync()
        markedDirty = true
        refcounts.ordered = false
    }

    func checkRange(_ offset: UInt64, _ length: Int) throws {
        guard offset <= virtualSize, UInt64(length) <= virtualSize - offset else {
            throw Qcow2Error.outOfRange(offset: offset, length: UInt64(length), size: virtualSize)
        }
    }

    func corrupt(_ what: String) -> Qcow2Error { .corrupt(path: path, what: what) }
}
