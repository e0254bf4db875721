import BlockBackends
import CVDUSE
import Glibc
import Kernel
import Logging
import Virtio

/// Serves one virtqueue of a virtio-blk export on its iothread: takes requests from the ring,
/// parses each chain into a typed request, hands it to the export's backend, and puts the
/// completions back in the used ring, one interrupt decision per round. Knows no backend by name.
package final class VirtqueueServer: CompletionSink {
    private(set) var queue: SplitVirtqueue
    package let kick: EventFD
    private let loop: IOThread
    private var backendQueue: (any BackendQueue)!
    /// Capacity can change at run time (resize); everything else is fixed.
    package var geometry: BlockExportGeometry
    /// Driver memory; requests in flight point into it, so it lives as long as this server.
    package let memory: IOVASpace
    private let interrupt: () -> Void
    private let logger: Logger
    /// Upper bound on memory pieces per request: seg_max data segments plus header and status,
    /// with room for pieces split where IOVA regions end.
    private let maxSegments: Int
    private var slots: RequestSlots
    private var chain = DescriptorChain(head: 0)
    private var request = BlockRequest()
    /// Malformed chains seen (logged, answered or returned, never fatal).
    private(set) var malformedChains = 0
    /// Completions were put in the used ring and not published yet.
    private var inRound = false
    /// This queue's part of the reconnect log (nil: no log, e.g. in unit tests).
    private let log: QueueLog?
    /// This queue's counters: written here only, read by the QMP thread.
    package let stats: QueueStats

    package init(queue: SplitVirtqueue, backend: any BlockBackend, geometry: BlockExportGeometry, memory: IOVASpace,
         loop: IOThread, logger: Logger, log: QueueLog? = nil, stats: QueueStats? = nil,
         interrupt: @escaping () -> Void) throws(SystemError) {
        loop.assertCurrent()
        self.log = log
        self.stats = stats ?? QueueStats(index: queue.index)
        self.queue = queue
        self.geometry = geometry
        self.memory = memory
        self.loop = loop
        self.logger = logger
        self.interrupt = interrupt
        kick = try EventFD()
        maxSegments = 2 * Int(queue.size) + 4
        slots = RequestSlots(count: Int(queue.size))
        backendQueue = try backend.makeQueue(index: queue.index, depth: Int(queue.size), loop: loop, sink: self)
    }

    package var inFlight: Int { slots.busy }

    /// The driver kicked: take everything available.
    package func onKick() {
        kick.drain()
        processAvailable()
    }

    /// Takes requests until the ring is empty and a kick is armed, then submits and completes.
    package func processAvailable() {
        loop.assertCurrent()
        inRound = true
        repeat {
            while let head = queue.takeAvailable() {
                log?.taken(head)
                start(head: head)
            }
            TestCrash.checkpoint()
        } while queue.armKick()
        backendQueue.commit()
        inRound = false
        finishRound()
    }

    /// One look at the rings while the iothread spins (polling on): serves new requests and
    /// finished backend work; says whether there was any.
    package func pollOnce() -> Bool {
        loop.assertCurrent()
        if queue.pendingCount > 0 {
            processAvailable()
            return true
        }
        return backendQueue.pollCompletions()
    }

    package func completionsDone() {
        loop.assertCurrent()
        if !inRound { finishRound() }
    }

    private func finishRound() {
        let old = queue.publishedUsedIndex
        let wanted = queue.publishUsed()
        if let log, old != queue.publishedUsedIndex {
            log.published(from: old, to: queue.publishedUsedIndex, usedID: queue.usedID(at:))
        }
        stats.inFlight.store(slots.busy, ordering: .relaxed)
        if wanted {
            stats.interrupts.bump()
            interrupt()
        }
    }

    /// Takes over from a server that died: settles the log against the ring, resubmits what was in
    /// flight in the order it was taken, serves what arrived meanwhile, and signals the driver
    /// (completions the old server published may not have been signalled).
    @discardableResult
    package func resumeFromLog() -> Int {
        loop.assertCurrent()
        guard let log else { return 0 }
        let ringUsed = queue.ringUsedIndex
        let (lastAvail, heads) = log.recover(ringUsedIndex: ringUsed, usedID: queue.usedID(at:))
        queue.resume(lastAvailIndex: lastAvail, usedIndex: ringUsed)
        logger.debug("queue \(queue.index): resuming at avail \(lastAvail), used \(ringUsed), \(heads.count) request(s) resubmitted")
        inRound = true
        for head in heads { start(head: head) }
        inRound = false
        processAvailable()
        stats.interrupts.bump()
        interrupt()
        return heads.count
    }

    private func answer(head: UInt16, status: BlockStatus, into pointer: UnsafeMutablePointer<UInt8>?, used: UInt32) {
        pointer?.pointee = status.rawValue
        queue.putUsed(head: head, length: used)
    }

    package func complete(tag head: UInt16, status: BlockStatus) {
        let slot = slots.finish(Int(head))
        stats.completed(slot.kind, bytes: slot.bytes, ok: status == .ok)
        answer(head: head, status: status, into: slot.status, used: slot.usedLength)
    }

    private func start(head: UInt16) {
        if slots.isBusy(Int(head)) {
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
        let io: BlockIO
        let kind: RequestKind
        let bytes: UInt64
        switch request.action(for: geometry) {
        case let .complete(status):
            stats.completed(.other, bytes: 0, ok: status == .ok)
            answer(head: head, status: status, into: request.status, used: request.usedLength)
            return
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
        backendQueue.submit(io, tag: head)
    }

    /// Waits for every request handed to the backend and puts it in the used ring (the driver
    /// gets its answer even when a reset or re-mapping follows). Publishes unless `publish` is
    /// false (after a reset the rings may be gone).
    package func drain(publish: Bool) {
        loop.assertCurrent()
        inRound = true
        backendQueue.quiesce()
        inRound = false
        if publish { finishRound() }
    }

    /// Stops serving: no completion arrives after this.
    package func close() {
        loop.assertCurrent()
        backendQueue.close()
    }

    private func noteMalformed(_ head: UInt16, _ what: String) {
        malformedChains += 1
        stats.malformed.bump()
        if malformedChains <= 10 {
            logger.warning("queue \(queue.index): malformed request at head \(head): \(what)")
        }
    }
}

extension VirtqueueServer {
    /// Finds the rings again after their mappings changed, keeping the queue's position.
    package func remapRings() throws(SplitVirtqueue.SetupError) {
        loop.assertCurrent()
        queue = try SplitVirtqueue(index: queue.index, addresses: queue.addresses, eventIndex: queue.eventIndex,
                                   memory: memory, lastAvailIndex: queue.lastAvailIndex, usedIndex: queue.usedIndex)
    }
}
