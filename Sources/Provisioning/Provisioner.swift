import Kernel
import QAPI
import QMP
import Core
import CVDUSE
import Foundation
import Glibc
import Logging

/// Exit statuses of the provisioning commands (documented in README).
public enum ExitStatus: Int32, Sendable {
    case success = 0
    /// Invalid options (QEMU's messages).
    case invalidOptions = 1
    /// The name is exported already with another image, or is held by something else.
    case conflict = 3
    /// The kernel side failed: no VDUSE, device creation refused, no disk appeared.
    case kernel = 4
    /// `del` refused: the disk is mounted, held or open.
    case busy = 5
    /// `del`: no export of that name.
    case notFound = 6
}

/// A failure with the exit status it maps to.
public struct ProvisioningError: Error, CustomStringConvertible, Sendable {
    public let status: ExitStatus
    public let description: String
    public init(_ status: ExitStatus, _ message: String) {
        self.status = status
        description = message
    }
}

/// `add`, `list` and `del`: exports as named, long-lived objects on the host. Each export is
/// served by its own daemonized `serve` process, which records itself in the state directory.
public struct Provisioner: Sendable {
    public let state: StateDirectory
    public let logger: Logger

    public init(state: StateDirectory = .standard, logger: Logger) {
        self.state = state
        self.logger = logger
    }

    /// What `add` does when the name exists: the same image → the existing export (idempotent).
    public func existing(_ request: AddRequest) throws -> ExportRecord? {
        let name = request.resolvedName
        guard let record = state.read(name) else { return nil }
        guard record.image == request.absoluteImage else {
            throw ProvisioningError(.conflict, "export '\(name)' already exists with another image (\(record.image))")
        }
        // A dead server's export: the caller starts a new server, which takes the device over.
        return record.state == .running ? record : nil
    }

    /// Starts a daemonized server for `request` (already checked) and waits until its disk is
    /// usable. `serveArguments` are the full `serve` arguments.
    public func start(_ request: AddRequest, serveArguments: [String]) throws -> ExportRecord {
        try state.prepare()
        let name = request.resolvedName
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ProvisioningError(.kernel, "pipe: \(String(cString: strerror(errno)))") }
        // Both ends close-on-exec: the child gets the write end only as its fd 3 (dup2 clears the
        // flag there), so the read below sees EOF as soon as the server closes it or dies.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        // The supervisor starts the server (handing it the readiness pipe) and starts it again
        // after a crash or a hand-over.
        let argv = [exe, "supervise", "--ready-fd", "3", "--", exe, "serve"] + serveArguments
            + ["--ready-fd", "3", "--qmp", state.socketPath(name), "--record"]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let r = cvduse_spawn_daemon(exe, &cargs, fds[1], state.logPath(name), &pid)
        close(fds[1])
        guard r == 0 else {
            close(fds[0])
            throw ProvisioningError(.kernel, "cannot start the server: \(String(cString: strerror(-r)))")
        }
        // The server writes one JSON line when ready, or "error: STATUS MESSAGE", then closes.
        let reply = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile()
        let lines = String(decoding: reply, as: UTF8.self).split(separator: "\n").map(String.init)
        if let error = lines.first(where: { $0.hasPrefix("error: ") }) {
            var waitStatus: Int32 = 0
            waitpid(pid, &waitStatus, 0)
            let rest = error.dropFirst(7)
            let code = rest.split(separator: " ", maxSplits: 1)
            if code.count == 2, let n = Int32(code[0]), let status = ExitStatus(rawValue: n) {
                throw ProvisioningError(status, String(code[1]))
            }
            throw ProvisioningError(.kernel, String(rest))
        }
        guard let first = lines.first, let status = try? JSONDecoder().decode(ExportStatus.self, from: Data(first.utf8)) else {
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

    /// `restart NAME`: asks the running server to hand its exports over (SIGUSR2) and waits until
    /// a new server process has taken them over and recorded itself.
    public func restart(name: String, timeout: TimeInterval) throws -> ExportRecord {
        guard let record = state.read(name) else { throw ProvisioningError(.notFound, "no export named '\(name)'") }
        guard record.state == .running else {
            throw ProvisioningError(.notFound, "the server of '\(name)' (pid \(record.pid)) is not running: 'vduse-export add' it again to take the device over")
        }
        guard kill(record.pid, SIGUSR2) == 0 else {
            throw ProvisioningError(.kernel, "cannot signal the server of '\(name)' (pid \(record.pid)): \(String(cString: strerror(errno)))")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let now = state.read(name), now.pid != record.pid, now.state == .running,
               (now.restarts ?? 0) > (record.restarts ?? 0) {
                logger.info("export \(name): server \(record.pid) handed over to \(now.pid)")
                return now
            }
            usleep(20_000)
        }
        throw ProvisioningError(.kernel, "no new server took '\(name)' over within \(Int(timeout)) s (log: \(state.logPath(name)))")
    }

    /// Every export with a record, plus VDUSE devices on the host that have none.
    public func list() -> [(record: ExportRecord, state: ExportState)] {
        var out = state.all().map { ($0, $0.state) }
        let known = Set(out.map(\.0.name))
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/vduse")) ?? []).sorted()
        where name != "control" && !known.contains(name) {
            let device = DiskLocator.currentDisk(vdpaName: name) ?? ""
            out.append((ExportRecord(name: name, id: "", device: device, image: "", size: 0, queues: 0, serial: "",
                                     readOnly: false, pid: 0, socket: nil), .unmanaged))
        }
        return out
    }

    /// Removes the export `name`: refuses while its disk is in use unless `force`; stops a live
    /// server (SIGTERM, then waits), or cleans up after a dead one.
    public func delete(name: String, force: Bool, timeout: TimeInterval = 120) throws {
        guard let record = state.read(name) else {
            if FileManager.default.fileExists(atPath: "/dev/vduse/\(name)") {
                throw ProvisioningError(.notFound, "no export named '\(name)' is managed here (/dev/vduse/\(name) belongs to another program)")
            }
            throw ProvisioningError(.notFound, "no export named '\(name)'")
        }
        let alive = StateDirectory.processAlive(record.pid)
        if !force, !record.device.isEmpty, FileManager.default.fileExists(atPath: record.device) {
            let users = DeviceUsage.users(of: record.device, ignoringPID: record.pid)
            if !users.isEmpty {
                throw ProvisioningError(.busy, "export '\(name)' is in use: \(users.joined(separator: "; ")) (use --force to delete anyway)")
            }
        }
        // A server with other exports too (serve --record with several): delete just this one.
        let siblings = state.all().filter { $0.pid == record.pid && $0.name != name }
        if alive, !siblings.isEmpty, let socket = record.socket {
            do {
                _ = try QMPClient.execute(socket: socket, command: "block-export-del", arguments: .object([("id", .string(record.id))]))
            } catch {
                throw ProvisioningError(.kernel, "cannot delete '\(name)' through its server's QMP socket: \(error)")
            }
            return  // the server removed its record

        }
        if alive {
            kill(record.pid, SIGTERM)
            let deadline = Date().addingTimeInterval(timeout)
            while StateDirectory.processAlive(record.pid) && Date() < deadline { usleep(20_000) }
            guard !StateDirectory.processAlive(record.pid) else {
                throw ProvisioningError(.kernel, "the server of '\(name)' (pid \(record.pid)) did not stop within \(Int(timeout)) s")
            }
        }
        if FileManager.default.fileExists(atPath: "/dev/vduse/\(name)") {
            // Dead server (or one that could not finish): reconnect and tear down ourselves.
            // The idle disk is served until it is gone: a qcow2 image must not be written as raw.
            let kind: BackendSpec.Kind = AddRequest(image: record.image).resolvedFormat == .qcow2
                ? .qcow2(Qcow2Spec(path: record.image)) : .file(path: record.image)
            let plan = ExportPlan(id: record.id, deviceName: name, backend: BackendSpec(kind: kind, readOnly: record.readOnly),
                                  writable: !record.readOnly, numQueues: max(record.queues, 1), serial: record.serial)
            do {
                let manager = try ExportManager(iothreads: [], logger: logger)
                defer { manager.shutdown() }
                try manager.removeOrphan(plan)
            } catch {
                throw ProvisioningError(.kernel, "cannot clean up '\(name)': \(error)")
            }
        }
        state.remove(name)
        unlink(state.logPath(name))
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
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: entry) && !FileManager.default.fileExists(atPath: "/run/udev/queue") {
                return
            }
            usleep(10_000)
        }
    }
}
