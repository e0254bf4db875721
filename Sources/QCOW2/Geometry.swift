/// Sizes derived from the header, and the bit layout of table entries.
struct Geometry {
    let clusterBits: Int
    let clusterSize: Int
    let l2Entries: Int
    let refcountBits: Int
    let refcountBlockEntries: UInt64

    init(clusterBits: Int, refcountOrder: Int) {
        self.clusterBits = clusterBits
        clusterSize = 1 << clusterBits
        l2Entries = clusterSize / 8
        refcountBits = 1 << refcountOrder
        refcountBlockEntries = UInt64(clusterSize * 8 / refcountBits)
    }

    static let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00  // bits 9-55 of L1/L2 entries
    static let copied: UInt64 = 1 << 63  // refcount is exactly one: writable in place
    static let compressed: UInt64 = 1 << 62
    static let zero: UInt64 = 1  // v3: the cluster reads as zeros

    func l1Index(_ guest: UInt64) -> Int { Int(guest >> UInt64(clusterBits + clusterBits - 3)) }
    func l2Index(_ guest: UInt64) -> Int { Int((guest >> UInt64(clusterBits)) & UInt64(l2Entries - 1)) }
    func clusterStart(_ offset: UInt64) -> UInt64 { offset & ~UInt64(clusterSize - 1) }
    func clusters(_ bytes: UInt64) -> UInt64 { (bytes + UInt64(clusterSize) - 1) >> UInt64(clusterBits) }
    func l1Entries(forSize size: UInt64) -> Int { Int((clusters(size) + UInt64(l2Entries) - 1) / UInt64(l2Entries)) }

    /// Compressed descriptor: host byte offset in the low bits, then extra 512-byte sectors.
    func compressedExtent(_ entry: UInt64) -> (offset: UInt64, length: Int) {
        let offsetBits = UInt64(62 - (clusterBits - 8))
        let offset = entry & ((1 << offsetBits) - 1)
        let sectors = Int((entry >> offsetBits) & ((1 << UInt64(clusterBits - 8)) - 1)) + 1
        return (offset, sectors * 512 - Int(offset & 511))
    }
}
