import BlockBackends
import Glibc
import Kernel
import Logging
import QAPI
import QCOW2
import Virtio

/// Turns a checked plan into a running export's parts: the backend its node names, and the
/// VDUSE device (created, or reopened after its server died). Undoes what it did on failure.
enum ExportFactory {
    /// Opens the storage a plan's block node resolves to. `ownWriter`: an image this export holds
    /// as a writer now and gives up in the same switch (its locks are not a conflict).
    static func openBackend(_ plan: ExportPlan, ownWriter: String? = nil) throws(ExportError) -> any BlockBackend {
        switch plan.backend.kind {
        case let .null(size):
            return NullBackend(size: size)
        case let .qcow2(q):
            // The image is locked as a writer (or reader) the moment it is open, before the engine
            // reads or repairs anything; backing files as readers, so many overlays share a base
            // but nobody writes it underneath them.
            let forceShare = plan.backend.forceShare
            let lock: FileLocker = { fd, path, writable in
                try ImageLock.acquire(fd: fd, path: path, writable: writable, forceShare: writable ? false : forceShare && path == q.path,
                                      checkOthers: writable || path != ownWriter)
            }
            do {
                return try Qcow2Backend(spec: q, writable: plan.writable, writethrough: plan.writethrough, lock: lock)
            } catch let e as ExportError {
                throw e
            } catch {
                // The engine names the file it failed on; say the top image's name once.
                var reason = "\(error)"
                if reason.hasPrefix(q.path + ": ") { reason.removeFirst(q.path.count + 2) }
                throw ExportError("Could not open '\(q.path)': \(reason)", code: .invalidOptions, cause: error)
            }
        case let .nbd(n):
            return try openNBD(n, plan: plan)
        case let .rbd(r):
            return try openRBD(r, plan: plan)
        case let .file(path):
            let backend: FileBackend
            do {
                backend = try FileBackend(path: path, writable: plan.writable, direct: plan.backend.direct,
                                          writethrough: plan.writethrough)
            } catch {
                throw ExportError("Could not open '\(path)': \(error.reason)", code: .invalidOptions, cause: error)
            }
            // Two writers on one image corrupt it: QEMU-compatible locks keep them apart.
            try ImageLock.acquire(fd: backend.fd, path: path, writable: plan.writable, forceShare: plan.backend.forceShare)
            return backend
        }
    }

    /// Connects to the NBD server; failures keep libnbd's reason (refused, no such export, ...).
    static func openNBD(_ n: NBDSpec, plan: ExportPlan) throws(ExportError) -> NBDBackend {
        do {
            return try NBDBackend(spec: n, writable: plan.writable, queues: Int(plan.numQueues),
                                  logicalBlockSize: plan.logicalBlockSize)
        } catch {
            // libnbd's text names the step ("connect: Connection refused"); QEMU's words for a
            // failed connect, ours with libnbd's reason otherwise.
            let text = error.call
            if text.hasPrefix("connect: ") {
                throw ExportError("Failed to connect to '\(n.address)': \(error.reason)", code: .kernel, cause: error)
            }
            // A server that insists on TLS refuses the handshake; say why that cannot be met here.
            let hint = text.contains("requires TLS") ? " (vduse-export does not support NBD over TLS)" : ""
            throw ExportError("Could not open '\(n.uri)': \(text)\(hint)", code: .kernel, cause: error)
        }
    }

    /// Opens the RBD image; a failure names the step in QEMU's words, with the errno.
    static func openRBD(_ r: RBDSpec, plan: ExportPlan) throws(ExportError) -> RBDBackend {
        do {
            return try RBDBackend(spec: r, writable: plan.writable)
        } catch {
            if error.step == "library" {
                let why = RBDBackend.libraryError ?? "unknown error"
                throw ExportError("Could not open '\(r.uri)': cannot load librbd (install librbd1): \(why)",
                                  code: .kernel, cause: SystemError("dlopen librbd", errno: error.errno))
            }
            var what = switch error.step {
            case "pool": "error opening pool \(r.pool)"
            case "image": "error reading header from \(r.image)"
            default: "error connecting"
            }
            // EACCES/EPERM alone ("Operation not permitted") does not say whose permission: name
            // the user, and what the cluster refused (its key, or access to the image).
            if error.errno == EACCES || error.errno == EPERM {
                let user = "client.\(r.user ?? "admin")"
                let image = [r.pool, r.namespace, r.image].filter { !$0.isEmpty }.joined(separator: "/")
                what += error.step == "connect"
                    ? ": permission denied for \(user) (the cluster refused its key: check the user and its key in the keyring ceph.conf names)"
                    : ": permission denied for \(user) (its caps do not allow image \(image))"
            }
            let cause = SystemError(error.step, errno: error.errno)
            throw ExportError("Could not open '\(r.uri)': \(what): \(cause.reason)", code: .kernel, cause: cause)
        }
    }

    /// Writes a sysfs attribute of a VDUSE device (`/sys/class/vduse/NAME/ATTRIBUTE`); a failure is
    /// logged, not fatal: these only tune the device.
    static func writeAttribute(_ attribute: String, _ value: String, device name: String, logger: Logger) {
        let path = "/sys/class/vduse/\(name)/\(attribute)"
        guard let file = fopen(path, "w") else {
            logger.warning("cannot set \(path): \(SystemError("fopen", errno: errno).reason)")
            return
        }
        fputs(value + "\n", file)
        if fclose(file) != 0 { logger.warning("cannot set \(path): \(SystemError("fclose", errno: errno).reason)") }
    }

    /// The first line of a VDUSE device's sysfs attribute, or nil.
    static func readAttribute(_ attribute: String, device name: String) -> String? {
        guard let file = fopen("/sys/class/vduse/\(name)/\(attribute)", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        return String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// After binding: where the kernel runs each queue's interrupt injection (DevicePolicy).
    static func applyInterruptAffinity(_ plan: ExportPlan, logger: Logger) {
        for q in 0..<Int(plan.numQueues) {
            let attribute = "vq\(q)/irq_cb_affinity"
            let current = readAttribute(attribute, device: plan.deviceName) ?? ""
            guard let mask = DevicePolicy.interruptMask(driverMask: current) else { continue }
            writeAttribute(attribute, mask, device: plan.deviceName, logger: logger)
        }
    }

    /// Creates the kernel device with every queue set up. Iothread of the export.
    static func create(plan: ExportPlan, control: VDUSEControl, iothread: IOThread, logPath: String?, logger: Logger)
        throws(ExportError) -> VDUSEBlockExport {
        let backend = try openBackend(plan)
        let config = VDUSEBlockExport.config(plan: plan, size: backend.size, capabilities: backend.capabilities)
        var log: InflightLog?
        if let logPath {
            do {
                log = try InflightLog.create(path: logPath, identity: identity(plan, config))
            } catch {
                throw ExportError("cannot create the reconnect log", because: error)
            }
        }
        do {
            try control.createDevice(name: plan.deviceName, deviceID: VirtioBlockConfig.virtioBlockDeviceID,
                                     features: config.features, queues: Int(config.numQueues), config: config.bytes)
        } catch {
            throw ExportError("failed to create vduse device", because: error)
        }
        // No timeout on control messages: with the default (30 s) a message that arrives while the
        // server is being restarted could mark the device broken for good; with none, the sender
        // waits (killably) until a server answers.
        writeAttribute("msg_timeout", "0", device: plan.deviceName, logger: logger)
        // Before binding: the kernel takes the bounce size when the driver first maps memory.
        writeAttribute("bounce_size", String(DevicePolicy.bounceBytes(numQueues: Int(plan.numQueues))),
                       device: plan.deviceName, logger: logger)
        do {
            let device = try VDUSEDevice(name: plan.deviceName)
            for q in 0..<Int(plan.numQueues) { try device.setupQueue(index: q, maxSize: plan.queueSize) }
            return VDUSEBlockExport(plan: plan, device: device, backend: backend, iothread: iothread, logger: logger, log: log)
        } catch {
            try? control.destroyDevice(name: plan.deviceName)
            if let logPath { unlink(logPath) }
            throw ExportError("failed to create vduse device: \(error)", cause: error)
        }
    }

    /// What a device made for `plan` looks like, as its log records it.
    static func identity(_ plan: ExportPlan, _ config: VirtioBlockConfig) -> InflightLog.Identity {
        InflightLog.Identity(queues: Int(plan.numQueues), queueSize: Int(plan.queueSize),
                             logicalBlockSize: plan.logicalBlockSize, features: config.features,
                             serialHash: InflightLog.hash(plan.serial))
    }

    /// Reopens the live device of a server that is gone, after checking that it is the device
    /// this plan would create: its log's identity, the kernel's queue count, and the features the
    /// driver accepted. A server still holding it gets 10 s to let go (a hand-over).
    static func reattach(plan: ExportPlan, log: InflightLog, iothread: IOThread, logger: Logger)
        throws(ExportError) -> VDUSEBlockExport {
        let backend = try openBackend(plan)
        let config = VDUSEBlockExport.config(plan: plan, size: backend.size, capabilities: backend.capabilities)
        var expected = identity(plan, config)
        // After a live switch the image may offer more (a qcow2 overlay discards where its raw
        // base could not); the device keeps what it was created with, which is enough.
        if log.identity.features & ~expected.features == 0 { expected.features = log.identity.features }
        guard log.identity == expected else {
            throw ExportError("vduse device '\(plan.deviceName)' exists with another configuration (\(log.identity)); "
                              + "this export would have \(expected): refusing to take it over", code: .conflict)
        }
        var device: VDUSEDevice?
        for attempt in 0..<500 {
            do {
                device = try VDUSEDevice(name: plan.deviceName)
                break
            } catch where error.errno == .resourceBusy && attempt < 499 {
                usleep(20_000)
            } catch {
                throw ExportError("cannot take over vduse device '\(plan.deviceName)'", because: error, code: .conflict)
            }
        }
        guard let device else { throw ExportError("cannot take over vduse device '\(plan.deviceName)'", code: .conflict) }
        let queues = Int(plan.numQueues)
        let lastExists = (try? device.queueInfo(index: queues - 1)) != nil
        let oneMoreExists = (try? device.queueInfo(index: queues)) != nil
        let negotiated = (try? device.negotiatedFeatures()) ?? 0
        guard lastExists && !oneMoreExists, negotiated & ~config.features == 0 else {
            throw ExportError("vduse device '\(plan.deviceName)' does not match its log (queues or features differ): refusing to take it over",
                              code: .conflict)
        }
        log.restarts += 1
        return VDUSEBlockExport(plan: plan, device: device, backend: backend, iothread: iothread, logger: logger,
                                adopting: true, log: log)
    }

    /// Reopens the device of a server that died (it still exists in the kernel).
    static func adopt(plan: ExportPlan, iothread: IOThread, logger: Logger) throws(ExportError) -> VDUSEBlockExport {
        let backend = try openBackend(plan)
        do {
            let device = try VDUSEDevice(name: plan.deviceName)
            return VDUSEBlockExport(plan: plan, device: device, backend: backend, iothread: iothread, logger: logger,
                                    adopting: true)
        } catch {
            throw ExportError("cannot reconnect to vduse device '\(plan.deviceName)'", because: error)
        }
    }
}
