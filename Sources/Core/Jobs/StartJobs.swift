import BlockBackends
import Foundation
import Glibc
import Kernel
import QAPI
import QCOW2
import Wire

/// How a job is started (QEMU's common job arguments).
public struct JobOptions: Sendable {
    public var id: String?
    public var autoFinalize = true
    public var autoDismiss = true
    /// The copy's rate limit in bytes per second (0: none).
    public var speed: UInt64 = 0
    public init(id: String? = nil, autoFinalize: Bool = true, autoDismiss: Bool = true, speed: UInt64 = 0) {
        self.id = id
        self.autoFinalize = autoFinalize
        self.autoDismiss = autoDismiss
        self.speed = speed
    }
}

extension ExportManager {
    /// QEMU's active `block-commit`: merges the qcow2 overlays of the export `name` (id or node
    /// name) down into the base of their chain while the disk runs; ready once the base holds
    /// everything, and on `job-complete` the export switches to the base. Returns the job id.
    public func startCommit(of name: String, options: JobOptions,
                            record: @escaping @Sendable (BackendSwitch) throws -> Void) throws -> String {
        try withExport(named: name) { export, status in
            let plan = try export.run { $0.plan }
            guard plan.writable else {
                throw ExportError("export '\(status.id)' is read-only: there is nothing to commit", code: .invalidOptions)
            }
            guard case let .qcow2(q) = plan.backend.kind, q.backing == .fromImage else {
                throw ExportError("'\(plan.backend.pathDescription)' is not a qcow2 overlay: there is nothing to commit", code: .invalidOptions)
            }
            let chain = try Qcow2Image.chain(of: q.path)
            guard chain.count >= 2, let base = chain.last else {
                throw ExportError("'\(q.path)' has no backing file: there is nothing to commit", code: .invalidOptions)
            }
            guard let active = try export.run({ $0.backend as? Qcow2Backend }) else {
                throw ExportError("export '\(status.id)' has a block job running", code: .conflict)
            }
            let basePlan = plan.servingFrom(try ImageFormat.probe(path: base) == .qcow2
                ? .qcow2(Qcow2Spec(path: base, l2CacheSize: q.l2CacheSize, discardUnmap: q.discardUnmap))
                : .file(path: base))
            // The chain keeps the base open as a reader that refuses writers: let this process's
            // writer in, while another process's reader still keeps it out.
            try active.shareWrites(of: base, true)
            let target: any BlockBackend
            do {
                target = try ExportFactory.openBackend(basePlan)
            } catch {
                try? active.shareWrites(of: base, false)
                throw error
            }
            let job = try startCopy(type: .commit, export: export, status: status, target: target, targetPlan: basePlan,
                                    options: options, record: record, onAbort: { try? active.shareWrites(of: base, false) },
                                    initial: { bitmap in
                                        for i in 0..<bitmap.chunks {
                                            let (offset, length) = bitmap.range(of: i)
                                            if active.allocatedAbove(base: base, at: offset, length: length) { bitmap.mark(chunk: i) }
                                        }
                                    })
            return job
        }
    }

    /// QEMU's `blockdev-mirror` with `sync: full`: copies the whole disk of export `name` to
    /// `target` (opened as a writer) while the disk runs; ready once the target holds
    /// everything, and on `job-complete` the export switches to the target. Returns the job id.
    public func startMirror(of name: String, to target: BackendSpec, options: JobOptions,
                            record: @escaping @Sendable (BackendSwitch) throws -> Void) throws -> String {
        try withExport(named: name) { export, status in
            let plan = try export.run { $0.plan }
            guard plan.writable else {
                throw ExportError("export '\(status.id)' is read-only: a mirror moves a writable disk", code: .invalidOptions)
            }
            if jobs.job(onExport: status.id) != nil {
                throw ExportError("Node '\(name)' is busy: block device is in use by block job", code: .conflict)
            }
            guard !target.readOnly else {
                throw ExportError("the target '\(target.pathDescription)' is read-only", code: .invalidOptions)
            }
            guard target.pathDescription != plan.backend.pathDescription else {
                throw ExportError("the target is the image the disk is on: \(target.pathDescription)", code: .invalidOptions)
            }
            var targetPlan = plan
            targetPlan.backend = target
            let opened = try ExportFactory.openBackend(targetPlan)
            return try startCopy(type: .mirror, export: export, status: status, target: opened, targetPlan: targetPlan,
                                 options: options, record: record, onAbort: {}, initial: { $0.markAll() })
        }
    }

    /// Installs the dirty tracking, marks what to copy, registers and starts the job.
    func startCopy(type: JobType, export: ExportHandle, status: ExportStatus, target: any BlockBackend,
                   targetPlan: ExportPlan, options: JobOptions, record: @escaping @Sendable (BackendSwitch) throws -> Void,
                   onAbort: @escaping @Sendable () -> Void, initial: (DirtyBitmap) -> Void) throws -> String {
        let id = options.id ?? status.id
        // The source goes to the job, which reads it only while the iothread waits for it.
        nonisolated(unsafe) var handedOver: (any BlockBackend)?
        let sourcePlan = try export.run { e in
            handedOver = e.backend
            return e.plan
        }
        guard let source = handedOver else { throw ExportError("export '\(status.id)' has no backend") }
        guard target.size == source.size else {
            throw ExportError("the target has \(target.size) bytes, the disk \(source.size)", code: .invalidOptions)
        }
        let bitmap = DirtyBitmap(size: source.size)
        let job = CopyJob(id: id, type: type, exportID: status.id, manager: self, registry: jobs, source: source,
                          sourcePlan: sourcePlan, target: target, targetPlan: targetPlan, bitmap: bitmap,
                          autoFinalize: options.autoFinalize, autoDismiss: options.autoDismiss, speed: options.speed,
                          record: record, onAbort: onAbort)
        try jobs.add(job)
        do {
            // Tracking first, then the initial marks: a write in between is marked either way.
            // Handed to the iothread, which alone uses it from then on.
            nonisolated(unsafe) let tracking = DirtyTrackingBackend(inner: source, bitmap: bitmap)
            try export.run {
                try $0.switchBackend(to: sourcePlan, open: { tracking }, record: { _ in })
            }
        } catch {
            jobs.remove(job)
            onAbort()
            throw error
        }
        initial(bitmap)
        job.start()
        return id
    }
}
