import QAPI
import BlockBackends
import Virtio
import Kernel
import CVDUSE
import Foundation
import Glibc
import Synchronization

/// A named I/O thread (QEMU's `--object iothread,id=…`): one OS thread running an epoll event
/// loop. Handlers for file descriptors (device messages, virtqueue kicks, io_uring completions)
/// run on it; other threads hand it work through `execute`, which queues a closure and wakes
/// the loop with an eventfd.
///
/// Thread confinement: the handlers, pollers and the running flag are `LoopBound` to this loop
/// (every access checks the thread-local loop id); the queued work and the thread flag are behind one `Mutex`;
/// everything else is immutable. So the class is `Sendable` as the compiler sees it.
public final class IOThread: EventLoop, Sendable {
    public let name: String
    /// The identity `isCurrent` compares with the calling thread's.
    package let id = LoopID.next()
    private let epoll: UniqueFD
    private var epollFD: Int32 { epoll.rawValue }
    private let wakeup: EventFD
    /// What other threads share with the loop, behind one lock.
    private struct Shared {
        /// Work for the loop; nil once the loop has stopped taking work.
        var pending: [@Sendable () -> Void]? = []
        /// Whether an OS thread runs the loop, between `start` and `stop` (not when a caller drives it).
        var threadRunning = false
    }
    private let shared = Mutex(Shared())
    /// What only the loop thread touches.
    private final class LoopState {
        var handlers: [Int32: () -> Void] = [:]
        /// Ring checks to spin on before sleeping, keyed by the fd they belong to (removed with it).
        var pollers: [Int32: () -> Bool] = [:]
        var running = true
    }
    private let state: LoopBound<LoopState>
    /// How long to spin on `pollers` before sleeping in epoll (0: never; DataPathTuning).
    private let pollBudgetNs = UInt64(DataPathTuning.current.pollMicroseconds) * 1000
    private let finished = DispatchSemaphore(value: 0)

    public init(name: String) throws(SystemError) {
        self.name = name
        state = LoopBound(LoopState(), handingTo: id)
        epoll = UniqueFD(taking: try sys("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
        wakeup = try EventFD()
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeup.fd
        try sys("epoll_ctl(ADD)") { epoll_ctl(epoll.rawValue, EPOLL_CTL_ADD, wakeup.fd, &event) }
    }

    private func addToEpoll(_ fd: Int32) throws(SystemError) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = fd
        try sys("epoll_ctl(ADD)") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
    }

    public func start() {
        let t = Thread { [self] in self.loop() }
        t.name = name
        shared.withLock { $0.threadRunning = true }
        t.start()
    }

    /// True on this iothread's own OS thread: a thread-local load and a compare.
    package var isCurrent: Bool { LoopID.current == id }

    private func loop() {
        LoopID.makeCurrent(id)
        let state = self.state.value
        while state.running {
            // Found work while spinning: handle it, and whatever else is ready, without sleeping.
            if pollBudgetNs > 0 && !state.pollers.isEmpty && spin(state) {
                poll(timeoutMs: 0)
            } else {
                poll(timeoutMs: -1)
            }
        }
        LoopID.makeCurrent(nil)
        finished.signal()
    }

    /// Calls the pollers until one finds work or the budget is spent; true if one found work.
    /// Saves the sleep and wake-up of the thread (and of the driver's kick) when requests follow
    /// each other closely, at the price of a CPU spinning for up to the budget.
    private func spin(_ state: LoopState) -> Bool {
        let deadline = monotonicNs() &+ pollBudgetNs
        repeat {
            var progress = false
            for poller in state.pollers.values where poller() { progress = true }
            if progress { return true }
        } while monotonicNs() < deadline
        return false
    }

    /// Makes the calling thread this loop's own without starting one; the caller then drives
    /// it with `poll` (tests, single-threaded).
    package func adoptCurrentThread() {
        LoopID.makeCurrent(id)
    }

    /// Waits up to `timeoutMs` (-1: forever) for ready fds and runs their handlers; returns the
    /// number of events. Loop thread only.
    @discardableResult
    package func poll(timeoutMs: Int32) -> Int {
        let state = self.state.value  // checks that this is the loop thread
        let n = withUnsafeTemporaryAllocation(of: epoll_event.self, capacity: 64) { events in
            let n = Int(epoll_wait(epollFD, events.baseAddress, Int32(events.count), timeoutMs))
            for i in 0..<max(n, 0) {
                let fd = events[i].data.fd
                if fd == wakeup.fd {
                    wakeup.drain()
                    runPending()
                } else {
                    state.handlers[fd]?()
                }
            }
            return n
        }
        return max(n, 0)  // EINTR counts as nothing
    }

    /// Number of fds with a handler, the wake-up fd not counted (tests: nothing left behind).
    package var watchedCount: Int { state.value.handlers.count }

    private func runPending() {
        let tasks = shared.withLock { shared in
            defer { if shared.pending != nil { shared.pending!.removeAll() } }
            return shared.pending ?? []
        }
        for task in tasks { task() }
    }

    /// Runs `task` on the loop thread, soon. Returns false (and drops the task) when the loop
    /// has stopped: nothing would ever run it.
    @discardableResult
    public func execute(_ task: @escaping @Sendable () -> Void) -> Bool {
        let queued = shared.withLock { shared in
            guard shared.pending != nil else { return false }
            shared.pending!.append(task)
            return true
        }
        if queued { wakeup.signal() }
        return queued
    }

    /// Runs `body` on the loop thread and waits for its result (directly when already there).
    /// Throws `IOThread.Stopped` instead of waiting forever when the loop no longer runs.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        if isCurrent { return try body() }
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
        let queued = execute {
            let r = Result { try body() }
            result.withLock { $0 = r }
            done.signal()
        }
        guard queued else { throw Stopped(name: name) }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Work was handed to an iothread that has stopped.
    public struct Stopped: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "iothread '\(name)' has stopped" }
    }

    /// Calls `handler` on the loop thread whenever `fd` is readable. Loop thread only.
    package func watch(_ fd: Int32, handler: @escaping () -> Void) throws(SystemError) {
        let state = self.state.value
        try addToEpoll(fd)
        state.handlers[fd] = handler
    }

    /// Also calls `poller` (which says whether it found work) while the loop spins before
    /// sleeping, when polling is on; `fd` must be watched, and unwatching it removes the poller.
    package func addPoller(for fd: Int32, _ poller: @escaping () -> Bool) {
        let state = self.state.value
        guard pollBudgetNs > 0, state.handlers[fd] != nil else { return }
        state.pollers[fd] = poller
    }

    /// Stops watching `fd`. Loop thread only.
    package func unwatch(_ fd: Int32) {
        let state = self.state.value
        state.pollers[fd] = nil
        if state.handlers.removeValue(forKey: fd) != nil {
            _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        }
    }

    /// Adds or removes writability to what wakes `fd`'s handler. Loop thread only.
    package func setWritable(_ fd: Int32, _ writable: Bool) {
        guard state.value.handlers[fd] != nil else { return }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | (writable ? EPOLLOUT.rawValue : 0)
        event.data.fd = fd
        _ = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    /// Ends the loop after the work queued so far, and waits for the thread to exit. Work
    /// posted after this fails (`execute` returns false, `run` throws).
    public func stop() {
        let threadRuns = shared.withLock { shared in
            if !shared.threadRunning { shared.pending = nil }
            return shared.threadRunning
        }
        guard threadRuns else { return }
        execute { [state] in state.value.running = false }
        finished.wait()
        // Whatever slipped in after the stop request still runs (its callers are waiting).
        let late = shared.withLock { shared in
            defer { shared.pending = nil }
            return shared.pending ?? []
        }
        for task in late { task() }
        shared.withLock { $0.threadRunning = false }
    }
}
