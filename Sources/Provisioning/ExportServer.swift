import Kernel
import QAPI
import QMP
import Core
import CVDUSE
import Foundation
import Glibc
import Logging
import Synchronization

/// How `serve` runs: where it reports readiness, whether it records its exports for
/// `list`/`del`, and whether it offers a QMP socket.
public struct ServeSettings: Sendable {
    public var readiness: ReadinessChannel
    public var qmpSocket: String?
    /// Write a record per export into the state directory (and remove it at exit).
    public var record: Bool
    public var state: StateDirectory
    /// Who binds the devices to the vdpa bus (`.caller`: qemu-storage-daemon's way).
    public var binding: ExportManager.Binding = .server
    /// `--pidfile`: locked before anything is created, written once running, removed at exit.
    public var pidFile: String?
    /// `--daemonize`'s child: change to `/` once running (as qemu-storage-daemon), so the
    /// daemon keeps no directory busy.
    public var daemonized = false

    public init(readiness: ReadinessChannel = ReadinessChannel(fd: nil), qmpSocket: String? = nil, record: Bool = false,
                state: StateDirectory = .standard) {
        self.readiness = readiness
        self.qmpSocket = qmpSocket
        self.record = record
        self.state = state
    }
}

/// Runs a server until SIGINT/SIGTERM or QMP `quit`, then deletes every export (the kernel's
/// order: vdpa DEV_DEL, close, VDUSE_DESTROY_DEV) and returns `.stopped`. On SIGUSR2 it hands
/// its exports over instead (`vduse-export restart`): in-flight requests completed, devices
/// closed but kept, records kept; it returns `.handedOver` and the caller exits with
/// `ExportServer.handOverExitStatus`, which supervisors and systemd restart at once. A failure
/// while creating the command line's exports undoes what was created and is thrown.
public enum ExportServer {
    public enum Outcome: Sendable { case stopped, handedOver }

    /// Exit status of a server that handed its exports over (EX_TEMPFAIL): "start me again".
    public static let handOverExitStatus: Int32 = 75

    @discardableResult
    public static func run(_ configuration: ServeConfiguration, settings: ServeSettings, logger: Logger,
                           onReady: (ExportStatus) -> Void) throws -> Outcome {
        // Signals are taken by sigwait on this thread only; block them before any thread starts.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGUSR2] { sigaddset(&signals, s) }
        // Test only (TestCrash): SIGUSR1 arms the crash switch when the environment enabled it.
        if TestCrash.kindFile != nil { sigaddset(&signals, SIGUSR1) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        // A fault or trap ends the process at once, like a SIGKILL, so that the supervisor's
        // restart comes as fast; the Swift runtime's backtracer would hold the disk for seconds.
        _ = cvduse_install_crash_handlers()

        // A client that goes away (a QMP probe, an interrupted `add`) must cost a write an
        // EPIPE, not the server its life and the disk its server.
        signal(SIGPIPE, SIG_IGN)
        // No private mount namespace: a copy of the host's mounts would keep every file system
        // mounted at start alive in here after the host unmounts it (no flush, device busy). The
        // server mounts nothing, so it can never hold a mount of its own disk at exit either.
        let pidFile = try settings.pidFile.map { try PidFile(path: $0) }
        defer { pidFile?.remove() }
        // Modules first (modprobe needs CAP_SYS_MODULE), then the capabilities go, before the
        // first iothread: capabilities are per thread, and threads inherit them.
        try KernelSupport.ensureVDUSE(logger: logger)
        let confine = ServingConfinement(binding: settings.binding)
        try confine.limitCapabilities()
        let manager = try ExportManager(iothreads: configuration.iothreads, binding: settings.binding, logger: logger)
        let records = RecordKeeper(settings: settings, logger: logger)
        // A job's progress goes beside the record, for `list`.
        manager.jobs.setProgressObserver { records.job(export: $0, $1) }
        var outcome = Outcome.stopped
        defer {
            if outcome == .handedOver {
                manager.handOver()
            } else {
                manager.shutdown()
                records.removeAll()
            }
        }
        for configured in configuration.exports {
            // A disk moved to another image while running stays there (snapshot, commit, mirror).
            let plan = records.resuming(configured)
            let status = try manager.add(plan)
            // An export that list and del cannot see is unmanageable: fail instead.
            try records.add(plan, status)
            settings.readiness.ready(status)
            onReady(status)
        }
        var qmp: QMPServer?
        defer { qmp?.stop() }
        if let path = settings.qmpSocket {
            let commands = QMPCommands(manager: manager, configuration: configuration, records: records, logger: logger)
            let server = try QMPServer(path: path, logger: logger, handler: commands.handle)
            // Jobs report from their own threads, whenever a client is connected.
            manager.jobs.setEventSink { server.broadcast($0, $1) }
            qmp = server
            server.start()
        }
        try pidFile?.write()
        if settings.daemonized { _ = chdir("/") }
        try confine.restrictSystemCalls(logger: logger)
        settings.readiness.finish()
        var received: Int32 = 0
        sigwait(&signals, &received)
        while received == SIGUSR1 {
            if let kind = TestCrash.arm() {
                logger.warning("signal \(received): \(TestCrash.variable): crash (\(kind)) armed")
            } else {
                logger.warning("signal \(received): \(TestCrash.variable): no kind of crash in \(TestCrash.kindFile ?? "")")
            }
            sigwait(&signals, &received)
        }
        if received == SIGUSR2 {
            logger.info("signal \(received): handing the exports over to a new server")
            outcome = .handedOver
        } else {
            logger.info("signal \(received): shutting down")
        }
        return outcome
    }
}

/// Keeps the state-directory records of this server's exports in step with them.
package final class RecordKeeper: ExportObserver {
    private let settings: ServeSettings
    private let names = Mutex<Set<String>>([])
    /// Export id -> VDUSE name (the record's), for what the manager reports by id.
    private let idNames = Mutex<[String: String]>([:])
    private let logger: Logger?

    package init(settings: ServeSettings, logger: Logger? = nil) {
        self.settings = settings
        self.logger = logger
    }

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
        return p
    }

    /// The open probe of a `--record` server: a file that a record says its export was switched
    /// away from (a commit or mirror may have deleted it) is probed as the image served instead;
    /// `resuming` then gives the export that image.
    package static func switchedProbe(state: StateDirectory) -> @Sendable (String, Bool) -> ServeConfiguration.OpenResult {
        { path, writable in
            let resolved = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
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
        // At boot the unit starts the image its configuration names, with no record to say
        // otherwise: the configuration follows first, and is put back if the record cannot be.
        let persistent = PersistentExports.standard
        var previous: String?
        if persistent.isPersistent(change.name) {
            previous = try persistent.follow(name: change.name, image: change.to.pathDescription,
                                             format: driver == .qcow2 ? .qcow2 : .raw,
                                             warn: { self.logger?.warning("\($0)") })
        }
        guard settings.record, var r = settings.state.read(change.name) else { return }
        let origin = r.switched?.origin ?? r.image
        r.image = change.to.pathDescription
        r.switched = r.image == origin ? nil : SwitchedImage(origin: origin, image: r.image, driver: driver)
        // `add --overlay`'s overlay is now under the new image (or merged): `del` must leave it.
        r.overlay = nil
        r.base = nil
        do {
            try settings.state.write(r)
        } catch {
            if let previous { persistent.restore(name: change.name, text: previous) }
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
        names.withLock { _ = $0.insert(plan.deviceName) }
        idNames.withLock { $0[plan.id] = plan.deviceName }
        // A job file left by a server that is gone (its jobs went with it).
        settings.state.writeJob(nil, name: plan.deviceName)
    }

    /// The job on export `id` (nil: gone), beside its record.
    package func job(export id: String, _ info: JobInfo?) {
        guard settings.record, let name = idNames.withLock({ $0[id] }) else { return }
        settings.state.writeJob(info.map { JobRecord($0, pid: getpid()) }, name: name)
    }

    package func resized(name: String, to bytes: UInt64) {
        // (the record's other fields, `created` among them, stay as they are)
        guard settings.record, var r = settings.state.read(name) else { return }
        r.size = bytes
        try? settings.state.write(r)
    }

    package func remove(name: String) {
        guard names.withLock({ $0.remove(name) }) != nil else { return }
        idNames.withLock { $0 = $0.filter { $0.value != name } }
        unlink(settings.state.recordPath(name))
        settings.state.writeJob(nil, name: name)
    }

    package func removeAll() {
        // The QMP socket is removed by its server, and only if it is still its own: a server
        // that failed to start must not remove the socket of the one that owns the name.
        for name in names.withLock({ $0 }) { remove(name: name) }
    }
}

