import Kernel
import Foundation
import Glibc
import Synchronization
import Wire

/// How a server tells whoever started it that its disks are ready (or why it failed):
/// - a pipe inherited as `--ready-fd N` (used by `add`, which daemonizes the server): one
///   `ReadinessMessage` line per ready export, or one saying why it failed, then the pipe is closed;
/// - systemd's `NOTIFY_SOCKET` (Type=notify units): `READY=1` once every export is ready.
public final class ReadinessChannel: Sendable {
    /// The pipe's write end, owned here until `finish` closes it.
    private let pipe: Mutex<UniqueFD?>

    /// Takes ownership of `fd` (nil: no pipe, systemd only).
    public init(fd: Int32?) {
        if let fd { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        pipe = Mutex(fd.map { UniqueFD(taking: $0) })
    }

    public func ready(_ status: ExportStatus) {
        send(.ready(status))
    }

    /// The server will exit with `status` because of `message`.
    public func failed(status: Int32, message: String) {
        send(.failed(.init(status: status, message: message)))
    }

    private func send(_ message: ReadinessMessage) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let line = try? encoder.encode(message) else { return }
        pipe.withLock { fd in
            if let raw = fd?.rawValue { writeLine(raw, line) }
        }
    }

    /// Closes the pipe (the starter sees EOF) and tells systemd, if it asked.
    public func finish() {
        pipe.withLock { fd in fd = nil }
        SystemdNotify.send("READY=1")
    }
}

/// sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET`.
public enum SystemdNotify {
    public static func send(_ message: String) {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        if path.hasPrefix("@") { path = "\0" + path.dropFirst() }  // abstract socket
        let raw = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { return }
        let fd = UniqueFD(taking: raw)
        guard let address = UnixSocketAddress(path) else { return }
        _ = address.withSockaddr { sa, length in
            message.withCString { sendto(fd.rawValue, $0, strlen($0), 0, sa, length) }
        }
    }
}
