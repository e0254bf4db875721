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
public final class QMPServer: Sendable {
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
    public typealias Handler = @Sendable (_ command: String, _ arguments: OptionValue, _ emit: (String, OptionValue) -> Void) throws -> OptionValue

    public let path: String
    private let socket: UniqueFD
    private var listener: Int32 { socket.rawValue }
    private let handler: Handler
    private let logger: Logger

    /// Binds and listens on `path` (mode 0600; a stale socket file is replaced).
    public init(path: String, logger: Logger, handler: @escaping Handler) throws {
        self.path = path
        self.handler = handler
        self.logger = logger
        guard let address = UnixSocketAddress(path) else { throw ExportError("QMP socket path too long: \(path)") }
        let raw: Int32
        do {
            raw = try sys("socket") { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        } catch {
            throw ExportError("QMP socket", because: error)
        }
        let socket = UniqueFD(taking: raw)
        unlink(path)
        let oldMask = umask(0o177)
        let bound = address.withSockaddr { bind(socket.rawValue, $0, $1) }
        umask(oldMask)
        guard bound == 0, listen(socket.rawValue, 4) == 0 else {
            throw ExportError("QMP socket \(path)", because: SystemError("bind", errno: errno))
        }
        self.socket = socket
    }

    deinit { stop() }

    private let stopped = Mutex(false)

    /// Stops accepting (the accept loop ends) and removes the socket file.
    /// Stops accepting, waits for a command that is running (so that what it creates is seen by
    /// the shutdown that follows), ends the client's session, joins the accept thread, and only
    /// then closes the listening fd (its number cannot be reused under a running `accept`).
    public func stop() {
        guard stopped.withLock({ s in defer { s = true }; return !s }) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        session.withLock { state in
            // A command in progress holds the session lock: this waits for it.
            if let client = state.client { shutdown(client, Int32(SHUT_RDWR)) }
            state.stopping = true
        }
        if acceptLoopRunning { acceptLoopEnded.wait() }
        unlink(path)
        // The listening fd itself is closed with this object, never under a running accept().
    }

    /// The client being served and whether stop() has begun; a running command holds the lock.
    private struct Session {
        var client: Int32?
        var stopping = false
    }
    private let session = Mutex(Session())
    private let acceptLoopEnded = DispatchSemaphore(value: 0)
    private let acceptLoopActive = Mutex(false)

    /// The accept thread is running (tests: stop() must end it).
    package var acceptLoopRunning: Bool { acceptLoopActive.withLock { $0 } }

    public func start() {
        acceptLoopActive.withLock { $0 = true }
        let t = Thread { [self] in
            self.acceptLoop()
            self.acceptLoopActive.withLock { $0 = false }
            self.acceptLoopEnded.signal()
        }
        t.name = "qmp"
        t.start()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // listener shut down
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let admitted = session.withLock { state -> Bool in
                guard !state.stopping else { return false }
                state.client = client
                return true
            }
            if admitted { serve(client) }
            session.withLock { $0.client = nil }
            close(client)
            if !admitted { return }
        }
    }

    /// Sends one JSON line; MSG_NOSIGNAL: a client that went away is an error, not SIGPIPE.
    private func send(_ fd: Int32, _ value: OptionValue) {
        let line = Array((value.jsonText + "\r\n").utf8)
        var offset = 0
        while offset < line.count {
            let n = line.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, line.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    private func serve(_ fd: Int32) {
        send(fd, .object([("QMP", .object([
            ("version", .object([("qemu", .object([("major", .integer(10)), ("minor", .integer(0)), ("micro", .integer(0))])),
                                 ("package", .string("vduse-export"))])),
            ("capabilities", .list([])),
        ]))]))
        var negotiated = false
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
            // Commands are newline-delimited JSON objects.
            while let newline = buffer.firstIndex(of: 0x0a) {
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[(newline + 1)...])
                guard !line.allSatisfy({ $0 == 0x20 || $0 == 0x0d || $0 == 0x09 }) else { continue }
                // One command at a time, and none once stop() has begun.
                let quit = session.withLock { state -> Bool in
                    if state.stopping { return true }
                    return handle(fd, Data(line), negotiated: &negotiated)
                }
                if quit { return }
            }
        }
    }

    /// Returns true after `quit`.
    private func handle(_ fd: Int32, _ line: Data, negotiated: inout Bool) -> Bool {
        func error(_ e: CommandError, id: OptionValue?) {
            var reply: [(key: String, value: OptionValue)] = [("error", .object([("class", .string(e.errorClass)), ("desc", .string(e.desc))]))]
            if let id { reply.append(("id", id)) }
            send(fd, .object(reply))
        }
        guard let request = try? JSONParser.parse(String(decoding: line, as: UTF8.self)),
              case let .object(members) = request else {
            error(CommandError("JSON parse error, expecting a JSON object"), id: nil)
            return false
        }
        func member(_ name: String) -> OptionValue? { members.first { $0.key == name }?.value }
        let id = member("id")
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
                reply(fd, .object([]), id: id)
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
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                self.send(fd, .object([("event", .string(event)), ("data", data),
                                       ("timestamp", .object([("seconds", .integer(now.tv_sec)),
                                                              ("microseconds", .integer(now.tv_nsec / 1000))]))]))
            }
            reply(fd, result, id: id)
        } catch let e as CommandError {
            error(e, id: id)
        } catch let e {
            error(CommandError("\(e)"), id: id)
        }
        return command == "quit"
    }

    private func reply(_ fd: Int32, _ result: OptionValue, id: OptionValue?) {
        var reply: [(key: String, value: OptionValue)] = [("return", result)]
        if let id { reply.append(("id", id)) }
        send(fd, .object(reply))
    }
}
