import Kernel
import QAPI
import QMP
import Wire
import Foundation
import Glibc
import Logging

/// The name `add`, `del` and the other client verbs used for their errors: the same type.
public typealias ProvisioningError = ExportError

/// `add`, `list` and `del`: exports as named, long-lived objects on the host. Each export is
/// served by its own daemonized `serve` process, which records itself in the state directory.
public struct Provisioner: Sendable {
    public let state: StateDirectory
    public let logger: Logger
    /// Removes the device of a server that is gone, trying each plan in turn (the image, then a
    /// null backend): serving it takes the block server, which this target does not link, so the
    /// command line hands in Server's `OrphanCleanup`. Without it such a `del` fails.
    public let removeOrphan: (@Sendable (_ plans: [ExportPlan]) throws -> Void)?
    /// Opens a network image read-only and says its size and whether its first MiB reads as
    /// zeros (`mirror` to nbd:// or rbd:): that takes the backends, so the command line hands in
    /// Server's `NetworkTargetProbe`. Without it such a mirror fails.
    public let probeTarget: (@Sendable (_ spec: BackendSpec) throws -> (size: UInt64, headIsZero: Bool))?

    public init(state: StateDirectory = .standard, logger: Logger,
                removeOrphan: (@Sendable (_ plans: [ExportPlan]) throws -> Void)? = nil,
                probeTarget: (@Sendable (_ spec: BackendSpec) throws -> (size: UInt64, headIsZero: Bool))? = nil) {
        self.state = state
        self.logger = logger
        self.removeOrphan = removeOrphan
        self.probeTarget = probeTarget
    }

    /// What `add` does when the name exists: the same image → the existing export (idempotent).
    public func existing(_ request: AddRequest) throws -> ExportRecord? {
        let name = request.resolvedName
        let record: ExportRecord
        switch state.lookup(name) {
        case .missing: return nil
        case let .damaged(path):
            throw ProvisioningError(.conflict, "the state record of export '\(name)' (\(path)) is damaged: run 'vduse-export del \(name)' to remove the export")
        case let .found(r): record = r
        }
        guard record.image == request.absoluteImage else {
            throw ProvisioningError(.conflict, "export '\(name)' already exists with another image (\(record.image))")
        }
        // A dead server's export: the caller starts a new server, which takes the device over.
        return record.state == .running ? record : nil
    }

    /// Runs `body` while holding the state directory's lock, so that concurrent `add`s take
    /// turns: the second sees the first's record and returns the same disk. Gives up at `deadline`.
    public func whileLocked<T>(until deadline: Deadline?, _ body: () throws -> T) throws -> T {
        try state.prepare()
        let directory = try openDirectory()  // closing it releases the lock
        while flock(directory.rawValue, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                throw ExportError(.kernel, "cannot lock \(state.path)", because: SystemError("flock", errno: errno))
            }
            if let deadline, deadline.hasPassed {
                throw ProvisioningError(.kernel, "timed out waiting for another vduse-export add to finish")
            }
            usleep(20_000)
        }
        return try withExtendedLifetime(directory) { try body() }
    }

    private func openDirectory() throws(ExportError) -> UniqueFD {
        do { return try UniqueFD(open: state.path, O_RDONLY | O_DIRECTORY) } catch {
            throw ExportError(.kernel, "cannot open \(state.path)", because: error)
        }
    }

    /// Starts a daemonized server for `request` (already checked) and waits until its disk is
    /// usable, or until `deadline` (then the server is stopped). `serveArguments` are the full
    /// `serve` arguments; `executable` is this program unless a test says otherwise.
    public func start(_ request: AddRequest, serveArguments: [String], deadline: Deadline? = nil,
                      executable: String? = nil) throws -> ExportRecord {
        try state.prepare()
        let name = request.resolvedName
        // The child gets the write end only as its fd 3, so the read below sees EOF as soon as
        // the server closes it or dies.
        let pipe: Subprocess.Pipe
        do { pipe = try Subprocess.Pipe() } catch { throw ProvisioningError(.kernel, "pipe: \(error.reason)") }
        let exe = executable
            ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        // The supervisor starts the server (handing it the readiness pipe) and starts it again
        // after a crash or a hand-over.
        let argv = [exe, "supervise", "--ready-fd", "3", "--", exe, "serve"] + serveArguments
            + ["--ready-fd", "3", "--qmp", state.socketPath(name), "--record"]
        let logExisted = access(state.logPath(name), F_OK) == 0
        let pid: pid_t
        do {
            pid = try Subprocess.spawnDaemon(exe, argv: argv, fd3: pipe.write.rawValue, log: state.logPath(name), directory: "/")
        } catch {
            throw ProvisioningError(.kernel, "cannot start the server: \(error.reason)")
        }
        let reader = pipe.readEnd()
        // The server writes a ready message when its disk is ready, or why it failed and exits;
        // the supervisor keeps the pipe for later runs, so the first message ends the wait, not EOF.
        var lines = LineReader(fd: reader.rawValue)
        let message: ReadinessMessage?
        do {
            message = try ReadinessMessage.read(&lines, until: deadline)
        } catch {
            Self.stop(pid)
            guard error.errno == .timedOut else {
                throw ProvisioningError(.kernel, "cannot read the readiness of '\(name)': \(error); its server was stopped (log: \(state.logPath(name)))")
            }
            throw ProvisioningError(.kernel, "the disk of '\(name)' was not ready within the time limit (--timeout); its server was stopped (log: \(state.logPath(name)))")
        }
        reader.close()
        let status: ExportStatus
        switch message {
        case let .ready(ready)?:
            status = ready
        case let .failed(failure)?:
            var waitStatus: Int32 = 0
            waitpid(pid, &waitStatus, 0)
            // A refusal leaves nothing behind: the log this attempt created holds only the message
            // the user gets now. Kept if it was there before, or if another export of this name
            // has appeared meanwhile (a record or a control socket): that one may be writing it.
            if !logExisted, state.lookup(name) == .missing, access(state.socketPath(name), F_OK) != 0 {
                unlink(state.logPath(name))
            }
            throw ProvisioningError(ExitStatus(rawValue: failure.status) ?? .kernel, failure.message)
        case nil:
            var waitStatus: Int32 = 0
            waitpid(pid, &waitStatus, 0)
            throw ProvisioningError(.kernel, "the server exited before its disk was ready (log: \(state.logPath(name)))")
        }
        Udev.settle(device: status.device)
        logger.info("export \(name) ready: \(status.device), server pid \(pid)")
        return state.read(name) ?? ExportRecord(
            name: name, id: status.id, device: status.device, image: request.absoluteImage, size: status.sizeBytes,
            queues: status.numQueues, serial: status.serial, readOnly: request.readOnly, pid: pid,
            socket: state.socketPath(name))
    }

    /// SIGTERM (the server removes what it created), then SIGKILL after 10 s; reaps it.
    static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<500 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    /// `restart NAME`: asks the running server to hand its exports over (SIGUSR2) and waits until
    /// a new server process has taken them over and recorded itself.
    public func restart(name: String, timeout: TimeInterval) throws -> ExportRecord {
        guard let record = state.read(name) else { throw ProvisioningError(.notFound, "no export named '\(name)'") }
        guard record.state == .running else {
            throw ProvisioningError(.notFound, "the server of '\(name)' (pid \(record.pid)) is not running: 'vduse-export add' it again to take the device over")
        }
        guard kill(record.pid, SIGUSR2) == 0 else {
            throw ExportError(.kernel, "cannot signal the server of '\(name)' (pid \(record.pid))", because: SystemError("kill", errno: errno))
        }
        let deadline = Deadline.after(seconds: timeout)
        while !deadline.hasPassed {
            if let now = state.read(name), now.pid != record.pid, now.state == .running,
               (now.restarts ?? 0) > (record.restarts ?? 0) {
                logger.info("export \(name): server \(record.pid) handed over to \(now.pid)")
                return now
            }
            usleep(20_000)
        }
        throw ProvisioningError(.kernel, "no new server took '\(name)' over within \(Int(timeout)) s (log: \(state.logPath(name)))")
    }

    /// Every export with a record, plus VDUSE devices on the host that have none ("unmanaged")
    /// or a damaged one ("damaged").
    public func list() -> [(record: ExportRecord, state: ExportState)] {
        var out = state.all().map { ($0, $0.state) }
        let known = Set(out.map(\.0.name))
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/vduse")) ?? []).sorted()
        where name != "control" && !known.contains(name) {
            let device = DiskLocator.currentDisk(vdpaName: name) ?? ""
            let damaged = if case .damaged = state.lookup(name) { true } else { false }
            let pid = damaged ? StateDirectory.serverHolding(vduseName: name) ?? 0 : 0
            out.append((ExportRecord(name: name, id: "", device: device, image: "", size: 0, queues: 0, serial: "",
                                     readOnly: false, pid: pid, socket: nil), damaged ? .damaged : .unmanaged))
        }
        return out
    }
}

/// Waiting for udev, where it runs, so that /dev/disk/by-* links exist when `add` returns:
/// udev has a database entry for the disk (/run/udev/data/bMAJOR:MINOR) and no events queued.
/// Read from udev's run-time files rather than `udevadm settle`, which refuses to work in a chroot.
package enum Udev {
    package static func settle(device: String, timeout: TimeInterval = 30) {
        guard FileManager.default.fileExists(atPath: "/run/udev/control") else { return }
        let disk = (device as NSString).lastPathComponent
        guard let number = try? String(contentsOfFile: "/sys/class/block/\(disk)/dev", encoding: .utf8) else { return }
        let entry = "/run/udev/data/b" + number.trimmingCharacters(in: .whitespacesAndNewlines)
        let deadline = Deadline.after(seconds: timeout)
        while !deadline.hasPassed {
            if FileManager.default.fileExists(atPath: entry) && !FileManager.default.fileExists(atPath: "/run/udev/queue") {
                return
            }
            usleep(10_000)
        }
    }
}
