import Kernel
import QAPI
import QMP
import Core
import CVDUSE
import Foundation
import Glibc
import Logging
import Wire

/// How `serve` runs: where it reports readiness, whether it records its exports for
/// `list`/`del`, and whether it offers a QMP socket.
public struct ServeSettings: Sendable {
    public typealias Binding = ExportManager.Binding
    public var readiness: ReadinessChannel
    public var qmpSocket: String?
    /// Write a record per export into the state directory (and remove it at exit).
    public var record: Bool
    public var state: StateDirectory
    /// Who binds the devices to the vdpa bus (`.caller`: qemu-storage-daemon's way).
    public var binding: Binding = .server
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

