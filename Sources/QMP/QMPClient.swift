import Kernel
import QAPI
import Core
import Foundation
import Glibc

/// A one-shot QMP client: connects to a server's control socket, negotiates capabilities, runs
/// one command and returns its `return` value or throws its `error.desc`. Used by `del` to delete
/// one export of a server that serves several.
package enum QMPClient {
    package static func execute(socket path: String, command: String, arguments: OptionValue = .object([]), timeout: Int = 150) throws -> OptionValue {
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw ExportError("QMP: socket", because: SystemError("socket", errno: errno)) }
        let socket = UniqueFD(taking: raw)
        let fd = socket.rawValue
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard let address = UnixSocketAddress(path) else { throw ExportError("QMP: socket path too long") }
        let connected = address.withSockaddr { connect(fd, $0, $1) }
        guard connected == 0 else { throw ExportError("QMP: cannot connect to \(path)", because: SystemError("connect", errno: errno)) }

        var lines = LineReader(fd: fd)
        func readMessage() throws -> [(key: String, value: OptionValue)] {
            while true {
                let line: [UInt8]?
                do { line = try lines.next() } catch { throw ExportError("QMP: no reply from \(path)", because: error) }
                guard let line else { throw ExportError("QMP: the server closed the connection") }
                guard case let .object(object) = try JSONParser.parse(String(decoding: line, as: UTF8.self)) else { continue }
                if object.contains(where: { $0.key == "event" }) { continue }
                return object
            }
        }
        func run(_ command: String, _ arguments: OptionValue) throws -> OptionValue {
            let request = OptionValue.object([("execute", .string(command)), ("arguments", arguments)]).jsonText
            guard writeLine(fd, request.utf8) else { throw ExportError("QMP: write failed") }
            let reply = try readMessage()
            if case let .object(error)? = reply.first(where: { $0.key == "error" })?.value {
                if case let .string(desc)? = error.first(where: { $0.key == "desc" })?.value { throw ExportError(desc) }
                throw ExportError("QMP error")
            }
            return reply.first { $0.key == "return" }?.value ?? .object([])
        }
        _ = try readMessage()  // greeting
        _ = try run("qmp_capabilities", .object([]))
        return try run(command, arguments)
    }
}

/// A QMP connection kept open: commands one after another, and the events the server sends
/// meanwhile (a job's progress and end), for the verbs that drive a block job.
package final class QMPSession {
    private let socket: UniqueFD
    private var buffer: [UInt8] = []
    private var events: [(name: String, data: OptionValue)] = []

    package init(socket path: String) throws {
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw ExportError("QMP: socket", because: SystemError("socket", errno: errno)) }
        socket = UniqueFD(taking: raw)
        guard let address = UnixSocketAddress(path) else { throw ExportError("QMP: socket path too long") }
        guard address.withSockaddr({ connect(raw, $0, $1) }) == 0 else {
            throw ExportError("QMP: cannot connect to \(path)", because: SystemError("connect", errno: errno))
        }
        _ = try message(timeoutMs: 30_000)  // greeting
        _ = try execute("qmp_capabilities")
    }

    /// Runs one command and returns its `return` value, or throws its `error.desc`.
    package func execute(_ command: String, _ arguments: OptionValue = .object([]), timeoutMs: Int32 = 150_000) throws -> OptionValue {
        let request = OptionValue.object([("execute", .string(command)), ("arguments", arguments)]).jsonText + "\n"
        guard writeAll(socket.rawValue, Data(request.utf8)) else { throw ExportError("QMP: write failed") }
        while true {
            guard let reply = try message(timeoutMs: timeoutMs) else { throw ExportError("QMP: no reply to \(command)") }
            if case let .string(name)? = reply.first(where: { $0.key == "event" })?.value {
                events.append((name, reply.first { $0.key == "data" }?.value ?? .object([])))
                continue
            }
            if case let .object(error)? = reply.first(where: { $0.key == "error" })?.value {
                let reply = QMPErrorReply(error)
                throw ExportError(reply.desc, cause: reply)
            }
            return reply.first { $0.key == "return" }?.value ?? .object([])
        }
    }

    /// The next event, waiting up to `timeoutMs`; nil if none came.
    package func nextEvent(timeoutMs: Int32) throws -> (name: String, data: OptionValue)? {
        if !events.isEmpty { return events.removeFirst() }
        guard let m = try message(timeoutMs: timeoutMs) else { return nil }
        guard case let .string(name)? = m.first(where: { $0.key == "event" })?.value else { return nil }
        return (name, m.first { $0.key == "data" }?.value ?? .object([]))
    }

    /// One JSON object from the server, or nil after `timeoutMs` (a signal also ends the wait).
    private func message(timeoutMs: Int32) throws -> [(key: String, value: OptionValue)]? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let nl = buffer.firstIndex(of: 0x0a) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                guard case let .object(object) = try JSONParser.parse(line) else { continue }
                return object
            }
            var p = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, timeoutMs)
            if ready <= 0 { return nil }
            let n = read(socket.rawValue, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ExportError("QMP: the server closed the connection") }
            buffer.append(contentsOf: chunk[0..<n])
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
