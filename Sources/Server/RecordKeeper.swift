import Core
import Foundation
import Glibc
import Kernel
import QAPI
import Synchronization
import Wire

/// Keeps the state-directory records of this server's exports in step with them.
package final class RecordKeeper: ExportObserver {
    private let settings: ServeSettings
    private let names = Mutex<Set<String>>([])

    package init(settings: ServeSettings) { self.settings = settings }

    /// The image a record names for `plan`: paths resolved; a network export's URI (no secrets
    /// in it) as it is.
    static func recordedImage(_ plan: ExportPlan) -> String {
        var image = plan.backend.pathDescription
        if !image.hasPrefix("/"), case .file = plan.backend.kind {
            image = FileManager.default.currentDirectoryPath + "/" + image
        }
        if !plan.backend.isNetwork { image = URL(fileURLWithPath: image).standardizedFileURL.resolvingSymlinksInPath().path }
        return image
    }

    /// `plan`, or the same export over the image a live switch moved it to, when the record of
    /// its previous server (gone: killed, crashed or handed over) says so for this configuration.
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
        }
        return p
    }

    /// The open probe of a `--record` server: a file that a record says its export was switched
    /// away from (a commit or mirror may have deleted it) is probed as the image served instead;
    /// `resuming` then gives the export that image.
    package static func switchedProbe(state: StateDirectory) -> @Sendable (String, Bool) -> ServeConfiguration.OpenResult {
        { path, writable in
            let resolved = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
            if let s = state.all().lazy.compactMap(\.switched).first(where: { $0.origin == resolved }) {
                return ServeConfiguration.probeOpen(s.image, writable)
            }
            return ServeConfiguration.probeOpen(path, writable)
        }
    }

    package func switched(_ change: BackendSwitch) throws {
        // At boot the unit starts the image its configuration names, with no record to say
        // otherwise: a persistent disk would come back on an image it left. Refused until the
        // configuration follows the switch.
        if PersistentExports.standard.isPersistent(change.name) {
            throw ExportError("export '\(change.name)' is persistent (add --persist): its boot configuration cannot follow a snapshot, commit or mirror yet",
                              code: .invalidOptions)
        }
        guard settings.record, var r = settings.state.read(change.name) else { return }
        let driver: SwitchedImage.Driver
        switch change.to.kind {
        case .file: driver = .file
        case .qcow2: driver = .qcow2
        default: throw ExportError("the record cannot name \(change.to.pathDescription)", code: .invalidOptions)
        }
        let origin = r.switched?.origin ?? r.image
        r.image = change.to.pathDescription
        r.switched = r.image == origin ? nil : SwitchedImage(origin: origin, image: r.image, driver: driver)
        // `add --overlay`'s overlay is now under the new image (or merged): `del` must leave it.
        r.overlay = nil
        r.base = nil
        try settings.state.write(r)
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
        names.withLock { _ = $0.insert(plan.deviceName) }
    }

    package func resized(name: String, to bytes: UInt64) {
        // (the record's other fields, `created` among them, stay as they are)
        guard settings.record, var r = settings.state.read(name) else { return }
        r.size = bytes
        try? settings.state.write(r)
    }

    package func remove(name: String) {
        guard names.withLock({ $0.remove(name) }) != nil else { return }
        unlink(settings.state.recordPath(name))
    }

    package func removeAll() {
        // The QMP socket is removed by its server, and only if it is still its own: a server
        // that failed to start must not remove the socket of the one that owns the name.
        for name in names.withLock({ $0 }) { remove(name: name) }
    }
}
