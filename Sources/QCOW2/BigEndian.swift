// qcow2 stores every number big-endian; these read and write them in byte arrays.
extension Array where Element == UInt8 {
    func be64(_ at: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(self[at + i]) }
        return v
    }

    func be32(_ at: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(self[at + i]) }
        return v
    }

    mutating func putBE64(_ v: UInt64, at: Int) {
        for i in 0..<8 { self[at + i] = UInt8(truncatingIfNeeded: v >> (56 - 8 * i)) }
    }

    mutating func putBE32(_ v: UInt32, at: Int) {
        for i in 0..<4 { self[at + i] = UInt8(truncatingIfNeeded: v >> (24 - 8 * i)) }
    }

    mutating func putBE16(_ v: UInt16, at: Int) {
        self[at] = UInt8(v >> 8)
        self[at + 1] = UInt8(truncatingIfNeeded: v)
    }

    static func be64(_ v: UInt64) -> [UInt8] {
        var a = [UInt8](repeating: 0, count: 8)
        a.putBE64(v, at: 0)
        return a
    }
}
