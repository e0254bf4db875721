import BlockBackends
import CVDUSE
import Glibc
import Kernel
import Logging
import QAPI
import Virtio

/// One vduse-blk export: a VDUSE virtio-blk device, its backend, and the servers of its
/// virtqueues. Built on any thread, then confined to its iothread: device messages, kicks and
/// completions are all handled there, as QEMU does with a single AioContext. Not `Sendable`:
/// other threads hold an `ExportHandle`, which reaches the export only on its iothread.
final class VDUSEBlockExport {
    /// Changes only in a backend switch (snapshot, commit, mirror), on the iothread.
    private(set) var plan: ExportPlan
    let iothread: IOThread
    private(set) var backend: any BlockBackend
    private(set) var config: VirtioBlockConfig
    private let device: any VDUSEDeviceChannel
    private let logger: Logger
    private var memory: IOVASpace?
    private(set) var queues: [VirtqueueServer] = []
    private var status: DeviceStatus = []
    private var attached = false
    /// Taking over a device whose server died (see `attach`).
    private let adopting: Bool
    /// The reconnect log (nil: none, as in tests and for cleanup of a dead server's device).
    private let log: InflightLog?
    var restarts: UInt32 { log?.restarts ?? 0 }
    /// One set of counters per virtqueue, kept across driver resets (new queue servers).
    let queueStats: [QueueStats]
    /// When this process started serving the export (CLOCK_MONOTONIC seconds).
    let started = monotonicSeconds()

    init(plan: ExportPlan, device: any VDUSEDeviceChannel, backend: any BlockBackend, iothread: IOThread,
         logger: Logger, adopting: Bool = false, log: InflightLog? = nil) {
        self.plan = plan
        self.log = log
        self.device = device
        self.backend = backend
        self.iothread = iothread
        self.adopting = adopting
        var logger = logger
        logger[metadataKey: "export"] = "\(plan.id)"
        self.logger = logger
        queueStats = (0..<Int(plan.numQueues)).map { QueueStats(index: $0) }
        config = Self.config(plan: plan, size: backend.size, capabilities: backend.capabilities)
    }

    /// The virtio-blk device an export of `plan` over a backend of `size` bytes offers.
    static func config(plan: ExportPlan, size: UInt64, capabilities: BackendCapabilities) -> VirtioBlockConfig {
        VirtioBlockConfig(capacityBytes: size, queueSize: plan.queueSize, numQueues: plan.numQueues,
                          logicalBlockSize: plan.logicalBlockSize, writable: plan.writable,
                          discard: capabilities.discard, writeZeroes: capabilities.writeZeroes)
    }

    private var geometry: BlockExportGeometry {
        BlockExportGeometry(capacitySectors: config.capacitySectors, logicalBlockSize: plan.logicalBlockSize,
                            writable: plan.writable, serial: Array(plan.serial.utf8))
    }

    /// Starts answering device messages. Iothread only.
    ///
    /// When adopting a device whose driver is live (queues ready), serving resumes at once from
    /// the used index in each ring: requests the dead server had taken but not completed are
    /// lost (the kernel keeps no record of them), so this is for idle devices (cleanup).
    func attach() throws(SystemError) {
        iothread.preconditionCurrent()
        try iothread.watch(device.fd) { [unowned self] in self.handleMessages() }
        attached = true
        if adopting, (try? device.queueInfo(index: 0))?.ready ?? 0 != 0 {
            status = [.driverOK, .featuresOK]
            startQueues(resuming: true)
            // The image may have been resized just before the old server died (block_resize
            // between ftruncate and the config update): tell the driver the size it has now.
            do {
                try device.updateConfig(offset: 0, bytes: withUnsafeBytes(of: config.capacitySectors.littleEndian) { Array($0) })
            } catch {
                logger.warning("cannot refresh the capacity after the takeover: \(error)")
            }
        }
        handleMessages()  // messages the dead server left unanswered are queued again for us
    }

    /// Stops serving and closes the device fd (so VDUSE_DESTROY_DEV can succeed). Iothread only.
    func detach() {
        iothread.preconditionCurrent()
        guard attached else { return }
        stopQueues(publish: true)
        iothread.unwatch(device.fd)
        device.close()
        attached = false
    }

    func handleMessages() {
        iothread.preconditionCurrent()
        while true {
            let request: vduse_dev_request
            do {
                guard let r = try device.readRequest() else { return }
                request = r
            } catch {
                logger.error("\(error)")
                return
            }
            var response = vduse_dev_response()
            response.request_id = request.request_id
            response.result = UInt32(VDUSE_REQ_RESULT_OK)
            var afterReply: (() -> Void)?
            switch DeviceMessage(request) {
            case let .getQueueState(index):
                response.vq_state.index = UInt32(index)
                response.vq_state.split.avail_index = queues.first { $0.queue.index == index }?.queue.lastAvailIndex ?? 0
            case let .setStatus(new):
                logger.debug("status \(status.rawValue) -> \(new.rawValue)")
                if new.contains(.featuresOK) && !status.contains(.featuresOK) && !featuresAcceptable() {
                    response.result = UInt32(VDUSE_REQ_RESULT_FAILED)
                } else if new.contains(.driverOK) && !status.contains(.driverOK) {
                    // Interrupts work only once the kernel has recorded DRIVER_OK: start after replying.
                    afterReply = { [unowned self] in self.startQueues(resuming: false) }
                } else if new.isEmpty {
                    // Reset: finish what is in flight (its buffers stay mapped until we reply), then
                    // forget the rings; the driver sets them up anew.
                    stopQueues(publish: false)
                    if let log { for q in 0..<log.identity.queues { log.queue(q).reset() } }
                }
                if response.result == UInt32(VDUSE_REQ_RESULT_OK) { status = new }
            case let .updateIOTLB(first, last):
                // Mappings in [first, last] changed (vhost-vdpa): answer what is in flight while its
                // buffers are still mapped, drop the stale mappings, and find the rings again
                // where they now are, each queue keeping its position.
                for server in queues { server.drain(publish: true) }
                memory?.unmap(first: first, last: last)
                for server in queues {
                    do { try server.remapRings() } catch { logger.error("queue \(server.queue.index): \(error)") }
                }
            case .unknown:
                response.result = UInt32(VDUSE_REQ_RESULT_FAILED)
            }
            do {
                try device.reply(response)
            } catch {
                logger.error("\(error)")
            }
            afterReply?()
        }
    }

    /// Refuses drivers that did not accept what we rely on: VERSION_1 (little-endian layout)
    /// and the split ring (we do not offer the packed one).
    private func featuresAcceptable() -> Bool {
        guard let f = try? device.negotiatedFeatures() else { return false }
        return f & VirtioBlockConfig.Feature.version1 != 0 && f & VirtioBlockConfig.Feature.ringPacked == 0
    }

    /// After DRIVER_OK: map each ready queue's rings, attach a kick eventfd, and serve it. A queue
    /// that cannot start leaves nothing watching the loop.
    private func startQueues(resuming: Bool) {
        let negotiated = (try? device.negotiatedFeatures()) ?? 0
        let memory = IOVASpace(resolver: { [unowned device] iova in
            device.mapRegion(containing: iova).map {
                IOVASpace.Region(first: $0.first, last: $0.last, base: $0.base, readable: $0.readable,
                                 writable: $0.writable, owner: $0)
            }
        })
        self.memory = memory
        var resubmitted = 0
        defer {
            if resuming && log != nil {
                logger.warning("took over /dev/vduse/\(plan.deviceName) from a server that is gone (restart \(restarts)): \(resubmitted) request(s) in flight resubmitted")
            }
        }
        for index in 0..<Int(plan.numQueues) {
            var server: VirtqueueServer?
            var kickWatched = false
            do {
                let info = try device.queueInfo(index: index)
                guard info.ready != 0 else { continue }
                guard info.num <= UInt32(UInt16.max) else { throw SplitVirtqueue.SetupError.badSize(info.num) }
                let addresses = SplitVirtqueue.Addresses(
                    size: UInt16(truncatingIfNeeded: info.num), descriptorTable: info.desc_addr,
                    availRing: info.driver_addr, usedRing: info.device_addr)
                var queue = try SplitVirtqueue(
                    index: index, addresses: addresses,
                    eventIndex: negotiated & VirtioBlockConfig.Feature.eventIndex != 0, memory: memory)
                if resuming && log == nil { queue.resumeFromUsedIndex() }
                let queueLog = log?.queue(index)
                if !resuming { queueLog?.reset() }
                let started = try VirtqueueServer(
                    queue: queue, backend: backend, geometry: geometry, memory: memory, loop: iothread, logger: logger,
                    log: queueLog, stats: queueStats[index], interrupt: { [unowned device, logger] in
                        do { try device.injectInterrupt(queue: index) } catch { logger.warning("\(error)") }
                    })
                server = started
                try iothread.watch(started.kick.fd) { [unowned started] in started.onKick() }
                iothread.addPoller(for: started.kick.fd) { [unowned started] in started.pollOnce() }
                kickWatched = true
                try device.setKickFD(index: index, fd: started.kick.fd)
                queues.append(started)
                if resuming && queueLog != nil {
                    resubmitted += started.resumeFromLog()
                } else {
                    // Kicks sent before the eventfd was attached are replayed by the kernel, but a
                    // look at the ring costs nothing.
                    started.processAvailable()
                }
                logger.debug("queue \(index) started: size \(info.num)")
            } catch {
                if let server {
                    if kickWatched { iothread.unwatch(server.kick.fd) }
                    server.close()
                }
                logger.error("queue \(index) not started: \(error)")
            }
        }
    }

    /// On reset or teardown: finish submitted I/O, then forget the rings and mappings.
    private func stopQueues(publish: Bool) {
        for server in queues {
            iothread.unwatch(server.kick.fd)
            try? device.setKickFD(index: server.queue.index, fd: -1)
            server.drain(publish: publish)
            server.close()
        }
        queues.removeAll()
        memory = nil
    }

    /// Grows or shrinks the backend, then tells the driver the new capacity (config space +
    /// config interrupt, as QEMU's resize callback does). Iothread only.
    func resize(to bytes: UInt64) throws(SystemError) {
        iothread.preconditionCurrent()
        try backend.resize(to: bytes)
        config.capacitySectors = bytes / 512
        for server in queues { server.geometry = geometry }
        guard status.contains(.driverOK) else { return }
        try device.updateConfig(offset: 0, bytes: withUnsafeBytes(of: config.capacitySectors.littleEndian) { Array($0) })
    }
}

extension VDUSEBlockExport {
    /// Moves every queue of the export to another backend while the disk stays in use (a live
    /// snapshot, commit or mirror). Iothread only: while it runs no queue takes new requests
    /// (they wait in the rings), so the switch is atomic for the driver.
    ///
    /// In order: requests in flight are answered and the old backend flushed (the image left
    /// behind holds every acknowledged write); `open` opens the new backend (after the flush, so
    /// it reads the old image as it is on disk); every queue's channel to it is made; `record`
    /// makes the switch durable (the state record: a server killed after it comes back on the new
    /// image); only then does each queue switch. A throw before the last step leaves the export
    /// on its old backend, untouched.
    func switchBackend(to newPlan: ExportPlan, open: () throws -> any BlockBackend,
                       record: (any BlockBackend) throws -> Void) throws {
        iothread.assertCurrent()
        try flushForSwitch()
        let new = try open()
        guard new.size == config.capacitySectors * 512 else {
            throw ExportError("the new image has \(new.size) bytes, the disk \(config.capacitySectors * 512)", code: .invalidOptions)
        }
        // The driver negotiated the features once; the new storage must honour them.
        if config.discard && !new.capabilities.discard || config.writeZeroes && !new.capabilities.writeZeroes {
            throw ExportError("the new image cannot discard or write zeroes, which the disk offers", code: .invalidOptions)
        }
        var made: [any BackendQueue] = []
        do {
            for server in queues { made.append(try server.makeQueue(on: new)) }
            try record(new)
        } catch {
            for q in made { q.close() }
            throw error
        }
        for (server, q) in zip(queues, made) { server.install(q) }
        backend = new
        plan = newPlan
        logger.info("switched to \(newPlan.backend.pathDescription)")
    }

    /// Answers what is in flight and flushes the backend through each queue, or through a
    /// queue made for the purpose when the driver has none running.
    private func flushForSwitch() throws(ExportError) {
        var statuses = queues.map { $0.quiesceAndFlush() }
        if queues.isEmpty {
            let sink = IdleSink()
            defer { withExtendedLifetime(sink) {} }  // the queue keeps it unowned
            do {
                let q = try backend.makeQueue(index: 0, depth: 1, loop: iothread, sink: sink)
                defer { q.close() }
                var status = BlockStatus.ioError
                if case let .done(s) = q.submit(.flush, tag: 0) {
                    status = s
                } else {
                    q.commit()
                    q.quiesce()
                    var done: [Completion] = []
                    q.reap(into: &done)
                    status = done.first?.status ?? .ioError
                }
                statuses.append(status)
            } catch {
                throw ExportError("cannot flush \(plan.backend.pathDescription) before the switch", because: error)
            }
        }
        guard statuses.allSatisfy({ $0 == .ok }) else {
            throw ExportError("flushing \(plan.backend.pathDescription) failed: the disk stays on it", code: .kernel)
        }
    }
}

/// Nobody to tell: a queue used only for one flush or a job's copy, waited for in place.
final class IdleSink: CompletionSink {
    func completionsReady() {}
}

/// Seconds on CLOCK_MONOTONIC (uptimes do not jump with the wall clock).
func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// A control message from the kernel, typed.
enum DeviceMessage: Equatable {
    case getQueueState(index: Int)
    case setStatus(DeviceStatus)
    case updateIOTLB(first: UInt64, last: UInt64)
    case unknown(UInt32)

    init(_ request: vduse_dev_request) {
        switch request.type {
        case UInt32(VDUSE_GET_VQ_STATE.rawValue): self = .getQueueState(index: Int(request.vq_state.index))
        case UInt32(VDUSE_SET_STATUS.rawValue): self = .setStatus(DeviceStatus(rawValue: request.s.status))
        case UInt32(VDUSE_UPDATE_IOTLB.rawValue): self = .updateIOTLB(first: request.iova.start, last: request.iova.last)
        default: self = .unknown(request.type)
        }
    }
}

/// The virtio device status bits (virtio 1.x §2.1) the driver sets.
struct DeviceStatus: OptionSet, Equatable {
    let rawValue: UInt8
    static let acknowledge = DeviceStatus(rawValue: 1)
    static let driver = DeviceStatus(rawValue: 2)
    static let driverOK = DeviceStatus(rawValue: 4)
    static let featuresOK = DeviceStatus(rawValue: 8)
    static let needsReset = DeviceStatus(rawValue: 64)
    static let failed = DeviceStatus(rawValue: 128)
}
