import Kernel
import QAPI
import Foundation
import Glibc
import Logging
import Synchronization
import Wire

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
        try Self.removeStale(path, address)
        let oldMask = umask(0o177)
        let bound = address.withSockaddr { bind(socket.rawValue, $0, $1) }
        umask(oldMask)
        var st = stat()
        guard bound == 0, listen(socket.rawValue, 4) == 0, lstat(path, &st) == 0 else {
            throw ExportError("QMP socket \(path)", because: SystemError("bind", errno: errno))
        }
        self.socket = socket
        identity = FileIdentity(device: st.st_dev, inode: st.st_ino)
    }

    /// The socket file this server bound (removed at stop only if it is still that file).
    private struct FileIdentity: Sendable, Equatable {
        var device: dev_t
        var inode: ino_t
    }
    private let identity: FileIdentity

    /// Only a socket nobody listens on may be replaced: anything else at `path` is someone's
    /// file, and a live socket is another server's.
    private static func removeStale(_ path: String, _ address: UnixSocketAddress) throws(ExportError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw ExportError("QMP socket path \(path) exists and is not a socket: refusing to replace it", code: .conflict)
        }
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if raw >= 0 {
            let probe = UniqueFD(taking: raw)
            if address.withSockaddr({ connect(probe.rawValue, $0, $1) }) == 0 {
                throw ExportError("QMP socket \(path) is in use by another server", code: .conflict)
            }
        }
        unlink(path)
    }

    deinit { stop() }

    /// Whether stop() has been called and whether the accept thread runs: short state, never
    /// held across a command or a send. (`session` is held for a whole command, `output` for a
    /// whole line: three locks because each is held for a different length.)
    private struct Lifecycle {
        var stopRequested = false
        var acceptLoopActive = false
    }
    private let lifecycle = Mutex(Lifecycle())

    /// Stops accepting (the accept loop ends) and removes the socket file.
    /// Stops accepting, waits for a command that is running (so that what it creates is seen by
    /// the shutdown that follows), ends the client's session, joins the accept thread, and only
    /// then closes the listening fd (its number cannot be reused under a running `accept`).
    public func stop() {
        guard lifecycle.withLock({ s in defer { s.stopRequested = true }; return !s.stopRequested }) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        session.withLock { state in
            // A command in progress holds the session lock: this waits for it.
            if let client = state.client { shutdown(client, Int32(SHUT_RDWR)) }
            state.stopping = true
        }
        if acceptLoopRunning { acceptLoopEnded.wait() }
        var st = stat()
        if lstat(path, &st) == 0 && FileIdentity(device: st.st_dev, inode: st.st_ino) == identity { unlink(path) }
        // The listening fd itself is closed with this object, never under a running accept().
    }

    /// The client being served and whether stop() has begun; a running command holds the lock.
    private struct Session {
        var client: Int32?
        var stopping = false
    }
    private let session = Mutex(Session())
    private let acceptLoopEnded = DispatchSemaphore(value: 0)

    /// The accept thread is running (tests: stop() must end it).
    package var acceptLoopRunning: Bool { lifecycle.withLock { $0.acceptLoopActive } }

    public func start() {
        lifecycle.withLock { $0.acceptLoopActive = true }
        let t = Thread { [self] in
            self.acceptLoop()
            self.lifecycle.withLock { $0.acceptLoopActive = false }
            self.acceptLoopEnded.signal()
        }
        t.name = "qmp"
        t.start()
    }

    private func acceptLoop() {
        while true {
            let accepted = accept(listener, nil, nil)
            if accepted < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // listener shut down
            }
            // Owned here; `stop()` may shut the number down (never close it) while it is recorded.
            let client = UniqueFD(taking: accepted)
            _ = fcntl(client.rawValue, F_SETFD, FD_CLOEXEC)
            let admitted = session.withLock { state -> Bool in
                guard !state.stopping else { return false }
                state.client = client.rawValue
                return true
            }
            if admitted { serve(client.rawValue) }
            output.withLock { $0 = nil }
            session.withLock { $0.client = nil }
            client.close()
            if !admitted { return }
        }
    }

    /// Sends one JSON line; MSG_NOSIGNAL: a client that went away is an error, not SIGPIPE.
    /// One line at a time: a job's event never lands inside a reply.
    private func send(_ fd: Int32, _ value: OptionValue) {
        let line = Data((value.jsonText + "\r\n").utf8)
        output.withLock { _ in Self.sendAll(fd, line) }
    }

    /// The client that gets events from other threads (jobs): set once it negotiated, cleared
    /// before its fd is closed. Its lock also orders every line sent.
    private let output = Mutex<Int32?>(nil)

    /// Sends an event to the connected client (if it negotiated capabilities). Any thread.
    public func broadcast(_ event: String, _ data: OptionValue) {
        let line = Data((Self.event(event, data).jsonText + "\r\n").utf8)
        output.withLock { fd in
            if let fd { Self.sendAll(fd, line) }
        }
    }

    static func event(_ name: String, _ data: OptionValue) -> OptionValue {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return .object([("event", .string(name)), ("data", data),
                        ("timestamp", .object([("seconds", .integer(now.tv_sec)), ("microseconds", .integer(now.tv_nsec / 1000))]))])
    }

    /// Longest command line accepted (QEMU's JSON streamer bounds its input too).
    package static let maxLine = 1 << 20

    /// MSG_NOSIGNAL: a client gone before its reply costs EPIPE, never SIGPIPE.
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

    /// What the greeting and `query-version` say: the QEMU whose QMP behaviour we follow, and
    /// ours in `package`.
    package static let versionInfo: OptionValue = .object([
        ("qemu", .object([("major", .integer(QEMUCompatibility.major)), ("minor", .integer(QEMUCompatibility.minor)),
                          ("micro", .integer(QEMUCompatibility.micro))])),
        ("package", .string("vduse-export \(VDUSEExportVersion.string) (QMP as QEMU \(QEMUCompatibility.major).\(QEMUCompatibility.minor) speaks it)")),
    ])

    private func serve(_ fd: Int32) {
        send(fd, .object([("QMP", .object([("version", Self.versionInfo), ("capabilities", .list([]))]))]))
        var negotiated = false
        // Commands are JSON objects cut from the byte stream as they complete, newline or not.
        var stream = JSONStream(limit: Self.maxLine)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            for piece in stream.feed(chunk[0..<n]) {
                guard case let .value(bytes) = piece else {
                    // Past the limit the next command's start cannot be found: end the session.
                    send(fd, .object([("error", .object([("class", .string("GenericError")),
                                                         ("desc", .string("JSON token size limit exceeded"))]))]))
                    return
                }
                // One command at a time, and none once stop() has begun.
                let quit = session.withLock { state -> Bool in
                    if state.stopping { return true }
                    return handle(fd, bytes, negotiated: &negotiated)
                }
                if quit { return }
            }
        }
    }

    /// Returns true after `quit`.
    private func handle(_ fd: Int32, _ text: [UInt8], negotiated: inout Bool) -> Bool {
        func error(_ e: CommandError, id: OptionValue?) {
            var reply: [(key: String, value: OptionValue)] = [("error", .object([("class", .string(e.errorClass)), ("desc", .string(e.desc))]))]
            if let id { reply.append(("id", id)) }
            send(fd, .object(reply))
        }
        let request: OptionValue
        do {
            request = try JSONParser.parse(String(decoding: text, as: UTF8.self))
        } catch let e {
            error(CommandError(e.description), id: nil)
            return false
        }
        guard case let .object(members) = request else {
            error(CommandError("QMP input must be a JSON object"), id: nil)
            return false
        }
        func member(_ name: String) -> OptionValue? { members.first { $0.key == name }?.value }
        let id = member("id")
        if let unexpected = members.first(where: { !["execute", "arguments", "id"].contains($0.key) }) {
            error(CommandError("QMP input member '\(unexpected.key)' is unexpected"), id: id)
            return false
        }
        guard let execute = member("execute") else {
            error(CommandError("QMP input lacks member 'execute'"), id: id)
            return false
        }
        guard case let .string(command) = execute else {
            error(CommandError("QMP input member 'execute' must be a string"), id: id)
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
                output.withLock { $0 = fd }
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
                self.send(fd, Self.event(event, data))
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
