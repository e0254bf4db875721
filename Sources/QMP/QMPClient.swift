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
