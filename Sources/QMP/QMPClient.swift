import Kernel
import QAPI
import Core
import Foundation
import Glibc

/// A one-shot QMP client: connects to a server's control socket, negotiates capabilities, runs
/// one command and returns its `return` value or throws its `error.desc`. Used by `del` to delete
/// one export of a server that serves several.
package enum QMPClient {
    package static func execute(socket path: String, command: String, arguments: [String: Any], timeout: Int = 150) throws -> Any {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ExportError("QMP: socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard let address = UnixSocketAddress(path) else { throw ExportError("QMP: socket path too long") }
        let connected = address.withSockaddr { connect(fd, $0, $1) }
        guard connected == 0 else { throw ExportError("QMP: cannot connect to \(path): \(String(cString: strerror(errno)))") }

        var buffer = Data()
        func readMessage() throws -> [String: Any] {
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                if let nl = buffer.firstIndex(of: 0x0a) {
                    let line = buffer[buffer.startIndex..<nl]
                    buffer = Data(buffer[(nl + 1)...])
                    guard let object = try JSONSerialization.jsonObject(with: line) as? [String: Any] else { continue }
                    if object["event"] != nil { continue }
                    return object
                }
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ExportError("QMP: the server closed the connection") }
                buffer.append(contentsOf: chunk[0..<n])
            }
        }
        func run(_ command: String, _ arguments: [String: Any]) throws -> Any {
            var request = try JSONSerialization.data(withJSONObject: ["execute": command, "arguments": arguments])
            request.append(0x0a)
            guard writeAll(fd, request) else { throw ExportError("QMP: write failed") }
            let reply = try readMessage()
            if let error = reply["error"] as? [String: Any] { throw ExportError("\(error["desc"] ?? "QMP error")") }
            return reply["return"] ?? [String: Any]()
        }
        _ = try readMessage()  // greeting
        _ = try run("qmp_capabilities", [:])
        return try run(command, arguments)
    }
}
