/// Walking a split-ring descriptor chain (virtio 1.x §2.7.5) into checked pieces of driver memory.
///
/// Everything read from the descriptor table is untrusted: indices, lengths, flags and addresses
/// are validated here, so a malformed chain becomes a `DescriptorChainError`, never an
/// out-of-bounds access or an endless loop.
package enum DescriptorChainError: Error, Equatable {
    case headOutOfRange
    case nextOutOfRange
    /// More descriptors than the table holds: the `next` links form a loop.
    case loop
    case zeroLength
    case badIndirectTable
    /// An indirect descriptor inside an indirect table, or one that also has NEXT set.
    case nestedIndirect
    /// A device-readable descriptor after a device-writable one.
    case readableAfterWritable
    /// An address range outside the mapped IOVA space or without the needed permission.
    case unmapped
    /// More memory pieces than this request may carry.
    case tooManySegments
}

package enum VringDescriptorFlag {
    package static let next: UInt16 = 1
    package static let write: UInt16 = 2
    package static let indirect: UInt16 = 4
}

/// One 16-byte `vring_desc`, little-endian in memory.
package struct VringDescriptor {
    package var addr: UInt64
    package var len: UInt32
    package var flags: UInt16
    package var next: UInt16

    package static let size = 16

    package init(addr: UInt64, len: UInt32, flags: UInt16, next: UInt16) {
        self.addr = addr
        self.len = len
        self.flags = flags
        self.next = next
    }

    package init(table: UnsafeRawPointer, index: Int) {
        let p = table + index * Self.size
        addr = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        len = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        flags = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        next = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
    }

    package func store(to table: UnsafeMutableRawPointer, index: Int) {
        let p = table + index * Self.size
        p.storeBytes(of: addr.littleEndian, as: UInt64.self)
        p.storeBytes(of: len.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        p.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }
}

/// The memory a chain describes: device-readable pieces first, then device-writable ones.
package struct DescriptorChain {
    package var head: UInt16
    package var readable: [MemoryPiece] = []
    package var writable: [MemoryPiece] = []
    /// Total bytes of the device-writable descriptors (what the used element reports).
    package var writableLength: UInt32 = 0

    package init(head: UInt16) {
        self.head = head
        readable.reserveCapacity(4)
        writable.reserveCapacity(4)
    }

    package mutating func reset(head: UInt16) {
        self.head = head
        readable.removeAll(keepingCapacity: true)
        writable.removeAll(keepingCapacity: true)
        writableLength = 0
    }

    /// Walks the chain starting at `head` in a table of `tableSize` descriptors.
    /// `maxSegments` bounds the number of memory pieces (descriptors, plus splits at region ends).
    package mutating func walk(
        head: UInt16, table: UnsafeRawPointer, tableSize: UInt16, memory: IOVASpace, maxSegments: Int
    ) throws(DescriptorChainError) {
        reset(head: head)
        guard head < tableSize else { throw .headOutOfRange }
        let d = VringDescriptor(table: table, index: Int(head))
        if d.flags & VringDescriptorFlag.indirect != 0 {
            guard d.flags & VringDescriptorFlag.next == 0 else { throw .nestedIndirect }
            guard d.len > 0, d.len % UInt32(VringDescriptor.size) == 0,
                d.len / UInt32(VringDescriptor.size) <= UInt32(UInt16.max)
            else { throw .badIndirectTable }
            guard let indirect = memory.contiguous(iova: d.addr, length: Int(d.len), writable: false) else {
                throw .badIndirectTable
            }
            let count = Int(d.len) / VringDescriptor.size
            try walkTable(UnsafeRawPointer(indirect), size: count, start: 0, memory: memory,
                          maxSegments: maxSegments, indirect: true)
            return
        }
        try walkTable(table, size: Int(tableSize), start: Int(head), memory: memory,
                      maxSegments: maxSegments, indirect: false)
    }

    private mutating func walkTable(
        _ table: UnsafeRawPointer, size: Int, start: Int, memory: IOVASpace, maxSegments: Int, indirect: Bool
    ) throws(DescriptorChainError) {
        var index = start
        var visited = 0
        while true {
            visited += 1
            guard visited <= size else { throw .loop }
            let d = VringDescriptor(table: table, index: index)
            if d.flags & VringDescriptorFlag.indirect != 0 {
                // Only the head of a chain in the ring's own table may be indirect (handled by walk).
                throw .nestedIndirect
            }
            guard d.len > 0 else { throw .zeroLength }
            let isWrite = d.flags & VringDescriptorFlag.write != 0
            if isWrite {
                let (sum, overflow) = writableLength.addingReportingOverflow(d.len)
                guard !overflow else { throw .tooManySegments }
                writableLength = sum
                guard memory.gather(iova: d.addr, length: d.len, writable: true, into: &writable) else {
                    throw .unmapped
                }
            } else {
                guard writable.isEmpty else { throw .readableAfterWritable }
                guard memory.gather(iova: d.addr, length: d.len, writable: false, into: &readable) else {
                    throw .unmapped
                }
            }
            guard readable.count + writable.count <= maxSegments else { throw .tooManySegments }
            guard d.flags & VringDescriptorFlag.next != 0 else { return }
            guard Int(d.next) < size else { throw .nextOutOfRange }
            index = Int(d.next)
        }
    }
}
