import CVDUSE
import Glibc
import Logging

/// Serves one virtqueue of a virtio-blk export on its iothread: takes requests from the ring,
/// submits their I/O to an io_uring without waiting for it (up to a full ring of requests in
/// flight), and completes them as the io_uring reports, batching interrupts per round.
final class VirtqueueServer {
    let queue: SplitVirtqueue
    let kick: EventFD
    private let ring: IOUring
    private let backend: Backend
    /// Capacity can change at run time (resize); everything else is fixed.
    var geometry: BlockExportGeometry
    private let memory: IOVASpace
    private let interrupt: () -> Void
    private let logger: Logger
    /// Upper bound on memory pieces per request: seg_max data segments plus header and status,
    /// with room for pieces split where IOVA regions end.
    private let maxSegments: Int

    /// Largest transfer done inline on a memory-backed image (bigger copies go to io_uring,
    /// whose workers spread them over CPUs).
    static let inlineTransferLimit = 128 * 1024

    /// In-flight state, indexed by descriptor head (unique while the driver waits for it).
    private struct Slot {
        enum Operation {
            case idle
            case read, write, flush, punchHole, zeroRange
        }
        var operation = Operation.idle
        var iov: UnsafeMutablePointer<iovec>?
        var iovCapacity = 0
        var iovCount = 0
        var offset: UInt64 = 0
        var length: UInt64 = 0
        var status: UnsafeMutablePointer<UInt8>?
        var usedLength: UInt32 = 0
    }
    private var slots: [Slot]
    private(set) var inFlight = 0
    private var chain = DescriptorChain(head: 0)
    private var request = BlockRequest()
    /// Malformed chains seen (logged, answered or returned, never fatal).
    private(set) var malformedChains = 0

    init(queue: SplitVirtqueue, backend: Backend, geometry: BlockExportGeometry, memory: IOVASpace,
         logger: Logger, interrupt: @escaping () -> Void) throws(SystemError) {
        self.queue = queue
        self.backend = backend
        self.geometry = geometry
        self.memory = memory
        self.logger = logger
        self.interrupt = interrupt
        kick = try EventFD()
        ring = try IOUring(entries: UInt32(queue.size))
        slots = Array(repeating: Slot(), count: Int(queue.size))
        maxSegments = 2 * Int(queue.size) + 4
    }

    deinit {
        for slot in slots { slot.iov?.deallocate() }
    }

    var completionFD: Int32 { ring.completions.fd }

    /// The driver kicked: take everything available.
    func onKick() {
        kick.drain()
        processAvailable()
    }

    /// io_uring finished some requests.
    func onCompletions() {
        ring.completions.drain()
        ring.reap { tag, result in complete(head: Int(tag), result: result) }
        finishRound()
    }

    /// Takes requests until the ring is empty and a kick is armed, then submits and completes.
    func processAvailable() {
        repeat {
            while let head = queue.takeAvailable() { start(head: head) }
        } while queue.armKick()
        do {
            try ring.submit()
        } catch {
            logger.error("queue \(queue.index): \(error)")
        }
        finishRound()
    }

    private func finishRound() {
        if queue.publishUsed() { interrupt() }
    }

    private func answer(head: UInt16, status: BlockStatus, into pointer: UnsafeMutablePointer<UInt8>?, used: UInt32) {
        pointer?.pointee = status.rawValue
        queue.putUsed(head: head, length: used)
    }

    private func start(head: UInt16) {
        if Int(head) < slots.count && slots[Int(head)].operation != .idle {
            // The driver offered a head that is still in flight: ignore the duplicate.
            noteMalformed(head, "descriptor head already in flight")
            return
        }
        do {
            try chain.walk(head: head, table: queue.descriptors, tableSize: queue.size, memory: memory,
                           maxSegments: maxSegments)
        } catch {
            noteMalformed(head, "\(error)")
            // Give the head back (without data) so the driver is not left waiting; a head
            // outside the table cannot be given back.
            if error != .headOutOfRange { queue.putUsed(head: head, length: 0) }
            return
        }
        do {
            try request.frame(chain)
        } catch {
            noteMalformed(head, "\(error)")
            answer(head: head, status: .ioError, into: request.status, used: request.usedLength)
            return
        }
        let action = request.action(for: geometry)
        if case let .complete(status) = action {
            answer(head: head, status: status, into: request.status, used: request.usedLength)
            return
        }
        if backend.kind == .null {
            // null-co: reads return zeros, everything else succeeds at once.
            if case .read = action {
                for piece in request.data { piece.base.initializeMemory(as: UInt8.self, repeating: 0, count: piece.length) }
            }
            answer(head: head, status: .ok, into: request.status, used: request.usedLength)
            return
        }
        var slot = slots[Int(head)]
        slot.status = request.status
        slot.usedLength = request.usedLength
        let tag = UInt64(head)
        do {
            switch action {
            case let .read(offset, length), let .write(offset, length):
                let isRead = if case .read = action { true } else { false }
                fillIOVec(&slot)
                if backend.memoryBacked && length <= Self.inlineTransferLimit {
                    let status = backend.finishTransfer(write: !isRead, iov: slot.iov!, count: slot.iovCount,
                                                        offset: offset, done: 0, total: length)
                    slots[Int(head)] = slot
                    answer(head: head, status: status, into: slot.status, used: slot.usedLength)
                    return
                }
                slot.operation = isRead ? .read : .write
                slot.offset = offset
                slot.length = UInt64(length)
                let iov = UnsafePointer(slot.iov!)
                try ring.prepare(isRead ? .readv(fd: backend.fd, iov: iov, count: slot.iovCount, offset: offset)
                                        : .writev(fd: backend.fd, iov: iov, count: slot.iovCount, offset: offset), tag: tag)
            case .flush:
                slot.operation = .flush
                try ring.prepare(.fdatasync(fd: backend.fd), tag: tag)
            case let .discard(offset, length), let .writeZeroes(offset, length, _):
                let isDiscard = if case .discard = action { true } else { false }
                if backend.kind == .blockDevice {
                    // BLKDISCARD / BLKZEROOUT: synchronous ioctls (rare requests).
                    answer(head: head, status: backend.blockDeviceRange(discard: isDiscard, offset: offset, length: length),
                           into: slot.status, used: slot.usedLength)
                    return
                }
                // A regular file: discard and write-zeroes-with-unmap punch a hole; plain
                // write-zeroes zeroes the range in place (keeping it allocated).
                let punch = isDiscard || action == .writeZeroes(offset: offset, length: length, unmap: true)
                slot.operation = punch ? .punchHole : .zeroRange
                slot.offset = offset
                slot.length = length
                let mode = (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE
                try ring.prepare(.fallocate(fd: backend.fd, mode: mode, offset: offset, length: length), tag: tag)
            case .complete:
                return  // answered above
            }
        } catch {
            logger.error("queue \(queue.index): \(error)")
            slot.operation = .idle
            slots[Int(head)] = slot
            answer(head: head, status: .ioError, into: slot.status, used: slot.usedLength)
            return
        }
        slots[Int(head)] = slot
        inFlight += 1
    }

    /// Copies the request's data pieces into the slot's iovec array (kept until completion).
    private func fillIOVec(_ slot: inout Slot) {
        let count = request.data.count
        if slot.iovCapacity < count {
            slot.iov?.deallocate()
            let capacity = max(count, 16)
            slot.iov = .allocate(capacity: capacity)
            slot.iovCapacity = capacity
        }
        for (i, piece) in request.data.enumerated() {
            slot.iov![i] = iovec(iov_base: piece.base, iov_len: piece.length)
        }
        slot.iovCount = count
    }

    private func complete(head: Int, result: Int32) {
        guard head < slots.count, slots[head].operation != .idle else {
            logger.error("queue \(queue.index): completion for unknown request \(head)")
            return
        }
        var slot = slots[head]
        let status: BlockStatus
        switch slot.operation {
        case .idle:
            return
        case .read, .write:
            if result < 0 {
                status = .ioError
            } else if UInt64(result) == slot.length {
                status = .ok
            } else {
                status = backend.finishTransfer(write: slot.operation == .write, iov: slot.iov!, count: slot.iovCount,
                                                offset: slot.offset, done: Int(result), total: Int(slot.length))
            }
        case .zeroRange where result == -EOPNOTSUPP || result == -EINVAL:
            // The file system cannot zero a range in place (tmpfs): punching reads back zeros too.
            slot.operation = .punchHole
            slots[head] = slot
            do {
                try ring.prepare(.fallocate(fd: backend.fd, mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                            offset: slot.offset, length: slot.length), tag: UInt64(head))
                try ring.submit()
                return
            } catch {
                status = .ioError
            }
        case .flush, .punchHole, .zeroRange:
            status = result == 0 ? .ok : .ioError
        }
        slot.operation = .idle
        slots[head] = slot
        inFlight -= 1
        answer(head: UInt16(head), status: status, into: slot.status, used: slot.usedLength)
    }

    /// Waits for every submitted request without touching the rings (they may be gone after a
    /// device reset). Used before the queue is dropped.
    func abandonInFlight() {
        while inFlight > 0 {
            guard let done = try? ring.wait() else { break }
            if Int(done.tag) < slots.count, slots[Int(done.tag)].operation != .idle {
                slots[Int(done.tag)].operation = .idle
                inFlight -= 1
            }
        }
    }

    private func noteMalformed(_ head: UInt16, _ what: String) {
        malformedChains += 1
        if malformedChains <= 10 {
            logger.warning("queue \(queue.index): malformed request at head \(head): \(what)")
        }
    }
}
