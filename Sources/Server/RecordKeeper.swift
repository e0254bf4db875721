import Core
import Foundation
import Glibc
import Kernel
import Logging
import Provisioning
import QAPI
import Synchronization
import Wire

/// Keeps the state-directory records of this server's exports in step with them.
package final class RecordKeeper: ExportObserver {
    private let settings: ServeSettings
    private struct Kept {
        /// The VDUSE names (the records') of this server's exports.
        var names: Set<String> = []
        /// Export id -> VDUSE name, for what the manager reports by id.
        var idNames: [String: String] = [:]
    }

    private let kept = Mutex(Kept())
    private let logger: Logger?
    /// Where `add --persist` configurations are, which follow a switch.
    private let persistent: PersistentExports

    package init(settings: ServeSettings, logger: Logger? = nil, persistent: PersistentExports = .standard) {
        self.settings = settings
        self.logger = logger
        self.persistent = persistent
    }

    /// The image a record names for `plan`: paths resolved; a network export's URI (no secrets
    /// in it) as it is.
    static func recordedImage(_ plan: ExportPlan) -> String {
        var image = plan.backend.pathDescription
        if !image.hasPrefix("/"), case .file = plan.backend.kind {
            image = FileManager.default.currentDirectoryPath + "/" + image
        }
        if !plan.backend.isNetwork { image = canonicalPath(image) }
        return image
    }

    /// `plan`, or the same export over the image a live switch moved it to, when the record of
    /// its previous server (gone: killed, crashed or handed over) says so for this configuration.
    /// A persistent export's configuration is made to name that image too.
    package func resuming(_ plan: ExportPlan) -> ExportPlan {
        guard settings.record, let r = settings.state.read(plan.deviceName), r.id == plan.id, let s = r.switched,
              !StateDirectory.processAlive(r.pid), s.origin == Self.recordedImage(plan) else { return plan }
        var p = plan
        switch s.driver {
        case .file: p.backend.kind = .file(path: s.image)
        case .qcow2:
            var q = Qcow2Spec(path: s.image)
            if case let .qcow2(old) = plan.backend.kind {
                q.l2CacheSize = old.l2CacheSize
                q.discardUnmap = old.discardUnmap
            }
            p.backend.kind = .qcow2(q)
        case .nbd:
            guard let n = try? NetworkURI.nbd(s.image) else { return plan }
            p.backend.kind = .nbd(n)
        case .rbd:
            guard let r = try? NetworkURI.rbd(s.image) else { return plan }
            p.backend.kind = .rbd(r)
        }
        // A network image has no file under it to open directly or share.
        if p.backend.isNetwork {
            p.backend.direct = false
            p.backend.forceShare = false
        }
        // The previous server may have died between recording the switch and rewriting the
        // configuration: finish that, or the unit would start the old image at the next boot.
        if persistent.isPersistent(plan.deviceName) {
            do {
                try persistent.follow(name: plan.deviceName, image: s.image, format: s.driver == .qcow2 ? .qcow2 : .raw,
                                      warn: { self.logger?.warning("\($0)") })
            } catch {
                logger?.warning("export \(plan.deviceName) is on \(s.image), but its configuration cannot follow: \(error)")
            }
        }
        return p
    }

    /// The open probe of a `--record` server: a file that a record says its export was switched
    /// away from (a commit or mirror may have deleted it) is probed as the image served instead;
    /// `resuming` then gives the export that image.
    package static func switchedProbe(state: StateDirectory) -> @Sendable (String, Bool) -> ServeConfiguration.OpenResult {
        { path, writable in
            let resolved = canonicalPath(path)
            if let s = state.all().lazy.compactMap(\.switched).first(where: { $0.origin == resolved }) {
                // Moved to a network image: the file node only has to pass for the file it was.
                if NetworkURI.isURI(s.image) {
                    if case .failed = ServeConfiguration.probeOpen(path, writable) { return .regularFile }
                    return ServeConfiguration.probeOpen(path, writable)
                }
                return ServeConfiguration.probeOpen(s.image, writable)
            }
            return ServeConfiguration.probeOpen(path, writable)
        }
    }

    package func switched(_ change: BackendSwitch) throws {
        let driver: SwitchedImage.Driver
        switch change.to.kind {
        case .file: driver = .file
        case .qcow2: driver = .qcow2
        case .nbd: driver = .nbd
        case .rbd: driver = .rbd
        case .null: throw ExportError("the record cannot name \(change.to.pathDescription)", code: .invalidOptions)
        }
        // A configuration that cannot follow refuses the switch before anything is written.
        let format: AddRequest.Format = driver == .qcow2 ? .qcow2 : .raw
        let followed = persistent.isPersistent(change.name)
            ? try persistent.followedText(name: change.name, image: change.to.pathDescription, format: format) : nil
        func follow() throws {
            guard let followed else { return }
            try persistent.write(followed: followed, name: change.name, image: change.to.pathDescription,
                                 warn: { self.logger?.warning("\($0)") })
        }
        guard settings.record, var r = settings.state.read(change.name) else {
            try follow()
            return
        }
        let previous = r
        let origin = r.switched?.origin ?? r.image
        r.image = change.to.pathDescription
        r.switched = r.image == origin ? nil : SwitchedImage(origin: origin, image: r.image, driver: driver)
        // `add --overlay`'s overlay is now under the new image (or merged): `del` must leave it.
        r.overlay = nil
        r.base = nil
        // The record first, then the configuration: a server that dies between the two comes back
        // (`resuming`) on the new image and makes the configuration follow then. The other order
        // would leave a window where the restarted server serves the old image and writes to it
        // while the configuration names the new one, which the unit would start at the next boot.
        try settings.state.write(r)
        _ = TestCrash.reached(.afterSwitch)
        do {
            try follow()
        } catch {
            // The switch does not happen: the record names the image served again.
            try? settings.state.write(previous)
            throw error
        }
    }

    package func add(_ plan: ExportPlan, _ status: ExportStatus) throws {
        guard settings.record else { return }
        let image = Self.recordedImage(plan)
        var record = ExportRecord(name: plan.deviceName, id: plan.id, device: status.device,
                                  image: image,
                                  size: status.sizeBytes, queues: plan.numQueues, serial: plan.serial,
                                  readOnly: !plan.writable, pid: getpid(), socket: settings.qmpSocket,
                                  restarts: status.restarts, supervisor: Supervisor.ofThisProcess)
        record.version = VDUSEExportVersion.string
        try settings.state.write(record.keepingCreation(from: settings.state.read(plan.deviceName)))
        kept.withLock {
            $0.names.insert(plan.deviceName)
            $0.idNames[plan.id] = plan.deviceName
        }
        // A job file left by a server that is gone (its jobs went with it).
        settings.state.writeJob(nil, name: plan.deviceName)
    }

    /// The job on export `id` (nil: gone), beside its record.
    package func job(export id: String, _ info: JobInfo?) {
        guard settings.record, let name = kept.withLock({ $0.idNames[id] }) else { return }
        settings.state.writeJob(info.map { JobRecord($0, pid: getpid()) }, name: name)
    }

    package func resized(name: String, to bytes: UInt64) {
        // (the record's other fields, `created` among them, stay as they are)
        guard settings.record, var r = settings.state.read(name) else { return }
        r.size = bytes
        try? settings.state.write(r)
    }

    package func remove(name: String) {
        let wasKept = kept.withLock { kept in
            guard kept.names.remove(name) != nil else { return false }
            kept.idNames = kept.idNames.filter { $0.value != name }
            return true
        }
        guard wasKept else { return }
        unlink(settings.state.recordPath(name))
        settings.state.writeJob(nil, name: name)
    }

    package func removeAll() {
        // The QMP socket is removed by its server, and only if it is still its own: a server
        // that failed to start must not remove the socket of the one that owns the name.
        for name in kept.withLock({ $0.names }) { remove(name: name) }
    }
}

extension JobRecord {
    init(_ info: JobInfo, pid: Int32) {
        self.init(pid: pid, id: info.id, type: info.type.rawValue, status: info.status.rawValue, offset: info.offset, length: info.length)
    }
}
