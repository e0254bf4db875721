/// The virtio-blk device we offer: feature bits and the 96-byte config space (virtio 1.x §5.2.4,
/// little-endian), with the values QEMU's vduse-blk export uses.
package struct VirtioBlockConfig: Equatable {
    package enum Feature {
        package static let segMax: UInt64 = 1 << 2
        package static let readOnly: UInt64 = 1 << 5
        package static let blockSize: UInt64 = 1 << 6
        package static let flush: UInt64 = 1 << 9
        package static let topology: UInt64 = 1 << 10
        /// Never offered: VDUSE refuses block devices with CONFIG_WCE (its config space is read-only).
        package static let configWCE: UInt64 = 1 << 11
        package static let multiQueue: UInt64 = 1 << 12
        package static let discard: UInt64 = 1 << 13
        package static let writeZeroes: UInt64 = 1 << 14
        package static let indirectDescriptors: UInt64 = 1 << 28
        package static let eventIndex: UInt64 = 1 << 29
        package static let version1: UInt64 = 1 << 32
        /// Mandatory for every VDUSE device: all addresses are IOVAs.
        package static let accessPlatform: UInt64 = 1 << 33
        package static let ringPacked: UInt64 = 1 << 34
    }

    /// QEMU's VIRTIO_BLK_MAX_DISCARD_SECTORS / VIRTIO_BLK_MAX_WRITE_ZEROES_SECTORS.
    package static let maxDiscardSectors: UInt32 = 32768
    package static let maxWriteZeroesSectors: UInt32 = 32768
    package static let size = 96
    package static let virtioBlockDeviceID: UInt32 = 2

    package var capacitySectors: UInt64
    package var queueSize: UInt16
    package var numQueues: UInt16
    package var logicalBlockSize: UInt32
    package var writable: Bool

    package init(capacityBytes: UInt64, queueSize: UInt16, numQueues: UInt16, logicalBlockSize: UInt32, writable: Bool) {
        capacitySectors = capacityBytes / 512
        self.queueSize = queueSize
        self.numQueues = numQueues
        self.logicalBlockSize = logicalBlockSize
        self.writable = writable
    }

    package var features: UInt64 {
        var f = Feature.version1 | Feature.accessPlatform | Feature.indirectDescriptors | Feature.eventIndex
            | Feature.segMax | Feature.blockSize | Feature.topology | Feature.flush
            | Feature.discard | Feature.writeZeroes
        if numQueues > 1 { f |= Feature.multiQueue }
        if !writable { f |= Feature.readOnly }
        return f
    }

    /// The config space bytes handed to VDUSE_CREATE_DEV.
    package var bytes: [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.size)
        func put<T: FixedWidthInteger>(_ v: T, at offset: Int) {
            withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(offset..<offset + $0.count, with: $0) }
        }
        put(capacitySectors, at: 0)
        put(UInt32(queueSize) - 2, at: 12)                      // seg_max
        put(logicalBlockSize, at: 20)                           // blk_size
        put(UInt16(1), at: 26)                                  // min_io_size (blocks)
        put(UInt32(1), at: 28)                                  // opt_io_size (blocks)
        put(numQueues, at: 34)
        put(Self.maxDiscardSectors, at: 36)
        put(UInt32(1), at: 40)                                  // max_discard_seg
        put(logicalBlockSize / 512, at: 44)                     // discard_sector_alignment
        put(Self.maxWriteZeroesSectors, at: 48)
        put(UInt32(1), at: 52)                                  // max_write_zeroes_seg
        return b
    }
}
