/// The qcow2 header and the header extensions we act on (docs/interop/qcow2.txt in QEMU).
struct Header {
    static let magic: UInt32 = 0x5146_49fb  // "QFI\xfb"

    // Byte offsets of the fields we rewrite in place.
    static let sizeField = 24
    static let l1Fields = 36  // l1_size (4) then l1_table_offset (8): one 12-byte write
    static let refcountFields = 48  // refcount_table_offset (8) then refcount_table_clusters (4)
    static let incompatibleField = 72
    static let autoclearField = 88

    enum Incompatible {
        static let dirty: UInt64 = 1 << 0
        static let corrupt: UInt64 = 1 << 1
        static let externalData: UInt64 = 1 << 2
        static let compressionType: UInt64 = 1 << 3
        static let extendedL2: UInt64 = 1 << 4
    }
    static let lazyRefcounts: UInt64 = 1 << 0  // compatible feature bit

    var version: UInt32
    var backingFileOffset: UInt64
    var backingFileSize: UInt32
    var clusterBits: Int
    var size: UInt64
    var cryptMethod: UInt32
    var l1Size: UInt32
    var l1TableOffset: UInt64
    var refcountTableOffset: UInt64
    var refcountTableClusters: UInt32
    var nbSnapshots: UInt32
    var snapshotsOffset: UInt64
    var incompatible: UInt64 = 0
    var compatible: UInt64 = 0
    var autoclear: UInt64 = 0
    var refcountOrder: Int = 4
    var headerLength: Int = 72
    var compressionType: UInt8 = 0

    var backingFile: String?
    var backingFormat: String?
    /// A bitmaps extension is present: its clusters are referenced from outside L1/L2.
    var hasBitmaps = false
    /// Where the bitmaps extension says its directory is (bytes).
    var bitmapDirectory: (offset: UInt64, size: UInt64) = (0, 0)

    /// Largest L1 or refcount table we load (both are read whole into memory).
    static let maxTableBytes: UInt64 = 32 << 20
    /// (type, bit) -> name from the feature name table, for messages about unknown bits.
    var featureNames: [Int: String] = [:]

    var clusterSize: Int { 1 << clusterBits }

    /// Reads and checks everything that decides whether we can open the image at all.
    static func read(_ file: ImageFile) throws -> Header {
        let path = file.path
        let fileSize = try file.size()
        guard fileSize >= 72 else {
            if fileSize >= 4, try file.read(count: 4, at: 0).be32(0) != magic { throw Qcow2Error.notQcow2(path: path) }
            throw Qcow2Error.truncated(path: path)
        }
        let b = try file.read(count: 104, at: 0)
        guard b.be32(0) == magic else { throw Qcow2Error.notQcow2(path: path) }
        func corrupt(_ what: String) -> Qcow2Error { .corrupt(path: path, what: what) }

        let version = b.be32(4)
        guard version == 2 || version == 3 else {
            throw Qcow2Error.unsupported(path: path, what: "version \(version) (only 2 and 3 exist)")
        }
        let clusterBits = Int(b.be32(20))
        guard (9...21).contains(clusterBits) else {
            throw corrupt("cluster_bits \(clusterBits) is outside 9...21 (512 B to 2 MiB clusters)")
        }
        var h = Header(
            version: version, backingFileOffset: b.be64(8), backingFileSize: b.be32(16),
            clusterBits: clusterBits, size: b.be64(24), cryptMethod: b.be32(32), l1Size: b.be32(36),
            l1TableOffset: b.be64(40), refcountTableOffset: b.be64(48), refcountTableClusters: b.be32(56),
            nbSnapshots: b.be32(60), snapshotsOffset: b.be64(64))
        let cs = UInt64(h.clusterSize)

        if version == 3 {
            guard fileSize >= 104 else { throw Qcow2Error.truncated(path: path) }
            h.incompatible = b.be64(72)
            h.compatible = b.be64(80)
            h.autoclear = b.be64(88)
            h.refcountOrder = Int(b.be32(96))
            h.headerLength = Int(b.be32(100))
            guard h.headerLength >= 104, h.headerLength % 8 == 0, h.headerLength <= h.clusterSize else {
                throw corrupt("header_length \(h.headerLength) must be a multiple of 8 in 104...cluster size")
            }
            guard fileSize >= UInt64(h.headerLength) else { throw Qcow2Error.truncated(path: path) }
            guard h.refcountOrder <= 6 else { throw corrupt("refcount_order \(h.refcountOrder) is above 6") }
            if h.headerLength > 104 {
                h.compressionType = try file.read(count: 1, at: 104)[0]
            }
        }
        try h.readExtensions(file, fileSize: fileSize)
        try h.checkFeatures(path: path)

        guard h.cryptMethod == 0 else {
            throw Qcow2Error.unsupported(path: path, what: "encryption (crypt_method \(h.cryptMethod))")
        }
        guard h.l1TableOffset % cs == 0 else { throw corrupt("L1 table offset \(h.l1TableOffset) is not cluster aligned") }
        guard h.refcountTableOffset % cs == 0, h.refcountTableOffset != 0 else {
            throw corrupt("refcount table offset \(h.refcountTableOffset) is not cluster aligned")
        }
        guard h.nbSnapshots == 0 || h.snapshotsOffset % cs == 0 else {
            throw corrupt("snapshot table offset \(h.snapshotsOffset) is not cluster aligned")
        }
        guard h.refcountTableClusters > 0, h.refcountTableOffset < fileSize else {
            throw corrupt("refcount table starts past the end of the file")
        }
        let refcountTableBytes = UInt64(h.refcountTableClusters) * cs
        guard refcountTableBytes <= Self.maxTableBytes else {
            throw corrupt("refcount table of \(h.refcountTableClusters) clusters is above 32 MiB")
        }
        // Whole clusters: the last one may be cut short by the end of the file.
        guard refcountTableBytes <= (fileSize + cs - 1) / cs * cs - h.refcountTableOffset else {
            throw corrupt("refcount table extends past the end of the file")
        }
        let l2Coverage = cs * cs / 8
        let neededL1 = (h.size + l2Coverage - 1) / l2Coverage
        guard UInt64(h.l1Size) >= neededL1 else {
            throw corrupt("L1 table of \(h.l1Size) entries is too small for \(h.size) bytes")
        }
        guard UInt64(h.l1Size) * 8 <= Self.maxTableBytes else { throw corrupt("L1 table of \(h.l1Size) entries is above 32 MiB") }
        guard h.l1Size == 0 || (h.l1TableOffset <= fileSize && UInt64(h.l1Size) * 8 <= fileSize - h.l1TableOffset) else {
            throw corrupt("L1 table extends past the end of the file")
        }

        if h.backingFileOffset != 0 {
            guard h.backingFileSize > 0, h.backingFileSize <= 1023,
                  h.backingFileOffset <= fileSize, UInt64(h.backingFileSize) <= fileSize - h.backingFileOffset
            else { throw corrupt("backing file name out of bounds") }
            let name = try file.read(count: Int(h.backingFileSize), at: h.backingFileOffset)
            h.backingFile = String(decoding: name, as: UTF8.self)
        }
        return h
    }

    /// Extensions sit between the header and the end of the first cluster.
    private mutating func readExtensions(_ file: ImageFile, fileSize: UInt64) throws {
        let end = min(UInt64(clusterSize), fileSize)
        var offset = UInt64(headerLength)
        guard offset < end else { return }
        let area = try file.read(count: Int(end - offset), at: offset)
        var p = 0
        while p + 8 <= area.count {
            let type = area.be32(p), length = Int(area.be32(p + 4))
            if type == 0 { return }
            guard p + 8 + length <= area.count else {
                throw Qcow2Error.corrupt(path: file.path, what: "header extension 0x\(String(type, radix: 16)) overruns the first cluster")
            }
            let data = Array(area[(p + 8)..<(p + 8 + length)])
            switch type {
            case 0xe279_2aca:
                backingFormat = String(decoding: data, as: UTF8.self)
            case 0x2385_2875:
                hasBitmaps = true
                if data.count >= 24 { bitmapDirectory = (data.be64(16), data.be64(8)) }
            case 0x6803_f857:
                var e = 0
                while e + 48 <= data.count {
                    let name = data[(e + 2)..<(e + 48)].prefix { $0 != 0 }
                    featureNames[Int(data[e]) << 8 | Int(data[e + 1])] = String(decoding: name, as: UTF8.self)
                    e += 48
                }
            default:
                break
            }
            p += 8 + (length + 7) / 8 * 8
            offset += UInt64(8 + length)
        }
    }

    private func checkFeatures(path: String) throws {
        func unsupported(_ what: String) -> Qcow2Error { .unsupported(path: path, what: what) }
        if incompatible & Incompatible.externalData != 0 { throw unsupported("external data file") }
        if incompatible & Incompatible.extendedL2 != 0 { throw unsupported("extended L2 entries (subclusters)") }
        let known = Incompatible.dirty | Incompatible.corrupt | Incompatible.compressionType
        let unknown = incompatible & ~known
        if unknown != 0 {
            let names = (0..<64).filter { unknown >> $0 & 1 != 0 }.map { bit in
                featureNames[bit].map { "'\($0)' (bit \(bit))" } ?? "bit \(bit)"
            }
            throw unsupported("incompatible feature \(names.joined(separator: ", "))")
        }
        if incompatible & Incompatible.compressionType != 0 {
            guard headerLength > 104 else {
                throw Qcow2Error.corrupt(path: path, what: "compression type bit set without a compression_type field")
            }
            guard compressionType == 1 else { throw unsupported("compression type \(compressionType)") }
        } else if compressionType != 0 {
            throw Qcow2Error.corrupt(path: path, what: "compression_type \(compressionType) without the compression type bit")
        }
    }
}
