import Kernel
import QAPI
import Core
import Foundation
import Glibc
import Logging
import Synchronization

/// A QMP-compatible control socket (the JSON subset that qemu-storage-daemon tooling uses):
/// greeting, `qmp_capabilities` negotiation, `{"execute": …, "arguments": …, "id": …}` commands
/// answered with `{"return": …}` or `{"error": {"class": …, "desc": …}}`, and events.
/// One client at a time, served on its own thread (commands block on the kernel).
public final class QMPServer: @unchecked Sendable {
    /// A command failure, in QMP's terms.
    public struct CommandError: Error {
        public var errorClass: String
        public var desc: String
        public init(_ desc: String, errorClass: String = "GenericError") {
            self.errorClass = errorClass
            self.desc = desc
        }
    }

    /// Runs one command; returns the JSON value of `return`. Runs on the QMP thread.
    public typealias Handler = (_ command: String, _ arguments: OptionValue, _ emit: (String, [String: Any]) -> Void) throws -> Any

    public let path: String
    private let listener: Int32
    private let handler: Handler
    private let logger: Logger
    private var thread: Thread?

    /// Binds and listens on `path` (mode 0600; a stale socket file is replaced).
    public init(path: String, logger: Logger, handler: @escaping Handler) throws {
        self.path = path
        self.handler = handler
        self.logger = logger
        guard let address = UnixSocketAddress(path) else { throw ExportError("QMP socket path too long: \(path)") }
        try Self.removeStale(path, address)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw ExportError("QMP socket: \(String(cString: strerror(errno)))") }
        let oldMask = umask(0o177)
        let bound = address.withSockaddr { bind(listener, $0, $1) }
        umask(oldMask)
        var st = stat()
        guard bound == 0, listen(listener, 4) == 0, lstat(path, &st) == 0 else {
            let e = errno
            close(listener)
            throw ExportError("QMP socket \(path): \(String(cString: strerror(e)))")
        }
        identity = (st.st_dev, st.st_ino)
    }

    /// The socket file this server bound (removed at stop only if it is still that file).
    private var identity: (dev_t, ino_t) = (0, 0)

    /// Only a socket nobody listens on may be replaced: anything else at `path` is someone's
    /// file, and a live socket is another server's.
    private static func removeStale(_ path: String, _ address: UnixSocketAddress) throws(ExportError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw ExportError("QMP socket path \(path) exists and is not a socket: refusing to replace it", code: .busy)
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if probe >= 0 {
            defer { close(probe) }
            if address.withSockaddr({ connect(probe, $0, $1) }) == 0 {
                throw ExportError("QMP socket \(path) is in use by another server", code: .busy)
            }
        }
        unlink(path)
    }

    deinit { stop() }

    private let stopped = Mutex(false)

    /// Stops accepting (the accept loop ends) and removes the socket file.
    public func stop() {
        guard stopped.withLock({ s in defer { s = true }; return !s }) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        var st = stat()
        if lstat(path, &st) == 0 && st.st_dev == identity.0 && st.st_ino == identity.1 { unlink(path) }
    }

    public func start() {
        let t = Thread { [self] in self.acceptLoop() }
        t.name = "qmp"
        thread = t
        t.start()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // listener closed
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            serve(client)
            close(client)
        }
    }

    private func send(_ fd: Int32, _ object: [String: Any]) {
        // A reply that cannot be serialised is reported, never dropped: the client would wait forever.
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
            ?? Data(#"{"error": {"class": "GenericError", "desc": "reply cannot be represented in JSON"}}"#.utf8)
        Self.sendAll(fd, data + [0x0d, 0x0a])
    }

    /// MSG_NOSIGNAL: a client gone before its reply costs EPIPE, never SIGPIPE, whatever the
    /// process's signal setup.
    package static func sendAll(_ fd: Int32, _ data: Data) {
        data.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.send(fd, b.baseAddress! + off, b.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                off += n
            }
        }
    }

    /// Longest command line accepted (QEMU's JSON streamer bounds its input too).
    package static let maxLine = 1 << 20

    private func serve(_ fd: Int32) {
        send(fd, ["QMP": ["version": ["qemu": ["major": 10, "minor": 0, "micro": 0], "package": "vduse-export"],
                          "capabilities": [String]()]])
        var negotiated = false
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
            // Only new bytes can end a line (rescanning the buffer made long lines quadratic); a
            // client that never ends its line must not grow the buffer without end.
            guard chunk[0..<n].contains(0x0a) else {
                if buffer.count > Self.maxLine {
                    send(fd, ["error": ["class": "GenericError", "desc": "JSON parse error, input line longer than \(Self.maxLine) bytes"]])
                    return
                }
                continue
            }
            // Commands are newline-delimited JSON objects.
            while let newline = buffer.firstIndex(of: 0x0a) {
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[(newline + 1)...])
                guard !line.allSatisfy({ $0 == 0x20 || $0 == 0x0d || $0 == 0x09 }) else { continue }
                let quit = handle(fd, Data(line), negotiated: &negotiated)
                if quit { return }
            }
        }
    }

    /// Returns true after `quit`.
    private func handle(_ fd: Int32, _ line: Data, negotiated: inout Bool) -> Bool {
        func error(_ e: CommandError, id: Any?) {
            var reply: [String: Any] = ["error": ["class": e.errorClass, "desc": e.desc]]
            if let id { reply["id"] = id }
            send(fd, reply)
        }
        guard let request = try? JSONParser.parse(String(decoding: line, as: UTF8.self)),
              case let .object(members) = request else {
            error(CommandError("JSON parse error, expecting a JSON object"), id: nil)
            return false
        }
        func member(_ name: String) -> OptionValue? { members.first { $0.key == name }?.value }
        let id = member("id").map(Self.jsonObject)
        // An id we cannot echo (a number beyond double range) would make the reply unsendable.
        if let id, !JSONSerialization.isValidJSONObject(["id": id]) {
            error(CommandError("QMP input member 'id' must be a JSON value that can be echoed"), id: nil)
            return false
        }
        guard case let .string(command)? = member("execute") else {
            error(CommandError("QMP input lacks member 'execute'"), id: id)
            return false
        }
        let arguments: OptionValue
        switch member("arguments") {
        case nil: arguments = .object([])
        case let a? where { if case .object = a { return true }; return false }(): arguments = a
        default:
            error(CommandError("QMP input member 'arguments' must be an object"), id: id)
            return false
        }
        if command == "qmp_capabilities" {
            if negotiated {
                error(CommandError("Capabilities negotiation is already complete, command ignored",
                                   errorClass: "CommandNotFound"), id: id)
            } else {
                negotiated = true
                reply(fd, [String: Any](), id: id)
            }
            return false
        }
        guard negotiated else {
            error(CommandError("Expecting capabilities negotiation with 'qmp_capabilities'",
                               errorClass: "CommandNotFound"), id: id)
            return false
        }
        logger.info("QMP: \(command)")
        do {
            let result = try handler(command, arguments) { event, data in
                let now = Date().timeIntervalSince1970
                self.send(fd, ["event": event, "data": data,
                               "timestamp": ["seconds": Int(now), "microseconds": Int((now - now.rounded(.down)) * 1e6)]])
            }
            reply(fd, result, id: id)
        } catch let e as CommandError {
            error(e, id: id)
        } catch let e {
            error(CommandError("\(e)"), id: id)
        }
        return command == "quit"
    }

    /// An option value as a Foundation JSON object (to echo a command's `id`).
    package static func jsonObject(_ v: OptionValue) -> Any {
        switch v {
        case let .string(s): return s
        case let .bool(b): return b
        case let .number(n):
            if let i = Int64(n) { return i }
            return Double(n) ?? 0
        case .null: return NSNull()
        case let .list(items): return items.map(jsonObject)
        case let .object(members): return Dictionary(members.map { ($0.key, jsonObject($0.value)) }, uniquingKeysWith: { a, _ in a })
        }
    }

    private func reply(_ fd: Int32, _ result: Any, id: Any?) {
        var reply: [String: Any] = ["return": result]
        if let id { reply["id"] = id }
        send(fd, reply)
    }
}
