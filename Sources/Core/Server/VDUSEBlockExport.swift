import CVDUSE
import Glibc
import Logging

/// One vduse-blk export: a VDUSE virtio-blk device, its backend, and the servers of its
/// virtqueues. Created on any thread, then confined to its iothread: device messages, kicks
/// and completions are all handled there (as QEMU does with a single AioContext).
///
/// `@unchecked Sendable`: after `attach()` every method but `create` runs on `iothread`
/// (callers go through `iothread.run`), so its mutable state is never shared.
final class VDUSEBlockExport: @unchecked Sendable {
    let plan: ExportPlan
    let iothread: IOThread
    let backend: Backend
    private(set) var config: VirtioBlockConfig
    private let device: VDUSEDevice
    private let logger: Logger
    private var memory: IOVASpace?
    private var queues: [VirtqueueServer] = []
    private var status: UInt8 = 0
    private var attached = false
    /// Taking over a device whose server died (see init).
    private let adopting: Bool

    private static let statusDriverOK: UInt8 = 4
    private static let statusFeaturesOK: UInt8 = 8

    /// Opens the backend and creates the kernel device with every queue set up.
    /// Undoes what it did when a step fails.
    ///
    /// With `adopt`, the device already exists and its previous server is gone: we open it
    /// instead of creating it, and on `attach()` take over its running queues (see `attach`).
    init(plan: ExportPlan, control: VDUSEControl, iothread: IOThread, logger: Logger, adopt: Bool = false) throws {
        self.adopting = adopt
        self.plan = plan
        self.iothread = iothread
        var logger = logger
        logger[metadataKey: "export"] = "\(plan.id)"
        self.logger = logger
        let backend: Backend
        do {
            backend = try Backend(spec: plan.backend, writable: plan.writable, writethrough: plan.writethrough)
        } catch {
            throw ServeError("Could not open '\(plan.backend.pathDescription)': \(error.reason)")
        }
        self.backend = backend
        config = VirtioBlockConfig(plan: plan, capacityBytes: backend.size)
        if adopt {
            do {
                device = try VDUSEDevice(name: plan.deviceName)
            } catch {
                throw ServeError("cannot reconnect to vduse device '\(plan.deviceName)': \(error.reason)")
            }
            return
        }
        do {
            try control.createBlockDevice(name: plan.deviceName, config: config)
        } catch {
            throw ServeError("failed to create vduse device: \(error.reason)")
        }
        var opened: VDUSEDevice?
        do {
            let device = try VDUSEDevice(name: plan.deviceName)
            opened = device
            for q in 0..<Int(plan.numQueues) {
                try device.setupQueue(index: q, maxSize: plan.queueSize)
            }
            self.device = device
        } catch {
            opened?.close()
            try? control.destroyDevice(name: plan.deviceName)
            throw ServeError("failed to create vduse device: \(error)")
        }
    }

    private var geometry: BlockExportGeometry {
        BlockExportGeometry(capacitySectors: config.capacitySectors, logicalBlockSize: plan.logicalBlockSize,
                            writable: plan.writable, serial: Array(plan.serial.utf8))
    }

    /// Starts answering device messages on the iothread. Iothread only.
    ///
    /// When adopting a device whose driver is live (queues ready), serving resumes at once from
    /// the used index in each ring: requests the dead server had taken but not completed are
    /// lost (the kernel keeps no record of them), so this is for idle devices (cleanup).
    func attach() throws {
        try iothread.watch(device.fd) { [unowned self] in self.handleMessages() }
        attached = true
        if adopting, (try? device.queueInfo(index: 0))?.ready ?? 0 != 0 {
            status = Self.statusDriverOK | Self.statusFeaturesOK
            startQueues()
        }
        handleMessages()  // messages the dead server left unanswered are queued again for us
    }

    /// Stops serving and closes the device fd (so VDUSE_DESTROY_DEV can succeed). Iothread only.
    func detach() {
        guard attached else { return }
        stopQueues()
        iothread.unwatch(device.fd)
        device.close()
        attached = false
    }

    private func handleMessages() {
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
            switch request.type {
            case UInt32(VDUSE_GET_VQ_STATE.rawValue):
                let index = Int(request.vq_state.index)
                response.vq_state.index = request.vq_state.index
                response.vq_state.split.avail_index = queues.first { $0.queue.index == index }?.queue.lastAvailIndex ?? 0
            case UInt32(VDUSE_SET_STATUS.rawValue):
                let new = request.s.status
                logger.debug("status \(status) -> \(new)")
                if new & Self.statusFeaturesOK != 0 && status & Self.statusFeaturesOK == 0 && !featuresAcceptable() {
                    response.result = UInt32(VDUSE_REQ_RESULT_FAILED)
                } else if new & Self.statusDriverOK != 0 && status & Self.statusDriverOK == 0 {
                    // Interrupts work only once the kernel has recorded DRIVER_OK: start after replying.
                    afterReply = { [unowned self] in self.startQueues() }
                } else if new == 0 {
                    stopQueues()
                }
                if response.result == UInt32(VDUSE_REQ_RESULT_OK) { status = new }
            case UInt32(VDUSE_UPDATE_IOTLB.rawValue):
                // Only vhost-vdpa sends this; drop the stale mappings and re-map the rings.
                let running = !queues.isEmpty
                stopQueues()
                if running { afterReply = { [unowned self] in self.startQueues() } }
            default:
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

    /// After DRIVER_OK: map each ready queue's rings, attach a kick eventfd, and serve it.
    private func startQueues() {
        let negotiated = (try? device.negotiatedFeatures()) ?? 0
        let memory = IOVASpace(resolver: { [unowned device] iova in device.mapRegion(containing: iova) })
        self.memory = memory
        for index in 0..<Int(plan.numQueues) {
            do {
                let info = try device.queueInfo(index: index)
                guard info.ready != 0 else { continue }
                let addresses = SplitVirtqueue.Addresses(
                    size: UInt16(truncatingIfNeeded: info.num), descriptorTable: info.desc_addr,
                    availRing: info.driver_addr, usedRing: info.device_addr)
                guard info.num <= UInt32(UInt16.max) else { throw SplitVirtqueue.SetupError.badSize(info.num) }
                let queue = try SplitVirtqueue(
                    index: index, addresses: addresses,
                    eventIndex: negotiated & VirtioBlockConfig.Feature.eventIndex != 0, memory: memory)
                if adopting { queue.resumeFromUsedIndex() }
                let server = try VirtqueueServer(
                    queue: queue, backend: backend, geometry: geometry, memory: memory, logger: logger,
                    interrupt: { [unowned device, logger] in
                        do { try device.injectInterrupt(queue: index) } catch { logger.warning("\(error)") }
                    })
                try iothread.watch(server.kick.fd) { [unowned server] in server.onKick() }
                try iothread.watch(server.completionFD) { [unowned server] in server.onCompletions() }
                try device.setKickFD(index: index, fd: server.kick.fd)
                queues.append(server)
                // Kicks sent before the eventfd was attached are replayed by the kernel, but a
                // look at the ring costs nothing.
                server.processAvailable()
                logger.debug("queue \(index) started: size \(info.num)")
            } catch {
                logger.error("queue \(index) not started: \(error)")
            }
        }
    }

    /// On reset or teardown: wait for submitted I/O, then forget the rings and mappings.
    private func stopQueues() {
        for server in queues {
            iothread.unwatch(server.kick.fd)
            iothread.unwatch(server.completionFD)
            try? device.setKickFD(index: server.queue.index, fd: -1)
            server.abandonInFlight()
        }
        queues.removeAll()
        memory?.unmapAll()
        memory = nil
    }

    /// Grows or shrinks the image, then tells the driver the new capacity (config space +
    /// config interrupt, as QEMU's resize callback does). Iothread only.
    func resize(to bytes: UInt64) throws {
        try backend.resize(to: bytes)
        config.capacitySectors = bytes / 512
        for server in queues { server.geometry = geometry }
        guard status & Self.statusDriverOK != 0 else { return }
        try device.updateConfig(offset: 0, bytes: withUnsafeBytes(of: config.capacitySectors.littleEndian) { Array($0) })
    }
}

extension BackendSpec {
    var pathDescription: String {
        switch kind {
        case let .file(path): path
        case .null: "null-co"
        }
    }
}

/// An error with the exact message the user sees.
public struct ServeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}
