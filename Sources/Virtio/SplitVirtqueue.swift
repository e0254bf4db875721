import CBarriers

/// The device side of one split virtqueue (virtio 1.x §2.7) whose rings live in driver memory.
///
/// Layout (all little-endian): descriptor table of `size` × 16 bytes; available ring
/// {flags u16, idx u16, ring[size] u16, used_event u16}; used ring {flags u16, idx u16,
/// ring[size] {id u32, len u32}, avail_event u16}. With VIRTIO_RING_F_EVENT_IDX the driver says
/// in `used_event` when it wants an interrupt, and we say in `avail_event` when we want a kick.
/// A value owned by one queue engine: its counters change only through its own methods.
package struct SplitVirtqueue {
    package let index: Int
    package let size: UInt16
    package let eventIndex: Bool
    package let descriptors: UnsafeMutableRawPointer
    package let addresses: Addresses
    /// The driver moved `avail->idx` further than the ring holds: it is broken, and we take
    /// nothing more from this queue (QEMU marks such a queue broken too).
    package var broken: Bool { isBroken }
    private var isBroken = false
    private let avail: UnsafeMutableRawPointer
    private let used: UnsafeMutableRawPointer

    private var nextAvail: UInt16
    private var nextUsed: UInt16
    private var published: UInt16
    /// Next available-ring slot we have not consumed yet.
    package var lastAvailIndex: UInt16 { nextAvail }
    /// Next used-ring slot we fill (published to the driver by `publishUsed`).
    package var usedIndex: UInt16 { nextUsed }
    /// `used->idx` as last published; interrupts are decided against it.
    package var publishedUsedIndex: UInt16 { published }

    package struct Addresses: Equatable {
        package var size: UInt16
        package var descriptorTable: UInt64
        package var availRing: UInt64
        package var usedRing: UInt64

        package init(size: UInt16, descriptorTable: UInt64, availRing: UInt64, usedRing: UInt64) {
            self.size = size
            self.descriptorTable = descriptorTable
            self.availRing = availRing
            self.usedRing = usedRing
        }
    }

    package enum SetupError: Error, Equatable {
        case badSize(UInt32)
        case unmappedRing
    }

    /// Maps the three ring areas; fails unless each lies whole in one mapped region.
    package init(index: Int, addresses a: Addresses, eventIndex: Bool, memory: IOVASpace,
         lastAvailIndex: UInt16 = 0, usedIndex: UInt16 = 0) throws(SetupError) {
        let n = Int(a.size)
        guard n > 0, n <= 32768, n & (n - 1) == 0 else { throw .badSize(UInt32(a.size)) }
        guard
            let desc = memory.contiguous(iova: a.descriptorTable, length: 16 * n, writable: false),
            let avail = memory.contiguous(iova: a.availRing, length: 6 + 2 * n, writable: false),
            let used = memory.contiguous(iova: a.usedRing, length: 6 + 8 * n, writable: true)
        else { throw .unmappedRing }
        self.index = index
        self.addresses = a
        self.size = a.size
        self.eventIndex = eventIndex
        self.descriptors = desc
        self.avail = avail
        self.used = used
        self.nextAvail = lastAvailIndex
        self.nextUsed = usedIndex
        self.published = usedIndex
    }

    /// `used->idx` as it is in the ring now (after a crash, ahead of any record of ours).
    package var ringUsedIndex: UInt16 { UInt16(littleEndian: cvduse_load_acquire_u16(usedIdxPointer)) }

    /// The head of the used element at ring position `index` (mod size), as written by us.
    package func usedID(at index: UInt16) -> UInt16 {
        UInt16(truncatingIfNeeded: UInt32(littleEndian: (used + 4 + 8 * Int(index % size)).load(as: UInt32.self)))
    }

    /// After a reattach: the next avail slot to take and the used index the ring shows.
    package mutating func resume(lastAvailIndex: UInt16, usedIndex: UInt16) {
        nextAvail = lastAvailIndex
        nextUsed = usedIndex
        published = usedIndex
    }

    /// After a reconnect: continue from what the driver has seen completed (used->idx).
    package mutating func resumeFromUsedIndex() {
        let used = UInt16(littleEndian: cvduse_load_acquire_u16(usedIdxPointer))
        resume(lastAvailIndex: used, usedIndex: used)
    }

    private var availIdxPointer: UnsafeMutableRawPointer { avail + 2 }
    private var usedEventPointer: UnsafeMutableRawPointer { avail + 4 + 2 * Int(size) }
    private var usedIdxPointer: UnsafeMutableRawPointer { used + 2 }
    private var availEventPointer: UnsafeMutableRawPointer { used + 4 + 8 * Int(size) }

    /// Requests the driver made available and we have not taken yet.
    package var pendingCount: UInt16 {
        UInt16(littleEndian: cvduse_load_acquire_u16(availIdxPointer)) &- nextAvail
    }

    /// Takes the next available descriptor head, if any. The head is not validated here:
    /// the chain walk does that.
    package mutating func takeAvailable() -> UInt16? {
        let pending = pendingCount
        guard pending > 0, !isBroken else { return nil }
        guard pending <= size else {
            // Slots beyond the ring would be read twice: stale heads, served as new requests.
            isBroken = true
            return nil
        }
        let slot = Int(nextAvail % size)
        let head = UInt16(littleEndian: (avail + 4 + 2 * slot).loadUnaligned(as: UInt16.self))
        nextAvail &+= 1
        return head
    }

    /// Asks for a kick when the driver adds the next request, then re-checks the ring so that a
    /// request added meanwhile is not missed. Returns true when requests are pending.
    package func armKick() -> Bool {
        if eventIndex {
            cvduse_store_u16(availEventPointer, nextAvail.littleEndian)
        } else {
            cvduse_store_u16(used, 0)  // used->flags: clear VRING_USED_F_NO_NOTIFY
        }
        cvduse_fence_full()
        return pendingCount > 0 && !isBroken
    }

    /// Fills the next used element; the driver sees it after `publishUsed`.
    package mutating func putUsed(head: UInt16, length: UInt32) {
        let e = used + 4 + 8 * Int(nextUsed % size)
        e.storeBytes(of: UInt32(head).littleEndian, as: UInt32.self)
        e.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
        nextUsed &+= 1
    }

    /// Publishes the used elements filled so far and says whether the driver wants an interrupt
    /// for them (event index: `vring_need_event`; otherwise unless VRING_AVAIL_F_NO_INTERRUPT).
    package mutating func publishUsed() -> Bool {
        let old = published
        let new = nextUsed
        guard old != new else { return false }
        cvduse_store_release_u16(usedIdxPointer, new.littleEndian)
        published = new
        cvduse_fence_full()
        if eventIndex {
            let event = UInt16(littleEndian: cvduse_load_u16(usedEventPointer))
            return (new &- event &- 1) < (new &- old)
        }
        let flags = UInt16(littleEndian: cvduse_load_u16(avail))
        return flags & 1 == 0
    }
}
