import Kernel
import QAPI
import Foundation
import Glibc

/// A one-shot QMP client: connects to a server's control socket, negotiates capabilities, runs
/// one command and returns its `return` value or throws its `error.desc`. Used by `del` to delete
/// one export of a server that serves several.
package enum QMPClient {
    package static func execute(socket path: String, command: String, arguments: OptionValue = .object([]), timeout: Int = 150) throws -> OptionValue {
        let session = try QMPSession(socket: path, timeout: Double(timeout))
        return try session.execute(command, arguments, timeout: Double(timeout))
    }
}

/// A QMP connection kept open: commands one after another, and the events the server sends
/// meanwhile (a job's progress and end), for the verbs that drive a block job. Replies are
/// read as lines (`LineReader`, as the readiness pipe is); every wait is bounded.
package final class QMPSession {
    private let socket: UniqueFD
    private let path: String
    private var lines: LineReader
    private var events: [(name: String, data: OptionValue)] = []

    /// Connects, reads the greeting and negotiates, each within `timeout` seconds.
    package init(socket path: String, timeout: Double = 30) throws {
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw ExportError("QMP: socket", because: SystemError("socket", errno: errno)) }
        socket = UniqueFD(taking: raw)
        self.path = path
        lines = LineReader(fd: raw)
        guard let address = UnixSocketAddress(path) else { throw ExportError("QMP: socket path too long") }
        guard address.withSockaddr({ connect(raw, $0, $1) }) == 0 else {
            throw ExportError("QMP: cannot connect to \(path)", because: SystemError("connect", errno: errno))
        }
        _ = try reply(until: .after(seconds: timeout))  // greeting
        _ = try execute("qmp_capabilities", timeout: timeout)
    }

    /// Sends all of `bytes`; false when the server is gone. MSG_NOSIGNAL: a server that died
    /// (killed during a job) must cost the command an error it can clean up after, not its
    /// life by SIGPIPE.
    private static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = send(fd, b.baseAddress! + off, b.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                off += n
            }
            return true
        }
    }

    /// Runs one command and returns its `return` value, or throws its `error.desc` (with the
    /// reply as the cause). Events that come first are kept for `nextEvent`.
    package func execute(_ command: String, _ arguments: OptionValue = .object([]), timeout: Double = 150) throws -> OptionValue {
        let request = OptionValue.object([("execute", .string(command)), ("arguments", arguments)]).jsonText
        guard Self.sendAll(socket.rawValue, Array((request + "\n").utf8)) else {
            throw ExportError("QMP: the server closed the connection", because: SystemError("send", errno: errno))
        }
        let reply = try reply(until: .after(seconds: timeout))
        if case let .object(error)? = reply.first(where: { $0.key == "error" })?.value {
            let reply = QMPErrorReply(error)
            throw ExportError(reply.desc, cause: reply)
        }
        return reply.first { $0.key == "return" }?.value ?? .object([])
    }

    /// The next event, waiting up to `timeoutMs`; nil if none came.
    package func nextEvent(timeoutMs: Int32) throws -> (name: String, data: OptionValue)? {
        if !events.isEmpty { return events.removeFirst() }
        guard let m = try message(until: .after(seconds: Double(timeoutMs) / 1000)) else { return nil }
        guard let event = Self.event(m) else { return nil }
        return event
    }

    /// The next message that is not an event (events are kept), or why none came by `deadline`.
    private func reply(until deadline: Deadline) throws -> [(key: String, value: OptionValue)] {
        while true {
            guard let m = try message(until: deadline) else {
                throw ExportError("QMP: no reply from \(path)", because: SystemError("read line", errno: ETIMEDOUT))
            }
            if let event = Self.event(m) {
                events.append(event)
                continue
            }
            return m
        }
    }

    private static func event(_ m: [(key: String, value: OptionValue)]) -> (name: String, data: OptionValue)? {
        guard case let .string(name)? = m.first(where: { $0.key == "event" })?.value else { return nil }
        return (name, m.first { $0.key == "data" }?.value ?? .object([]))
    }

    /// One JSON object from the server, or nil once `deadline` has passed.
    private func message(until deadline: Deadline) throws -> [(key: String, value: OptionValue)]? {
        while true {
            let line: [UInt8]?
            do { line = try lines.next(until: deadline) } catch {
                if error.errno == .timedOut { return nil }
                throw ExportError("QMP: no reply from \(path)", because: error)
            }
            guard let line else { throw ExportError("QMP: the server closed the connection") }
            guard case let .object(object) = try JSONParser.parse(String(decoding: line, as: UTF8.self)) else { continue }
            return object
        }
    }
}

/// The server's answer was an error (QEMU's `{"error": {"class", "desc"}}`): the cause of the
/// `ExportError` a session throws for it, so that callers tell the server's refusals from their own.
package struct QMPErrorReply: Error, Sendable {
    package var errorClass: String
    package var desc: String

    init(_ error: [(key: String, value: OptionValue)]) {
        func text(_ key: String) -> String? {
            if case let .string(s)? = error.first(where: { $0.key == key })?.value { return s }
            return nil
        }
        errorClass = text("class") ?? "GenericError"
        desc = text("desc") ?? "QMP error"
    }
}
