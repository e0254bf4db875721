import BlockBackends
import Kernel
import Logging
import QAPI
import QCOW2
import Virtio

/// Turns a checked plan into a running export's parts: the backend its node names, and the
/// VDUSE device (created, or reopened after its server died). Undoes what it did on failure.
enum ExportFactory {
    /// Opens the storage a plan's block node resolves to.
    static func openBackend(_ plan: ExportPlan) throws(ExportError) -> any BlockBackend {
        switch plan.backend.kind {
        case let .null(size):
            return NullBackend(size: size)
        case let .qcow2(q):
            let backing: BackingChoice = switch q.backing {
            case .fromImage: .fromHeader
            case .none: .none
            case let .image(path, qcow2): .file(path: path, format: qcow2 ? .qcow2 : .raw)
            }
            do {
                return try Qcow2Backend(path: q.path, writable: plan.writable, backing: backing,
                                        l2CacheBytes: q.l2CacheSize.map { Int($0) }, discardUnmap: q.discardUnmap)
            } catch {
                throw ExportError("Could not open '\(q.path)': \(error)", code: .invalidArgument)
            }
        case let .file(path):
            do {
                return try FileBackend(path: path, writable: plan.writable, direct: plan.backend.direct,
                                       writethrough: plan.writethrough)
            } catch {
                throw ExportError("Could not open '\(path)': \(error.reason)", code: .invalidArgument, cause: error)
            }
        }
    }

    /// Creates the kernel device with every queue set up. Iothread of the export.
    static func create(plan: ExportPlan, control: VDUSEControl, iothread: IOThread, logger: Logger)
        throws(ExportError) -> VDUSEBlockExport {
        let backend = try openBackend(plan)
        let config = VDUSEBlockExport.config(plan: plan, size: backend.size)
        do {
            try control.createDevice(name: plan.deviceName, deviceID: VirtioBlockConfig.virtioBlockDeviceID,
                                     features: config.features, queues: Int(config.numQueues), config: config.bytes)
        } catch {
            throw ExportError("failed to create vduse device", because: error)
        }
        do {
            let device = try VDUSEDevice(name: plan.deviceName)
            for q in 0..<Int(plan.numQueues) { try device.setupQueue(index: q, maxSize: plan.queueSize) }
            return VDUSEBlockExport(plan: plan, device: device, backend: backend, iothread: iothread, logger: logger)
        } catch {
            try? control.destroyDevice(name: plan.deviceName)
            throw ExportError("failed to create vduse device: \(error)", cause: error)
        }
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
