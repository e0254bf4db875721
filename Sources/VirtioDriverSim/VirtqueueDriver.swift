import Foundation
import Glibc
import Virtio

/// A virtio driver in memory, for tests and the request-path benchmark: it lays out a split ring and buffers in one block of
/// "IOVA space", adds descriptor chains the way a driver would (or malformed ones), and reads
/// the used ring back. The device side under test is the real VirtqueueServer.
package final class VirtqueueDriver {
    package static let iovaBase: UInt64 = 0x10_0000
    package let size: UInt16
    package let memory: UnsafeMutableRawPointer
    package let memorySize: Int
    package let space: IOVASpace
    package let descTable: UInt64, availRing: UInt64, usedRing: UInt64
    private var nextFreeDescriptor: UInt16 = 0
    private var availIndex: UInt16 = 0
    private var bump: Int
    private(set) var usedSeen: UInt16 = 0

    package init(size: UInt16 = 64, memorySize: Int = 8 << 20) {
        self.size = size
        self.memorySize = memorySize
        // A shared file mapping, so a fake device can map the same pages again (as VDUSE's
        // bounce buffer is mapped by the kernel and by the server).
        let path = "/dev/shm/vq-driver-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        backingFD = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        precondition(backingFD >= 0)
        unlink(path)
        ftruncate(backingFD, off_t(memorySize))
        memory = mmap(nil, memorySize, PROT_READ | PROT_WRITE, MAP_SHARED, backingFD, 0)!
        space = IOVASpace()
        space.add(IOVASpace.Region(first: Self.iovaBase, last: Self.iovaBase + UInt64(memorySize) - 1,
                                   base: memory, readable: true, writable: true))
        descTable = Self.iovaBase
        availRing = descTable + UInt64(16 * Int(size))
        usedRing = (availRing + UInt64(6 + 2 * Int(size)) + 4095) & ~4095
        bump = Int(usedRing - Self.iovaBase) + 6 + 8 * Int(size) + 4096
    }

    deinit {
        munmap(memory, memorySize)
        close(backingFD)
    }

    /// The fd whose pages hold the driver memory (offset 0 = `iovaBase`).
    package let backingFD: Int32

    package var addresses: SplitVirtqueue.Addresses {
        .init(size: size, descriptorTable: descTable, availRing: availRing, usedRing: usedRing)
    }

    package func pointer(_ iova: UInt64) -> UnsafeMutableRawPointer { memory + Int(iova - Self.iovaBase) }

    /// Allocates `length` bytes of buffer space (IOVA), 512-aligned.
    package func allocate(_ length: Int) -> UInt64 {
        let at = (bump + 511) & ~511
        bump = at + length
        precondition(bump <= memorySize)
        return Self.iovaBase + UInt64(at)
    }

    package func setDescriptor(_ index: UInt16, _ d: VringDescriptor) {
        d.store(to: pointer(descTable), index: Int(index))
    }

    /// Writes a chain into consecutive free descriptors and returns its head (not yet offered).
    package func chain(_ parts: [(iova: UInt64, len: UInt32, write: Bool)]) -> UInt16 {
        let head = nextFreeDescriptor
        for (i, p) in parts.enumerated() {
            let index = nextFreeDescriptor
            nextFreeDescriptor = (nextFreeDescriptor + 1) % size
            let last = i == parts.count - 1
            setDescriptor(index, VringDescriptor(
                addr: p.iova, len: p.len,
                flags: (p.write ? VringDescriptorFlag.write : 0) | (last ? 0 : VringDescriptorFlag.next),
                next: last ? 0 : (index + 1) % size))
        }
        return head
    }

    /// Offers `head` in the available ring.
    package func offer(_ head: UInt16) {
        let ring = pointer(availRing)
        (ring + 4 + 2 * Int(availIndex % size)).storeBytes(of: head.littleEndian, as: UInt16.self)
        availIndex &+= 1
        (ring + 2).storeBytes(of: availIndex.littleEndian, as: UInt16.self)
    }

    package var usedIndex: UInt16 { UInt16(littleEndian: pointer(usedRing + 2).load(as: UInt16.self)) }

    /// Used elements published since the last call.
    package func takeUsed() -> [(id: UInt32, len: UInt32)] {
        var out: [(UInt32, UInt32)] = []
        takeUsed { out.append(($0, $1)) }
        return out
    }

    /// Used elements published since the last call, one by one: no array, so the benchmark's
    /// driver side costs about what a real driver's does.
    package func takeUsed(_ body: (_ id: UInt32, _ len: UInt32) throws -> Void) rethrows {
        while usedSeen != usedIndex {
            let e = pointer(usedRing + 4 + 8 * UInt64(usedSeen % size))
            try body(UInt32(littleEndian: e.load(as: UInt32.self)),
                     UInt32(littleEndian: e.load(fromByteOffset: 4, as: UInt32.self)))
            usedSeen &+= 1
        }
    }

    /// Sets used_event (event index: interrupt when used idx passes it).
    package func setUsedEvent(_ value: UInt16) {
        pointer(availRing + 4 + 2 * UInt64(size)).storeBytes(of: value.littleEndian, as: UInt16.self)
    }

    package var availEvent: UInt16 { UInt16(littleEndian: pointer(usedRing + 4 + 8 * UInt64(size)).load(as: UInt16.self)) }

    // MARK: virtio-blk requests

    package struct Request {
        package var head: UInt16
        package var header: UInt64
        package var data: UInt64
        package var status: UInt64
    }

    /// A well-formed virtio-blk request: header, optional data, status byte.
    /// A virtio-blk request; its data in `segments` descriptors of equal size (the last takes the
    /// rest), as a driver splits a large transfer.
    package func blockRequest(type: UInt32, sector: UInt64, dataLength: Int, deviceWritesData: Bool,
                      fill: UInt8 = 0, segments: Int = 1) -> Request {
        let header = allocate(16)
        pointer(header).storeBytes(of: type.littleEndian, as: UInt32.self)
        pointer(header).storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        pointer(header).storeBytes(of: sector.littleEndian, toByteOffset: 8, as: UInt64.self)
        let data = dataLength > 0 ? allocate(dataLength) : 0
        if dataLength > 0 { pointer(data).initializeMemory(as: UInt8.self, repeating: fill, count: dataLength) }
        let status = allocate(1)
        pointer(status).storeBytes(of: UInt8(0xff), as: UInt8.self)
        var parts: [(UInt64, UInt32, Bool)] = [(header, 16, false)]
        if dataLength > 0 {
            let piece = max(dataLength / max(segments, 1), 1)
            var at = 0
            while at < dataLength {
                let n = at + piece >= dataLength || parts.count == segments ? dataLength - at : piece
                parts.append((data + UInt64(at), UInt32(n), deviceWritesData))
                at += n
            }
        }
        parts.append((status, 1, true))
        return Request(head: chain(parts), header: header, data: data, status: status)
    }

    package func status(of r: Request) -> UInt8 { pointer(r.status).load(as: UInt8.self) }
}
