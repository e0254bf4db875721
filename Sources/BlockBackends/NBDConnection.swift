import CNBD
import Glibc
import Kernel
import QAPI
import Virtio

/// One connection to an NBD server, serving the queues that share it (all queues with one
/// connection; one queue each with multi-conn). Iothread only once a queue is attached: the
/// socket and a retry timer are watched in the queue's loop, commands are sent with libnbd's
/// asynchronous calls and retired from the socket's handler.
///
/// A lost connection is opened again in the background (every `retryMs`); requests in flight
/// and new ones wait for it until `reconnectDelayMs` after the loss, then fail with an I/O
/// error (and later ones at once) while attempts go on. A server that keeps the connection open
/// but stops answering (stopped, wedged) is found by a watchdog: with requests outstanding and
/// nothing moving on the socket for `requestTimeoutMs`, the connection counts as lost.
final class NBDConnection {
    let spec: NBDSpec
    let timing: NBDTiming
    let limits: NBDLimits
    private var handle: NBDHandle?
    private var ready: Bool
    private var loop: (any EventLoop)?
    private var queues: [ObjectIdentifier: NBDBackendQueue] = [:]
    private let timer: TimerFD
    private var cookies: [Int64: NBDCommand] = [:]
    private var waiting: [NBDCommand] = []
    /// Monotonic ms when waiting requests fail; nil while connected.
    private var deadline: UInt64?
    private var expired = false
    private var attemptStarted: UInt64 = 0
    /// Monotonic ms when the server last showed life (a reply read, or some of our bytes taken),
    /// or when a request went out with none outstanding.
    private var lastHeard: UInt64 = 0
    /// The timer ticks for the watchdog (while ready) rather than for reconnect attempts.
    private var watchdog = false
    private var watchingWrite = false
    /// The socket fd registered in the loop: libnbd closes a dead handle's socket (its fd reads
    /// -1 then), so the number is kept to unwatch it.
    private var watchedFD: Int32 = -1
    /// Queues that completed something since they were last told (`completionsDone`).
    private var touched: [NBDBackendQueue] = []
    /// Inside a quiesce: completions are delivered but not published.
    private var quiescing = false
    /// Monotonic ms of the first loss with no request answered since: reconnecting to a server
    /// that only says it is shutting down must not restart the wait for ever.
    private var lossStarted: UInt64?
    static let retryMs = 500
    nonisolated(unsafe) private static let zeros: UnsafeMutableRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: 1 << 20)
        return p
    }()

    /// Shared with the backend's other connections to the same server; `index` is ours in it.
    private let notice: NBDShutdownNotice
    private let index: Int
    private var announcementsSeen: UInt64 = 0

    /// Takes over a connected handle (made before the device existed).
    init(handle: NBDHandle, spec: NBDSpec, timing: NBDTiming, limits: NBDLimits, notice: NBDShutdownNotice, index: Int)
        throws(SystemError) {
        self.handle = handle
        self.spec = spec
        self.timing = timing
        self.limits = limits
        self.notice = notice
        self.index = index
        ready = true
        timer = try TimerFD()
    }

    // MARK: queues

    func attach(_ queue: NBDBackendQueue, loop: any EventLoop) throws(SystemError) {
        if self.loop == nil {
            self.loop = loop
            try loop.watch(timer.fd) { [unowned self] in self.onTimer() }
            try loop.watch(notice.wake(index).fd) { [unowned self] in self.onNotice() }
            if let handle {
                try loop.watch(handle.fd) { [unowned self] in self.onSocket() }
                watchedFD = handle.fd
                watchingWrite = false
                if handle.isDead { lost() }
            }
            if !ready { timer.arm(firstMs: 1, intervalMs: Self.retryMs) } else if !cookies.isEmpty { armWatchdog() }
        }
        queues[ObjectIdentifier(queue)] = queue
    }

    func detach(_ queue: NBDBackendQueue) {
        queues.removeValue(forKey: ObjectIdentifier(queue))
        // Sent commands stay in `cookies` (libnbd may still fill their buffers) and are dropped
        // when answered.
        waiting.removeAll { $0.abandoned }
        guard queues.isEmpty, let loop else { return }
        timer.disarm()
        watchdog = false
        loop.unwatch(timer.fd)
        loop.unwatch(notice.wake(index).fd)
        if watchedFD >= 0 { loop.unwatch(watchedFD) }
        watchedFD = -1
        self.loop = nil
    }

    // MARK: requests

    /// Sends a request now, or keeps it for the next connection, or fails it (past the deadline).
    func start(_ command: NBDCommand) {
        trace("start tag \(command.tag) \(command.io) ready=\(ready)")
        command.outstanding = 0
        command.failure = 0
        if ready, let handle {
            issue(command, on: handle)
            if handle.isDead { lost() }
        } else if expired {
            finish(command, status: .ioError)
        } else {
            command.waiting = true
            waiting.append(command)
        }
    }

    private func issue(_ command: NBDCommand, on handle: NBDHandle) {
        let h = handle.raw
        switch command.io {
        case let .read(offset, _, length):
            let b = command.buffer(length)
            chunks(offset, UInt64(length), limits.maxChunk, command) { at, n in cnbd_pread(h, b + Int(at - offset), Int(n), at) }
        case let .write(offset, buffers, length):
            let b = command.gather(buffers, length: length)
            chunks(offset, UInt64(length), limits.maxChunk, command) { at, n in cnbd_pwrite(h, b + Int(at - offset), Int(n), at) }
        case .flush:
            if limits.canFlush { send(command) { cnbd_flush(h) } }
        case let .discard(offset, length):
            // Advisory: a server without trim simply keeps the data.
            if limits.canTrim { chunks(offset, length, limits.maxZero, command) { at, n in cnbd_trim(h, n, at) } }
        case let .writeZeroes(offset, length, unmap):
            // Never NBD_CMD_FLAG_FAST_ZERO: the range must be zeroed whatever it costs, and a plain
            // write-zeroes already lets the server take its fastest way (docs/options.md).
            if limits.canZero {
                let flags = unmap ? 0 : UInt32(LIBNBD_CMD_FLAG_NO_HOLE)
                chunks(offset, length, limits.maxZero, command) { at, n in cnbd_zero(h, n, at, flags) }
            } else {
                chunks(offset, length, min(limits.maxChunk, 1 << 20), command) { at, n in cnbd_pwrite(h, Self.zeros, Int(n), at) }
            }
        }
        if command.outstanding == 0 && !command.waiting { finish(command, status: command.failure == 0 ? .ok : .ioError) }
    }

    private func chunks(_ offset: UInt64, _ length: UInt64, _ most: UInt64, _ command: NBDCommand,
                        _ call: (UInt64, UInt64) -> Int64) {
        var plan = NBDChunks(offset: offset, length: length, most: most)
        while command.failure == 0 && !command.waiting, let (at, n) = plan.next() {
            send(command) { call(at, n) }
        }
    }

    private func send(_ command: NBDCommand, _ call: () -> Int64) {
        let cookie = call()
        if cookie > 0 {
            if cookies.isEmpty {
                lastHeard = monotonicMs()
                armWatchdog()
            }
            cookies[cookie] = command
            command.outstanding += 1
        } else if let handle, handle.isDead {
            requeue(command)
        } else {
            command.failure = max(cnbd_get_errno(), EIO)
        }
    }

    private func requeue(_ command: NBDCommand) {
        guard !command.waiting else { return }
        command.waiting = true
        waiting.append(command)
    }

    private func finish(_ command: NBDCommand, status: BlockStatus) {
        trace("finish tag \(command.tag) \(status)")
        command.waiting = false
        guard !command.abandoned else { return }
        if status == .ok, case let .read(_, buffers, length) = command.io { command.scatter(buffers, length: length) }
        command.queue.finished(command, status: status)
        if !touched.contains(where: { $0 === command.queue }) { touched.append(command.queue) }
    }

    /// End of a batch: libnbd already wrote what the socket took (waiting for writability if not
    /// all), and may have read replies while it wrote: those are retired here, as no socket event
    /// will announce them again.
    /// The committing queue is not told: its engine reaps right after this call.
    func commit(from queue: NBDBackendQueue) {
        trace("commit: direction \(handle?.direction ?? 0) in flight \(cookies.count)")
        if ready, let handle {
            let down = reap(handle)
            if down || handle.isDead { lost(shuttingDown: down) }
        }
        updateInterest()
        touched.removeAll { $0 === queue }
        publish()
    }

    /// Retires answered commands. Not on a dead handle: libnbd then completes every command in
    /// flight with ENOTCONN, and those must wait for the next connection (`lost`, which the
    /// callers run next), not fail. A real answer that came just before the death is lost with
    /// them and the command sent again. Returns true when the server said it is shutting down
    /// (NBD_ESHUTDOWN): the connection must be dropped like a lost one, because such a server
    /// waits for its clients to leave before it exits (and frees its address for the next one),
    /// and the refused command waits for the next connection instead of failing.
    private func reap(_ handle: NBDHandle) -> Bool {
        guard !handle.isDead else { return false }
        var heard = false
        defer { if heard { lastHeard = monotonicMs() } }
        while let (cookie, err) = handle.nextCompleted() {
            heard = true
            guard let command = cookies.removeValue(forKey: cookie) else { continue }
            if err == ESHUTDOWN {
                cookies[cookie] = command  // `lost` sends it again with the rest
                announcementsSeen = notice.announce(from: index)
                return true
            }
            command.outstanding -= 1
            if err != 0 && command.failure == 0 { command.failure = err }
            if err == 0 { lossStarted = nil }
            if command.outstanding == 0 && !command.waiting {
                finish(command, status: command.failure == 0 ? .ok : .ioError)
            }
        }
        return false
    }

    private func updateInterest() {
        guard let loop, let handle, !handle.isDead else { return }
        let wantWrite = handle.direction & UInt32(LIBNBD_AIO_DIRECTION_WRITE) != 0
        if wantWrite != watchingWrite {
            loop.setWritable(handle.fd, wantWrite)
            watchingWrite = wantWrite
        }
    }

    private func publish() {
        let done = touched
        touched.removeAll()
        guard !quiescing else { return }
        for q in done { q.completionsDone() }
    }

    // MARK: events

    private func onSocket() {
        guard let handle else { return }
        trace("socket event: direction \(handle.direction) in flight \(cookies.count)")
        let moved = handle.notify()
        if ready {
            if moved { lastHeard = monotonicMs() }
            let down = reap(handle)
            if down || handle.isDead { lost(shuttingDown: down) }
        } else if handle.isReady {
            reconnected()
        } else if handle.isDead {
            dropAttempt()
        }
        updateInterest()
        publish()
    }

    /// Another connection heard that the server is shutting down: leave it too.
    private func onNotice() {
        notice.wake(index).drain()
        let n = notice.announcements
        guard n != announcementsSeen else { return }
        announcementsSeen = n
        guard ready else { return }
        lost(shuttingDown: true)
        publish()
    }

    /// The server went away: every request not answered waits for the next connection.
    /// `shuttingDown`: the server said so (NBD_ESHUTDOWN), here or on another connection.
    private func lost(shuttingDown: Bool = false) {
        let why = shuttingDown ? " (the server is shutting down)" : handle?.failure.map { " (\($0))" } ?? ""
        // A server going down needs a moment to leave its address to the next one.
        let firstAttemptMs = shuttingDown ? Self.retryMs : 1
        let inOrder = cookies.sorted { $0.key < $1.key }.map(\.value)
        cookies.removeAll()
        for c in inOrder where !c.waiting {
            c.outstanding = 0
            c.failure = 0
            requeue(c)
        }
        dropAttempt()
        ready = false
        watchdog = false
        let since = lossStarted ?? monotonicMs()
        lossStarted = since
        deadline = since + timing.reconnectDelayMs
        expired = false
        log("connection to \(spec.address) lost\(why); reconnecting (requests wait up to \(timing.reconnectDelayMs / 1000) s)")
        if timing.reconnectDelayMs == 0 || monotonicMs() >= deadline! { expire() }
        timer.arm(firstMs: firstAttemptMs, intervalMs: Self.retryMs)
    }

    private func dropAttempt() {
        if watchedFD >= 0, let loop { loop.unwatch(watchedFD) }
        watchedFD = -1
        handle = nil
        watchingWrite = false
    }

    private func expire() {
        guard !expired else { return }
        expired = true
        let failed = waiting
        waiting.removeAll()
        if !failed.isEmpty {
            log("\(spec.address) not back within \(timing.reconnectDelayMs / 1000) s: failing \(failed.count) request(s)")
        }
        for c in failed { finish(c, status: .ioError) }
    }

    private func onTimer() {
        timer.drain()
        if ready {
            checkLiveness()
            if ready { return publish() }
        }
        let now = monotonicMs()
        if let deadline, now >= deadline { expire() }
        if handle != nil, now - attemptStarted > UInt64(timing.connectTimeoutMs) { dropAttempt() }
        if handle == nil {
            attemptStarted = now
            if let h = try? NBDHandle(spec: spec) {
                handle = h
                do {
                    try loop?.watch(h.fd) { [unowned self] in self.onSocket() }
                    watchedFD = h.fd
                    onSocket()
                } catch {
                    handle = nil
                }
            }
        }
        publish()
    }

    private func reconnected() {
        guard let handle else { return }
        guard handle.size == limits.size else {
            log("\(spec.address) came back with another size (\(handle.size), was \(limits.size)): not used")
            return dropAttempt()
        }
        ready = true
        deadline = nil
        expired = false
        timer.disarm()
        watchdog = false
        let again = waiting
        waiting.removeAll()
        if again.isEmpty { lossStarted = nil }
        log("reconnected to \(spec.address); resending \(again.count) request(s)")
        for c in again {
            c.waiting = false
            start(c)
        }
        if ready, reap(handle) { lost(shuttingDown: true) }
    }

    // MARK: watchdog

    /// Ticks a quarter of the timeout (0.1 to 1 s) apart while requests are outstanding; a tick
    /// that finds none stops it, the next request sent starts it again.
    private func armWatchdog() {
        guard !watchdog, timing.requestTimeoutMs > 0, loop != nil else { return }
        watchdog = true
        let tick = Int(min(max(timing.requestTimeoutMs / 4, 100), 1000))
        timer.arm(firstMs: tick, intervalMs: tick)
    }

    /// A server silent for the whole timeout with requests outstanding is taken for lost: its
    /// socket is closed and the requests wait for a new connection like after any loss.
    private func checkLiveness() {
        guard !cookies.isEmpty else {
            watchdog = false
            return timer.disarm()
        }
        let silent = monotonicMs() &- lastHeard
        guard timing.requestTimeoutMs > 0, silent >= timing.requestTimeoutMs else { return }
        log("no answer from \(spec.address) for \(silent / 1000).\(silent % 1000 / 100) s with \(cookies.count) request(s) outstanding: dropping the connection")
        lost()
    }

    /// Drives the connection by polling (a queue's quiesce waits for its requests on its own).
    func pollOnce(timeoutMs: Int32) {
        quiescing = true
        defer { quiescing = false }
        var fds = [pollfd(fd: timer.fd, events: Int16(POLLIN), revents: 0)]
        if let handle {
            let d = handle.direction
            fds.append(pollfd(fd: handle.fd, events: Int16((d & 1 != 0 ? POLLIN : 0) | (d & 2 != 0 ? POLLOUT : 0)), revents: 0))
        }
        _ = poll(&fds, nfds_t(fds.count), timeoutMs)
        if fds[0].revents != 0 { onTimer() }
        if fds.count > 1, fds[1].revents != 0 { onSocket() }
    }
}

/// `VDUSE_EXPORT_TRACE_NBD=1`: every request and socket event on stderr (debugging only).
let nbdTrace = getenv("VDUSE_EXPORT_TRACE_NBD") != nil

@inline(__always) func trace(_ text: @autoclosure () -> String) {
    if nbdTrace { log(text()) }
}

/// One line on stderr (the server's log): connection losses and recoveries.
private func log(_ text: String) {
    let line = Array("vduse-export: nbd: \(text)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
