/// Which host clusters hold the image's own metadata. Guest data (and copied-on-write clusters)
/// must never be written there: a crafted L2 entry or refcount would otherwise let the guest
/// rewrite the tables that decide where every other write goes.
///
/// Images with internal snapshots are never opened for writing, so their snapshot table and
/// inactive L1/L2 tables need no entry here.
final class MetadataMap {
    enum Kind: UInt8, CustomStringConvertible {
        case header, l1, l2, refcountTable, refcountBlock, bitmapDirectory, bitmapTable, bitmapData

        var description: String {
            switch self {
            case .header: "qcow2 header"
            case .l1: "active L1 table"
            case .l2: "active L2 table"
            case .refcountTable: "refcount table"
            case .refcountBlock: "refcount block"
            case .bitmapDirectory: "bitmap directory"
            case .bitmapTable: "bitmap table"
            case .bitmapData: "bitmap data"
            }
        }
    }

    private var clusters: [UInt64: Kind] = [:]
    let clusterBits: Int

    init(clusterBits: Int) { self.clusterBits = clusterBits }

    func kind(of cluster: UInt64) -> Kind? { clusters[cluster] }

    /// The first metadata cluster among the `count` clusters from byte `offset`, if any.
    func overlap(_ offset: UInt64, clusters count: UInt64 = 1) -> (cluster: UInt64, kind: Kind)? {
        let first = offset >> UInt64(clusterBits)
        for c in first..<(first + count) {
            if let k = clusters[c] { return (c, k) }
        }
        return nil
    }

    /// Records `count` clusters from byte `offset` as `kind`; returns what one of them already
    /// held (two structures in one cluster: the image is corrupt), keeping the first owner.
    @discardableResult
    func add(_ kind: Kind, _ offset: UInt64, clusters count: UInt64 = 1) -> Kind? {
        let first = offset >> UInt64(clusterBits)
        var clash: Kind?
        for c in first..<(first + count) {
            if let old = clusters[c] { clash = clash ?? old } else { clusters[c] = kind }
        }
        return clash
    }

    func remove(_ offset: UInt64, clusters count: UInt64 = 1) {
        let first = offset >> UInt64(clusterBits)
        for c in first..<(first + count) { clusters[c] = nil }
    }
}
