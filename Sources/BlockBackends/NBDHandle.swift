import CNBD
import Glibc
import Kernel
import QAPI

/// How long an NBD connection waits, in milliseconds: the spec's seconds, or less in tests.
package struct NBDTiming: Sendable, Equatable {
    /// How long requests wait for a lost connection to come back before they fail.
    package var reconnectDelayMs: UInt64
    /// How long one connection attempt (connect + handshake) may take.
    package var connectTimeoutMs: Int
    /// With requests outstanding, how long the server may stay silent (no reply read, nothing of
    /// ours taken off the socket) before the connection counts as lost; 0 = forever.
    package var requestTimeoutMs: UInt64

    package init(reconnectDelayMs: UInt64, connectTimeoutMs: Int = 10_000, requestTimeoutMs: UInt64 = 30_000) {
        self.reconnectDelayMs = reconnectDelayMs
        self.connectTimeoutMs = connectTimeoutMs
        self.requestTimeoutMs = requestTimeoutMs
    }

    /// What `spec` asks for (`reconnect-delay`, `x-request-timeout`).
    package init(_ spec: NBDSpec) {
        self.init(reconnectDelayMs: UInt64(spec.reconnectDelay) * 1000, requestTimeoutMs: UInt64(spec.requestTimeout) * 1000)
    }
}

/// One libnbd handle: a connection (or an attempt at one) driven without blocking through its
/// fd. Closed when the owner lets go.
final class NBDHandle {
    let raw: OpaquePointer
    /// libnbd's message for the failure that killed the connection, if `notify` saw one.
    private(set) var failure: String?

    /// Starts connecting (non-blocking): the handle is in the connecting state afterwards, or
    /// this throws with libnbd's reason.
    init(spec: NBDSpec) throws(SystemError) {
        if let reason = cnbd_load() {
            throw SystemError("NBD needs libnbd (Debian: libnbd0), which cannot be loaded: \(String(cString: reason))", errno: ENOENT)
        }
        guard let h = cnbd_create() else { throw Self.lastError("nbd_create") }
        raw = h
        guard cnbd_set_export_name(h, spec.export) == 0 else { throw Self.lastError("nbd_set_export_name") }
        let r: Int32 = switch spec.server {
        case let .inet(host, port): cnbd_aio_connect_tcp(h, host, port)
        case let .unix(path): cnbd_aio_connect_unix(h, path)
        }
        guard r == 0 else { throw Self.lastError("connect") }
    }

    deinit { cnbd_close(raw) }

    /// Connects and waits for the handshake to finish, up to `timeoutMs` (used before the device
    /// exists, where failing early with a clear reason matters more than not blocking).
    static func connect(_ spec: NBDSpec, timeoutMs: Int) throws(SystemError) -> NBDHandle {
        let handle = try NBDHandle(spec: spec)
        let deadline = monotonicMs() + UInt64(timeoutMs)
        while !handle.isReady {
            if handle.isDead { throw lastError("handshake") }
            let now = monotonicMs()
            guard now < deadline else { throw SystemError("timed out after \(timeoutMs / 1000) s", errno: ETIMEDOUT) }
            let d = handle.direction
            var p = pollfd(fd: handle.fd, events: Int16((d & 1 != 0 ? POLLIN : 0) | (d & 2 != 0 ? POLLOUT : 0)), revents: 0)
            if poll(&p, 1, Int32(min(deadline - now, 1000))) < 0 && errno != EINTR { throw SystemError("poll", errno: errno) }
            handle.notify()
        }
        return handle
    }

    var fd: Int32 { cnbd_aio_get_fd(raw) }
    /// LIBNBD_AIO_DIRECTION_READ (1) and/or _WRITE (2): what the state machine waits for.
    var direction: UInt32 { cnbd_aio_get_direction(raw) }
    var isReady: Bool { cnbd_aio_is_ready(raw) == 1 }
    var isDead: Bool { cnbd_aio_is_dead(raw) == 1 || cnbd_aio_is_closed(raw) == 1 }

    /// Moves the state machine on with what the socket is ready for. libnbd must be told only
    /// of readiness that is real: a read notification while a write is half sent pauses the
    /// write to wait for a reply that cannot come (a 1 MiB write hung that way). True if the
    /// socket was ready for either: the server sent something or took some of what we sent.
    @discardableResult
    func notify() -> Bool {
        let d = direction
        let wantRead = d & UInt32(LIBNBD_AIO_DIRECTION_READ) != 0
        let wantWrite = d & UInt32(LIBNBD_AIO_DIRECTION_WRITE) != 0
        guard wantRead || wantWrite else { return false }
        var p = pollfd(fd: fd, events: Int16((wantRead ? POLLIN : 0) | (wantWrite ? POLLOUT : 0)), revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        var moved = false
        if wantRead && p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            if cnbd_aio_notify_read(raw) < 0 { noteFailure() }
            moved = true
        }
        if wantWrite && p.revents & Int16(POLLOUT | POLLHUP | POLLERR) != 0 && direction & UInt32(LIBNBD_AIO_DIRECTION_WRITE) != 0 {
            if cnbd_aio_notify_write(raw) < 0 { noteFailure() }
            moved = true
        }
        return moved
    }

    private func noteFailure() {
        if failure == nil { failure = Self.lastError("notify").call }
    }

    /// The next finished command: its cookie and whether it succeeded (with the errno if not).
    func nextCompleted() -> (cookie: Int64, errno: Int32)? {
        let cookie = cnbd_aio_peek_command_completed(raw)
        guard cookie > 0 else { return nil }
        let r = cnbd_aio_command_completed(raw, UInt64(cookie))
        return (cookie, r < 0 ? max(cnbd_get_errno(), EIO) : 0)
    }

    var size: UInt64 { UInt64(max(cnbd_get_size(raw), 0)) }
    var readOnly: Bool { cnbd_is_read_only(raw) == 1 }
    var canFlush: Bool { cnbd_can_flush(raw) == 1 }
    var canTrim: Bool { cnbd_can_trim(raw) == 1 }
    var canZero: Bool { cnbd_can_zero(raw) == 1 }
    var canFastZero: Bool { cnbd_can_fast_zero(raw) == 1 }
    var canMultiConn: Bool { cnbd_can_multi_conn(raw) == 1 }
    /// LIBNBD_SIZE_MINIMUM / PREFERRED / MAXIMUM; 0 when the server did not say.
    func blockSize(_ which: Int32) -> UInt64 { UInt64(max(cnbd_get_block_size(raw, which), 0)) }

    /// What the server said about its export in the handshake, as one value to check.
    var facts: NBDServerFacts {
        NBDServerFacts(size: size, readOnly: readOnly, canFlush: canFlush, canTrim: canTrim, canZero: canZero,
                       canFastZero: canFastZero, canMultiConn: canMultiConn,
                       minimum: blockSize(Int32(LIBNBD_SIZE_MINIMUM)), preferred: blockSize(Int32(LIBNBD_SIZE_PREFERRED)),
                       maximum: blockSize(Int32(LIBNBD_SIZE_MAXIMUM)))
    }

    /// libnbd's message for the last failure on this thread, with its errno.
    static func lastError(_ call: String) -> SystemError {
        var text = cnbd_get_error().map { String(cString: $0) } ?? call
        // "nbd_aio_connect_unix: connect: ..." -> "connect: ...": the API name says nothing to users.
        if text.hasPrefix("nbd_"), let colon = text.range(of: ": ") { text = String(text[colon.upperBound...]) }
        let e = cnbd_get_errno()
        return SystemError(text, errno: e > 0 ? e : EIO)
    }
}
