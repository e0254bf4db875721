import BlockBackends
import Glibc
import Kernel
import Logging
import Virtio

/// The hot state of one virtqueue as one owned value: the ring's indices, the scratch chain and
/// request, the request slots. Only its `VirtqueueServer` reaches it (through one pointer, on the
/// queue's iothread), and nothing calls back into it while a method runs: the backend answers
/// `submit` with `.done` or `.pending` and hands later completions over in `reap`. So Swift can
/// check exclusive access statically instead of at run time on every request.
struct QueueEngine: ~Copyable {
    private(set) var ring: SplitVirtqueue
    /// Replaced only with the queue drained (`replaceBackend`: a live snapshot, commit or mirror).
    private(set) var backend: any BackendQueue
    /// Capacity can change at run time (resize); everything else is fixed.
    var geometry: BlockExportGeometry
    /// Driver memory; requests in flight point into it.
    let memory: IOVASpace
    /// Upper bound on memory pieces per request: seg_max data segments plus header and status,
    /// with room for pieces split where IOVA regions end.
    private let maxSegments: Int
    private var slots: RequestSlots
    private var chain = DescriptorChain(head: 0)
    private var request = BlockRequest()
    /// Reaped from the backend, kept to reuse its storage.
    private var completions: [Completion] = []
    /// Malformed chains seen (logged, answered or returned, never fatal).
    private(set) var malformedChains = 0
    /// This queue's part of the reconnect log (nil: no log, e.g. in unit tests).
    let log: QueueLog?
    let stats: QueueStats
    private let logger: Logger

    init(ring: SplitVirtqueue, backend: any BackendQueue, geometry: BlockExportGeometry, memory: IOVASpace,
         log: QueueLog?, stats: QueueStats, logger: Logger) {
        self.ring = ring
        self.backend = backend
        self.geometry = geometry
        self.memory = memory
        self.log = log
        self.stats = stats
        self.logger = logger
        maxSegments = 2 * Int(ring.size) + 4
        slots = RequestSlots(count: Int(ring.size))
        completions.reserveCapacity(Int(ring.size))
    }

    var inFlight: Int { slots.busy }

    /// Takes requests until the ring is empty and a kick is armed, hands the batch to the
    /// backend, and collects what it finished meanwhile.
    mutating func serveAvailable() {
        repeat {
            while let head = ring.takeAvailable() {
                log?.taken(head)
                start(head: head)
            }
            TestCrash.checkpoint()
        } while ring.armKick()
        backend.commit()
        reap()
    }

    /// Puts everything the backend finished in the used ring.
    mutating func reap() {
        backend.reap(into: &completions)
        for c in completions { complete(tag: c.tag, status: c.status) }
        completions.removeAll(keepingCapacity: true)
    }

    /// Publishes the used ring; says whether the driver wants an interrupt.
    mutating func publish() -> Bool {
        let old = ring.publishedUsedIndex
        let wanted = ring.publishUsed()
        if let log, old != ring.publishedUsedIndex {
            let ring = self.ring
            log.published(from: old, to: ring.publishedUsedIndex, usedID: ring.usedID(at:))
        }
        stats.inFlight.store(slots.busy, ordering: .relaxed)
        return wanted
    }

    /// Takes over from a server that died: settles the log against the ring and resubmits what
    /// was in flight in the order it was taken. Returns the number resubmitted.
    mutating func resumeFromLog(_ log: QueueLog) -> Int {
        let ringUsed = ring.ringUsedIndex
        let ring = self.ring
        let (lastAvail, heads) = log.recover(ringUsedIndex: ringUsed, usedID: ring.usedID(at:))
        self.ring.resume(lastAvailIndex: lastAvail, usedIndex: ringUsed)
        logger.debug("queue \(ring.index): resuming at avail \(lastAvail), used \(ringUsed), \(heads.count) request(s) resubmitted")
        for head in heads { start(head: head) }
        return heads.count
    }

    /// Waits for every request handed to the backend and puts it in the used ring.
    mutating func drain() {
        backend.quiesce()
        reap()
    }

    /// Flushes what the backend acknowledged to stable storage, waiting for it: before a switch,
    /// so the image left behind holds every completed write. Call only drained (no slot busy:
    /// the flush borrows tag 0).
    mutating func flushDrained() -> BlockStatus {
        precondition(slots.busy == 0 && backend.inFlight == 0, "queue \(ring.index): flush before a switch with requests in flight")
        if case let .done(status) = backend.submit(.flush, tag: 0) { return status }
        backend.commit()
        backend.quiesce()
        var done: [Completion] = []
        backend.reap(into: &done)
        return done.first?.status ?? .ioError
    }

    /// Serves the queue from `new` from now on and returns the old backend queue (the caller
    /// closes it). Drained only: nothing in flight may complete through the old one.
    mutating func replaceBackend(_ new: any BackendQueue) -> any BackendQueue {
        precondition(slots.busy == 0 && backend.inFlight == 0, "queue \(ring.index): backend switched with requests in flight")
        let old = backend
        backend = new
        return old
    }

    /// Finds the rings again after their mappings changed, keeping the queue's position.
    mutating func remapRings() throws(SplitVirtqueue.SetupError) {
        ring = try SplitVirtqueue(index: ring.index, addresses: ring.addresses, eventIndex: ring.eventIndex,
                                  memory: memory, lastAvailIndex: ring.lastAvailIndex, usedIndex: ring.usedIndex)
    }

    private mutating func answer(head: UInt16, status: BlockStatus, into pointer: UnsafeMutablePointer<UInt8>?,
                                 used: UInt32) {
        pointer?.pointee = status.rawValue
        ring.putUsed(head: head, length: used)
    }

    private mutating func complete(tag head: UInt16, status: BlockStatus) {
        let slot = slots.finish(Int(head))
        stats.completed(slot.kind, bytes: slot.bytes, ok: status == .ok)
        answer(head: head, status: status, into: slot.status, used: slot.usedLength)
    }

    private mutating func start(head: UInt16) {
        if slots.isBusy(Int(head)) {
            // The driver offered a head that is still in flight: ignore the duplicate.
            return noteMalformed(head, "descriptor head already in flight")
        }
        do {
            try chain.walk(head: head, table: ring.descriptors, tableSize: ring.size, memory: memory,
                           maxSegments: maxSegments)
        } catch {
            noteMalformed(head, "\(error)")
            // Give the head back (without data) so the driver is not left waiting; a head
            // outside the table cannot be given back.
            if error != .headOutOfRange { ring.putUsed(head: head, length: 0) }
            return
        }
        do {
            try request.frame(chain)
        } catch {
            noteMalformed(head, "\(error)")
            return answer(head: head, status: .ioError, into: request.status, used: request.usedLength)
        }
        let io: BlockIO
        let kind: RequestKind
        let bytes: UInt64
        switch request.action(for: geometry) {
        case let .complete(status):
            stats.completed(.other, bytes: 0, ok: status == .ok)
            return answer(head: head, status: status, into: request.status, used: request.usedLength)
        case .getID:
            request.writeID(serial: geometry.serial)
            stats.completed(.other, bytes: 0, ok: true)
            return answer(head: head, status: .ok, into: request.status, used: request.usedLength)
        case let .read(offset, length):
            io = .read(offset: offset, buffers: slots.fill(Int(head), request.data), length: length)
            (kind, bytes) = (.read, UInt64(length))
        case let .write(offset, length):
            io = .write(offset: offset, buffers: slots.fill(Int(head), request.data), length: length)
            (kind, bytes) = (.write, UInt64(length))
        case .flush:
            io = .flush
            (kind, bytes) = (.flush, 0)
        case let .discard(offset, length):
            io = .discard(offset: offset, length: length)
            (kind, bytes) = (.discard, length)
        case let .writeZeroes(offset, length, unmap):
            io = .writeZeroes(offset: offset, length: length, unmap: unmap)
            (kind, bytes) = (.writeZeroes, length)
        }
        slots.begin(Int(head), status: request.status, usedLength: request.usedLength, kind: kind, bytes: bytes)
        if case let .done(status) = backend.submit(io, tag: head) {
            complete(tag: head, status: status)
        }
    }

    private mutating func noteMalformed(_ head: UInt16, _ what: String) {
        malformedChains += 1
        stats.malformed.bump()
        if malformedChains <= 10 {
            logger.warning("queue \(ring.index): malformed request at head \(head): \(what)")
        }
    }
}
