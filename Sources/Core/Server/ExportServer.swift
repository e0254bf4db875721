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
    /// Run in a private mount namespace.
    public var privateMountNamespace: Bool

    public init(readiness: ReadinessChannel = ReadinessChannel(fd: nil), qmpSocket: String? = nil, record: Bool = false,
                state: StateDirectory = .standard, privateMountNamespace: Bool = true) {
        self.readiness = readiness
        self.qmpSocket = qmpSocket
        self.record = record
        self.state = state
        self.privateMountNamespace = privateMountNamespace
    }
}

/// Runs a server until SIGINT/SIGTERM or QMP `quit`, then deletes every export (the kernel's
/// order: vdpa DEV_DEL, close, VDUSE_DESTROY_DEV) and returns. A failure while creating the
/// command line's exports undoes what was created and is thrown.
public enum ExportServer {
    public static func run(_ configuration: ServeConfiguration, settings: ServeSettings, logger: Logger,
                           onReady: (ExportStatus) -> Void) throws {
        // Signals are taken by sigwait on this thread only; block them before any thread starts.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        if settings.privateMountNamespace {
            do { try MountNamespace.enterPrivate() } catch { logger.warning("\(error)") }
        }
        let manager = try ExportManager(iothreads: configuration.iothreads, logger: logger)
        let records = RecordKeeper(settings: settings)
        defer {
            manager.shutdown()
            records.removeAll()
        }
        for plan in configuration.exports {
            let status = try manager.add(plan)
            records.add(plan, status)
            settings.readiness.ready(status)
            onReady(status)
        }
        var qmp: QMPServer?
        defer { qmp?.stop() }
        if let path = settings.qmpSocket {
            let commands = QMPCommands(manager: manager, configuration: configuration, records: records, logger: logger)
            qmp = try QMPServer(path: path, logger: logger, handler: commands.handle)
            qmp?.start()
        }
        settings.readiness.finish()
        var received: Int32 = 0
        sigwait(&signals, &received)
        logger.info("signal \(received): shutting down")
    }
}

/// Keeps the state-directory records of this server's exports in step with them.
final class RecordKeeper: Sendable {
    private let settings: ServeSettings
    private let names = Mutex<Set<String>>([])

    init(settings: ServeSettings) { self.settings = settings }

    func add(_ plan: ExportPlan, _ status: ExportStatus) {
        guard settings.record else { return }
        var image = plan.backend.pathDescription
        if !image.hasPrefix("/"), case .file = plan.backend.kind {
            image = FileManager.default.currentDirectoryPath + "/" + image
        }
        let record = ExportRecord(name: plan.deviceName, id: plan.id, device: status.device,
                                  image: URL(fileURLWithPath: image).standardizedFileURL.resolvingSymlinksInPath().path,
                                  size: status.sizeBytes, queues: plan.numQueues, serial: plan.serial,
                                  readOnly: !plan.writable, pid: getpid(), socket: settings.qmpSocket)
        do {
            try settings.state.write(record)
            names.withLock { _ = $0.insert(plan.deviceName) }
        } catch {
            // The export works; only list/del will not see it.
        }
    }

    func resized(name: String, to bytes: UInt64) {
        guard settings.record, var r = settings.state.read(name) else { return }
        r.size = bytes
        try? settings.state.write(r)
    }

    func remove(name: String) {
        guard names.withLock({ $0.remove(name) }) != nil else { return }
        unlink(settings.state.recordPath(name))
    }

    func removeAll() {
        for name in names.withLock({ $0 }) { remove(name: name) }
        if settings.record, let path = settings.qmpSocket { unlink(path) }
    }
}

/// Finds the disk that virtio_blk made for a vdpa device.
enum DiskLocator {
    /// Waits (bounded) for /sys/bus/vdpa/devices/NAME/virtio*/block/vdX and its /dev node.
    static func waitForDisk(vdpaName: String, timeout: TimeInterval = 10) throws -> String {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let deadline = Date().addingTimeInterval(timeout)
        let fm = FileManager.default
        while Date() < deadline {
            if let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
               let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first {
                let node = "/dev/\(disk)"
                if fm.fileExists(atPath: node) { return node }
            }
            // Bound to another bus driver (vhost_vdpa): no disk will ever come.
            if let d = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map({ ($0 as NSString).lastPathComponent }),
               d != "virtio_vdpa" { break }
            usleep(10_000)
        }
        let driver = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map { ($0 as NSString).lastPathComponent }
        if driver == "vhost_vdpa" {
            throw ServeError("vdpa device '\(vdpaName)' was bound to vhost_vdpa, not virtio_vdpa: unload vhost_vdpa (modprobe -r vhost_vdpa) to get a /dev/vdX")
        }
        throw ServeError("no disk appeared for vdpa device '\(vdpaName)' within \(Int(timeout)) s (driver: \(driver ?? "none"); is virtio_vdpa loaded?)")
    }
}

extension DiskLocator {
    /// The disk of a vdpa device now, if any (no waiting).
    static func currentDisk(vdpaName: String) -> String? {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let fm = FileManager.default
        guard let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
              let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first else { return nil }
        return "/dev/\(disk)"
    }
}

/// Checks (and once tries to load) what the kernel needs: vduse, vdpa, virtio_vdpa, virtio_blk.
enum KernelSupport {
    static let modules = ["vduse", "virtio_vdpa", "virtio_blk"]

    static func ensureVDUSE(logger: Logger) throws {
        if FileManager.default.fileExists(atPath: VDUSEControl.path) && VDPANetlink.managementDeviceExists {
            return
        }
        logger.info("loading kernel modules: \(modules.joined(separator: " "))")
        _ = runQuietly("/sbin/modprobe", ["-a"] + modules)
        guard FileManager.default.fileExists(atPath: VDUSEControl.path) else {
            throw ServeError("this kernel has no VDUSE: \(VDUSEControl.path) is missing and 'modprobe vduse' failed (the kernel needs CONFIG_VDPA_USER and CONFIG_VIRTIO_VDPA; on such a host, try the test bed demo: see README)")
        }
        guard VDPANetlink.managementDeviceExists else {
            throw ServeError("the vdpa management device 'vduse' is not registered (vdpa netlink family missing?)")
        }
    }
}

/// Runs a helper program (modprobe) and waits for it; its exit status, or nil if it could not run.
@discardableResult
func runQuietly(_ path: String, _ arguments: [String]) -> Int32? {
    var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    let r = cvduse_run_quietly(path, &argv)
    return r < 0 ? nil : r
}
