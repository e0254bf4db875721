import SystemPackage
import QAPI
import BlockBackends
import Virtio
import Kernel
import CVDUSE
import Foundation
import Glibc
import Logging
import Synchronization
import Wire

/// The exports of one server process: their iothreads, and the order in which the kernel
/// needs things done. Adding creates the VDUSE device, serves it on its iothread, binds it to
/// the vdpa bus and waits for the disk; deleting unbinds it (vdpa DEV_DEL, during which the
/// kernel flushes and the iothread keeps serving), stops serving and destroys the device.
/// With `binding: .caller` (qemu-storage-daemon's way) adding stops after serving the device:
/// the caller runs `vdpa dev add` itself, and deleting unbinds only what is still bound.
///
/// Every public method may be called from any thread except an iothread (they block on the
/// kernel); one lock serialises them, like QEMU's main loop serialises QMP commands.
public final class ExportManager: Sendable {
    /// Who adds each device to the vdpa bus.
    public enum Binding: Sendable { case server, caller }

    public let binding: Binding
    /// Commits and mirrors running on this server's exports.
    public let jobs = JobRegistry()
    private let control: VDUSEControl
    private let logger: Logger
    private let mainLoop: IOThread
    private struct State {
        /// The `--object iothread` threads, and those QMP `object-add` started since.
        var iothreads: [String: IOThread]
        /// The exports by id.
        var entries: [String: Entry] = [:]
        /// The last insertion number given out.
        var sequence = 0
    }
    private let state: Mutex<State>
    /// Held for the whole of each add/delete/resize (they must not interleave).
    private let commandLock = NSLock()

    private struct Entry: Sendable {
        package var export: ExportHandle
        package var status: ExportStatus
        /// Insertion order (query output is newest first, as QEMU's).
        package var sequence: Int
    }
    /// Where each export's reconnect log lives (`NAME.inflight`).
    private let logDirectory: String

    /// Checks the kernel (loading the modules once if needed) and starts the iothreads.
    public init(iothreads names: [String], logDirectory: String = "/run/vduse-export", binding: Binding = .server,
                logger: Logger) throws {
        self.logger = logger
        self.binding = binding
        self.logDirectory = logDirectory
        try KernelSupport.ensureVDUSE(logger: logger)
        do {
            control = try VDUSEControl()
        } catch {
            throw ExportError("failed to create vduse device: \(error)")
        }
        mainLoop = try IOThread(name: "main-loop")
        var threads: [String: IOThread] = [:]
        for name in names { threads[name] = try IOThread(name: name) }
        state = Mutex(State(iothreads: threads))
        mainLoop.start()
        for t in threads.values { t.start() }
    }

    /// Starts an iothread added at run time (QMP `object-add`).
    public func addIOThread(_ name: String) throws {
        let thread = try IOThread(name: name)
        state.withLock { $0.iothreads[name] = thread }
        thread.start()
    }

    /// Stops an iothread no export uses any more (QMP `object-del`; the caller checked).
    public func removeIOThread(_ name: String) {
        state.withLock { $0.iothreads.removeValue(forKey: name) }?.stop()
    }

    public var exports: [ExportStatus] {
        state.withLock { $0.entries.values.sorted { $0.sequence > $1.sequence }.map(\.status) }
    }

    public func status(id: String) -> ExportStatus? { state.withLock { $0.entries[id]?.status } }

    /// Every export's counters (or one export's), newest first. Reads the queues' counters
    /// without stopping or locking them; safe from any thread.
    public func statistics(id: String? = nil) -> [ExportStatistics] {
        let entries = state.withLock { s in s.entries.values.filter { id == nil || $0.status.id == id }.sorted { $0.sequence > $1.sequence } }
        let now = monotonicSeconds()
        return entries.map { e in
            ExportStatistics(id: e.status.id, name: e.status.name, nodeName: e.status.nodeName, device: e.status.device,
                             restarts: e.status.restarts, uptime: max(0, now - e.export.started),
                             queues: e.export.queueStats.map(\.snapshot))
        }
    }

    /// Creates, serves and binds one export; returns once its disk exists.
    @discardableResult
    public func add(_ plan: ExportPlan) throws -> ExportStatus {
        commandLock.lock()
        defer { commandLock.unlock() }
        let iothread = plan.iothread.flatMap { name in state.withLock { $0.iothreads[name] } } ?? mainLoop
        let control = self.control
        let logger = self.logger
        let logPath = ReconnectLogFile.path(for: plan.deviceName, in: logDirectory)
        // A device of ours whose server is gone (crash, kill, upgrade): take it over instead.
        if FileManager.default.fileExists(atPath: "/dev/vduse/\(plan.deviceName)"), InflightLog.open(path: logPath) != nil {
            guard Self.isBound(plan.deviceName) else {
                // Its server died before binding it (during `add`): no driver has seen it, its
                // queues may not be set up (vdpa would refuse it), so start over with a new one.
                // A live server still holding it makes the destroy fail: its log stays.
                logger.info("export \(plan.id): /dev/vduse/\(plan.deviceName) was never bound; creating it anew")
                do {
                    try control.destroyDevice(name: plan.deviceName)
                } catch {
                    throw ExportError("vduse device '\(plan.deviceName)' is being set up by another server", because: error,
                                      code: .conflict)
                }
                unlink(logPath)
                return try create(plan, logPath: logPath, iothread: iothread)
            }
            return try reattach(plan, logPath: logPath, iothread: iothread)
        }
        return try create(plan, logPath: logPath, iothread: iothread)
    }

    private func create(_ plan: ExportPlan, logPath: String, iothread: IOThread) throws -> ExportStatus {
        let control = self.control
        let logger = self.logger
        mkdir(logDirectory, 0o700)
        let export = try iothread.run { () throws -> ExportHandle in
            let export = try ExportFactory.create(plan: plan, control: control, iothread: iothread, logPath: logPath,
                                                  logger: logger)
            do {
                try export.attach()
            } catch {
                export.detach()
                try? control.destroyDevice(name: plan.deviceName)
                unlink(logPath)
                throw error
            }
            return ExportHandle(export)
        }
        guard binding == .server else { return register(export, disk: "") }
        do {
            try VDPANetlink.addDevice(name: plan.deviceName)
        } catch {
            destroy(export)
            throw ExportError("failed to create vduse device: vdpa: \(error.reason)")
        }
        ExportFactory.applyInterruptAffinity(plan, logger: logger)
        let disk: String
        do {
            disk = try DiskLocator.waitForDisk(vdpaName: plan.deviceName)
        } catch {
            teardown(export)
            throw error
        }
        return register(export, disk: disk)
    }

    private func register(_ export: ExportHandle, disk: String) -> ExportStatus {
        let plan = export.plan
        let status = ExportStatus(id: plan.id, name: plan.deviceName, nodeName: plan.nodeName, device: disk,
                                  sizeBytes: export.sizeBytes, numQueues: plan.numQueues,
                                  serial: plan.serial, shuttingDown: false, restarts: export.restarts)
        state.withLock {
            $0.sequence += 1
            $0.entries[plan.id] = Entry(export: export, status: status, sequence: $0.sequence)
        }
        logger.info("export \(plan.id) ready: \(disk)")
        return status
    }

    /// Takes over the live device of a server that is gone: reopens it (waiting for a server
    /// that is handing it over to let go), resumes its queues from the log, and finds its disk.
    /// Nothing is created, so a failure leaves the device as it was for the next try.
    private func reattach(_ plan: ExportPlan, logPath: String, iothread: IOThread) throws -> ExportStatus {
        let logger = self.logger
        let export = try iothread.run { () throws -> ExportHandle in
            guard let log = InflightLog.open(path: logPath) else {
                throw ExportError("the reconnect log \(logPath) is gone")
            }
            let export = try ExportFactory.reattach(plan: plan, log: log, iothread: iothread, logger: logger)
            do {
                try export.attach()
            } catch {
                export.detach()
                throw error
            }
            return ExportHandle(export)
        }
        let bound = Self.isBound(plan.deviceName)
        if !bound && binding == .caller { return register(export, disk: "") }
        if !bound {
            do {
                try VDPANetlink.addDevice(name: plan.deviceName)
            } catch {
                try? export.run { $0.detach() }
                throw ExportError("failed to create vduse device: vdpa: \(error.reason)")
            }
        }
        let disk = try DiskLocator.waitForDisk(vdpaName: plan.deviceName)
        logger.info("export \(plan.id): took over /dev/vduse/\(plan.deviceName) (restart \(export.restarts))")
        return register(export, disk: disk)
    }

    /// Hands every export over to a successor process: requests in flight are completed, the
    /// logs left consistent, and the devices closed but kept (bound, with their disks), so the
    /// next server (the binary on disk now) takes them over. The exports are forgotten here.
    public func handOver() {
        commandLock.lock()
        defer { commandLock.unlock() }
        let entries = state.withLock { s in defer { s.entries.removeAll() }; return Array(s.entries.values) }
        for entry in entries {
            try? entry.export.run { $0.detach() }
        }
    }

    /// Deletes an export (QEMU's block-export-del): `Export '<id>' is not found` if unknown.
    public func remove(id: String) throws {
        // A job still copying lets go of the disk first (it needs the command lock to do so).
        jobs.cancelAndWait(export: id)
        commandLock.lock()
        defer { commandLock.unlock() }
        guard let entry = state.withLock({ s -> Entry? in
            s.entries[id]?.status.shuttingDown = true
            return s.entries[id]
        }) else { throw ExportError("Export '\(id)' is not found") }
        teardown(entry.export)
        _ = state.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// QEMU's block_resize on the node an export serves.
    public func resize(nodeName: String, to bytes: UInt64) throws {
        commandLock.lock()
        defer { commandLock.unlock() }
        guard let entry = state.withLock({ s in s.entries.values.first { $0.status.nodeName == nodeName } }) else {
            throw ExportError("Cannot find device='' nor node-name='\(nodeName)'")
        }
        let export = entry.export
        try export.run { try $0.resize(to: bytes) }
        state.withLock { $0.entries[entry.status.id]?.status.sizeBytes = bytes / 512 * 512 }
    }

    /// Runs `body` with the export whose id or node name is `name`, under the command lock (a
    /// backend switch must not interleave with add, delete or resize). QEMU's message if none.
    func withExport<T>(named name: String, _ body: (ExportHandle, ExportStatus) throws -> T) throws -> T {
        commandLock.lock()
        defer { commandLock.unlock() }
        guard let entry = state.withLock({ s in s.entries[name] ?? s.entries.values.first { $0.status.nodeName == name } }) else {
            throw ExportError("Cannot find device='\(name)' nor node-name='\(name)'", code: .notFound)
        }
        return try body(entry.export, entry.status)
    }

    /// Cleans up after a server that died: reconnects to its VDUSE device (answering the kernel
    /// and serving the idle disk), unbinds it from vdpa and destroys it.
    public func removeOrphan(_ plan: ExportPlan) throws {
        // With our log, the device is taken over properly first: what the dead server had in
        // flight is resubmitted and answered, so nothing waits on it when the disk goes away.
        if let log = InflightLog.open(path: ReconnectLogFile.path(for: plan.deviceName, in: logDirectory)) {
            // The device's own shape, as logged, whatever the record kept of it.
            var plan = plan
            plan.numQueues = UInt16(log.identity.queues)
            plan.queueSize = UInt16(log.identity.queueSize)
            plan.logicalBlockSize = log.identity.logicalBlockSize
            let status = try add(plan)
            try remove(id: status.id)
            return
        }
        commandLock.lock()
        defer { commandLock.unlock() }
        let logger = self.logger
        let mainLoop = self.mainLoop
        let export = try mainLoop.run {
            let e = try ExportFactory.adopt(plan: plan, iothread: mainLoop, logger: logger)
            try e.attach()
            return ExportHandle(e)
        }
        teardown(export)
    }

    /// Deletes every export (newest first) and stops the iothreads.
    public func shutdown() {
        for status in exports { try? remove(id: status.id) }
        for t in state.withLock({ Array($0.iothreads.values) }) { t.stop() }
        mainLoop.stop()
    }

    /// Unbinds the device if it is bound (the caller may have bound it, or unbound it already),
    /// then destroys it.
    private func teardown(_ export: ExportHandle) {
        if Self.isBound(export.plan.deviceName) {
            do {
                try VDPANetlink.removeDevice(name: export.plan.deviceName)
            } catch {
                logger.error("vdpa: cannot remove device '\(export.plan.deviceName)': \(error.reason)")
            }
        }
        destroy(export)
    }

    /// Whether the VDUSE device is on the vdpa bus.
    static func isBound(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/bus/vdpa/devices/\(name)")
    }

    private func destroy(_ export: ExportHandle) {
        try? export.run { $0.detach() }
        // The kernel may hold the device for a moment after the last close.
        for attempt in 0..<50 {
            do {
                try control.destroyDevice(name: export.plan.deviceName)
                unlink(ReconnectLogFile.path(for: export.plan.deviceName, in: logDirectory))
                return
            } catch where error.errno == .resourceBusy && attempt < 49 {
                usleep(20_000)
            } catch {
                logger.error("cannot destroy vduse device '\(export.plan.deviceName)': \(error.reason)")
                return
            }
        }
    }
}
