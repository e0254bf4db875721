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
    /// The name is exported already with another image, or is held by something else (the
    /// image by another writer, QEMU's image locks).
    case conflict = 3
    /// The kernel side failed: no VDUSE, device creation refused, no disk appeared.
    case kernel = 4
    /// `del` refused: the disk is mounted, held or open.
    case busy = 5
    /// `del`: no export of that name.
    case notFound = 6
    /// A job (commit, mirror) was cancelled by SIGINT or SIGTERM: the disk stays where it was.
    case cancelled = 130
}

extension ExitStatus {
    /// The status a failure maps to: locked images and held names are conflicts, bad input is
    /// invalid options, the rest is the kernel side.
    public static func of(_ error: any Error) -> ExitStatus {
        switch error {
        case let e as ProvisioningError: e.status
        case is OptionError: .invalidOptions
        case let e as ExportError where e.code == .busy: .conflict
        default: .kernel
        }
    }
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
    public func whileLocked<T>(until deadline: Date?, _ body: () throws -> T) throws -> T {
        try state.prepare()
        let fd = open(state.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ProvisioningError(.kernel, "cannot open \(state.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }  // releases the lock
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                throw ProvisioningError(.kernel, "cannot lock \(state.path): \(String(cString: strerror(errno)))")
            }
            if let deadline, Date() >= deadline {
                throw ProvisioningError(.kernel, "timed out waiting for another vduse-export add to finish")
            }
            usleep(20_000)
        }
        return try body()
    }

    /// Starts a daemonized server for `request` (already checked) and waits until its disk is
    /// usable, or until `deadline` (then the server is stopped). `serveArguments` are the full
    /// `serve` arguments; `executable` is this program unless a test says otherwise.
    public func start(_ request: AddRequest, serveArguments: [String], deadline: Date? = nil,
                      executable: String? = nil) throws -> ExportRecord {
        try state.prepare()
        let name = request.resolvedName
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ProvisioningError(.kernel, "pipe: \(String(cString: strerror(errno)))") }
        // Both ends close-on-exec: the child gets the write end only as its fd 3 (dup2 clears the
        // flag there), so the read below sees EOF as soon as the server closes it or dies.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let exe = executable
            ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        // The supervisor starts the server (handing it the readiness pipe) and starts it again
        // after a crash or a hand-over.
        let argv = [exe, "supervise", "--ready-fd", "3", "--", exe, "serve"] + serveArguments
            + ["--ready-fd", "3", "--qmp", state.socketPath(name), "--record"]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let logExisted = access(state.logPath(name), F_OK) == 0
        let r = cvduse_spawn_daemon(exe, &cargs, fds[1], state.logPath(name), "/", &pid)
        close(fds[1])
        guard r == 0 else {
            close(fds[0])
            throw ProvisioningError(.kernel, "cannot start the server: \(String(cString: strerror(-r)))")
        }
        // The server writes one JSON line when ready, or "error: STATUS MESSAGE" and exits; the
        // supervisor keeps the pipe for later runs, so a ready line ends the wait, not EOF.
        guard let reply = Self.readReply(fds[0], until: deadline) else {
            close(fds[0])
            Self.stop(pid)
            throw ProvisioningError(.kernel, "the disk of '\(name)' was not ready within the time limit (--timeout); its server was stopped (log: \(state.logPath(name)))")
        }
        close(fds[0])
        let lines = String(decoding: reply, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let index = lines.firstIndex(where: { $0.hasPrefix("error: ") }) {
            var waitStatus: Int32 = 0
            waitpid(pid, &waitStatus, 0)
            // The message may span lines (QEMU's lock hint).
            let rest = ([String(lines[index].dropFirst(7))] + lines[(index + 1)...]).joined(separator: "\n")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            // A refusal leaves nothing behind: the log this attempt created holds only the message
            // the user gets now. Kept if it was there before, or if another export of this name
            // has appeared meanwhile (a record or a control socket): that one may be writing it.
            if !logExisted, state.lookup(name) == .missing, access(state.socketPath(name), F_OK) != 0 {
                unlink(state.logPath(name))
            }
            let code = rest.split(separator: " ", maxSplits: 1)
            if code.count == 2, let n = Int32(code[0]), let status = ExitStatus(rawValue: n) {
                throw ProvisioningError(status, String(code[1]))
            }
            throw ProvisioningError(.kernel, rest)
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

    /// Up to the end of a first line that is not an error, or else to EOF; nil when `deadline`
    /// passes first.
    static func readReply(_ fd: Int32, until deadline: Date?) -> Data? {
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let wait = deadline.map { Int32(max(0, min($0.timeIntervalSinceNow * 1000, 60_000))) } ?? -1
            let ready = poll(&p, 1, wait)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                if let deadline, Date() >= deadline { return nil }
                continue
            }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { return data }
            data.append(contentsOf: chunk[0..<n])
            if let newline = data.firstIndex(of: 0x0a), !data[..<newline].starts(with: Array("error: ".utf8)) {
                return data
            }
        }
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
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: entry) && !FileManager.default.fileExists(atPath: "/run/udev/queue") {
                return
            }
            usleep(10_000)
        }
    }
}
