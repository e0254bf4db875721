import Kernel
import QAPI
import QMP
import Core
import Foundation
import Glibc
import Synchronization

/// One line on the readiness pipe, as JSON: `{"ready": STATUS}` for each export that is ready,
/// or `{"failed": {"status": N, "message": "..."}}` (N: the exit status the server ends with).
public enum ReadinessMessage: Codable, Equatable, Sendable {
    case ready(ExportStatus)
    case failed(Failure)

    public struct Failure: Codable, Equatable, Sendable {
        public var status: Int32
        public var message: String
    }

    private enum CodingKeys: String, CodingKey { case ready, failed }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let status = try c.decodeIfPresent(ExportStatus.self, forKey: .ready) {
            self = .ready(status)
        } else {
            self = .failed(try c.decode(Failure.self, forKey: .failed))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case let .ready(status): try c.encode(status, forKey: .ready)
        case let .failed(failure): try c.encode(failure, forKey: .failed)
        }
    }

    /// Reads the next message from the pipe; nil at EOF, or for a line that is none (a server
    /// of another version). Past `deadline`: `ETIMEDOUT`.
    static func read(_ lines: inout LineReader, until deadline: Deadline? = nil) throws(SystemError) -> ReadinessMessage? {
        guard let line = try lines.next(until: deadline) else { return nil }
        return try? JSONDecoder().decode(ReadinessMessage.self, from: Data(line))
    }
}

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
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        guard let address = UnixSocketAddress(path) else { return }
        _ = address.withSockaddr { sa, length in
            message.withCString { sendto(fd, $0, strlen($0), 0, sa, length) }
        }
    }
}
