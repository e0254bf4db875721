import BlockBackends
import Kernel
import Logging
import Virtio

/// Serves one virtqueue of a virtio-blk export on its iothread: the object the loop, the export
/// and the backend know. Its work is done by the queue's `QueueEngine`, a value this server owns
/// alone and reaches through one pointer; each entry checks it runs on the iothread, and every
/// round ends with one publish and one interrupt decision. Knows no backend by name.
package final class VirtqueueServer: CompletionSink {
    package let kick: EventFD
    private let loop: IOThread
    private let engine: UnsafeMutablePointer<QueueEngine>
    /// Driver memory; requests in flight point into it, so it lives as long as this server.
    package let memory: IOVASpace
    private let interrupt: () -> Void
    /// False only if making the backend queue failed in `init` (then there is no engine).
    private var engineBuilt = false
    /// This queue's counters: written here only, read by the QMP thread.
    package let stats: QueueStats

    package init(queue: SplitVirtqueue, backend: any BlockBackend, geometry: BlockExportGeometry, memory: IOVASpace,
         loop: IOThread, logger: Logger, log: QueueLog? = nil, stats: QueueStats? = nil,
         interrupt: @escaping () -> Void) throws(SystemError) {
        loop.preconditionCurrent()
        let stats = stats ?? QueueStats(index: queue.index)
        self.stats = stats
        self.memory = memory
        self.loop = loop
        self.interrupt = interrupt
        kick = try EventFD()
        engine = .allocate(capacity: 1)
        // The backend queue needs `self` as its sink, so the engine is built after it.
        let backendQueue = try backend.makeQueue(index: queue.index, depth: Int(queue.size), loop: loop, sink: self)
        engine.initialize(to: QueueEngine(ring: queue, backend: backendQueue, geometry: geometry, memory: memory,
                                          log: log, stats: stats, logger: logger))
        engineBuilt = true
    }

    deinit {
        if engineBuilt { engine.deinitialize(count: 1) }
        engine.deallocate()
    }

    /// The ring as it is now (a copy: its counters move only inside the engine).
    package var queue: SplitVirtqueue { engine.pointee.ring }
    /// Capacity can change at run time (resize); everything else is fixed.
    package var geometry: BlockExportGeometry {
        get { engine.pointee.geometry }
        set { engine.pointee.geometry = newValue }
    }
    package var inFlight: Int { engine.pointee.inFlight }
    /// Malformed chains seen (logged, answered or returned, never fatal).
    package var malformedChains: Int { engine.pointee.malformedChains }

    /// The driver kicked: take everything available.
    package func onKick() {
        kick.drain()
        processAvailable()
    }

    /// Takes requests until the ring is empty and a kick is armed, then submits and completes.
    package func processAvailable() {
        loop.assertCurrent()
        engine.pointee.serveAvailable()
        finishRound()
    }

    /// One look at the rings while the iothread spins (polling on): serves new requests and
    /// finished backend work; says whether there was any.
    package func pollOnce() -> Bool {
        loop.assertCurrent()
        if engine.pointee.ring.pendingCount > 0 {
            processAvailable()
            return true
        }
        guard engine.pointee.backend.pollCompletions() else { return false }
        completionsReady()
        return true
    }

    /// From the backend's event handler: collect, publish, signal.
    package func completionsReady() {
        loop.assertCurrent()
        engine.pointee.reap()
        finishRound()
    }

    private func finishRound() {
        if engine.pointee.publish() {
            stats.interrupts.bump()
            interrupt()
        }
    }

    /// Takes over from a server that died: settles the log against the ring, resubmits what was in
    /// flight in the order it was taken, serves what arrived meanwhile, and signals the driver
    /// (completions the old server published may not have been signalled).
    @discardableResult
    package func resumeFromLog() -> Int {
        loop.preconditionCurrent()
        guard let log = engine.pointee.log else { return 0 }
        let resubmitted = engine.pointee.resumeFromLog(log)
        processAvailable()
        stats.interrupts.bump()
        interrupt()
        return resubmitted
    }

    /// Waits for every request handed to the backend and puts it in the used ring (the driver
    /// gets its answer even when a reset or re-mapping follows). Publishes unless `publish` is
    /// false (after a reset the rings may be gone).
    package func drain(publish: Bool) {
        loop.preconditionCurrent()
        engine.pointee.drain()
        if publish { finishRound() }
    }

    /// First step of a backend switch: answers everything in flight (publishing it) and flushes
    /// the backend, so that what the driver saw acknowledged is stable in the image left behind.
    /// New requests wait in the ring until the iothread returns to its loop.
    package func quiesceAndFlush() -> BlockStatus {
        loop.assertCurrent()
        drain(publish: true)
        return engine.pointee.flushDrained()
    }

    /// This queue's channel to another backend, made but not used yet (a switch makes every
    /// queue's before it switches any, so a failure leaves all on the old backend).
    package func makeQueue(on backend: any BlockBackend) throws(SystemError) -> any BackendQueue {
        loop.assertCurrent()
        return try backend.makeQueue(index: queue.index, depth: Int(queue.size), loop: loop, sink: self)
    }

    /// Last step of a switch (after `quiesceAndFlush`, before the loop runs again): serves from
    /// `new` and closes the old backend queue.
    package func install(_ new: any BackendQueue) {
        loop.assertCurrent()
        engine.pointee.replaceBackend(new).close()
    }

    /// Stops serving: no completion arrives after this.
    package func close() {
        loop.preconditionCurrent()
        engine.pointee.backend.close()
    }

    /// Finds the rings again after their mappings changed, keeping the queue's position.
    package func remapRings() throws(SplitVirtqueue.SetupError) {
        loop.preconditionCurrent()
        try engine.pointee.remapRings()
    }
}
