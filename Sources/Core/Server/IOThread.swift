import CVDUSE
import Foundation
import Glibc
import Synchronization

/// A named I/O thread (QEMU's `--object iothread,id=…`): one OS thread running an epoll event
/// loop. Handlers for file descriptors (device messages, virtqueue kicks, io_uring completions)
/// run on it; other threads hand it work through `execute`, which queues a closure and wakes
/// the loop with an eventfd.
///
/// Thread confinement: `handlers` and `running` are touched only by the loop thread (or before
/// `start()`), and `pending` is guarded by its mutex; that is why this class may be
/// `@unchecked Sendable`.
public final class IOThread: @unchecked Sendable {
    public let name: String
    private let epollFD: Int32
    private let wakeup: EventFD
    private let pending = Mutex<[@Sendable () -> Void]>([])
    private var handlers: [Int32: () -> Void] = [:]
    private var running = true
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?
    private let threadID = Mutex<pthread_t?>(nil)

    public init(name: String) throws(SystemError) {
        self.name = name
        epollFD = try sys("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        do {
            wakeup = try EventFD()
        } catch {
            close(epollFD)
            throw error
        }
        try addToEpoll(wakeup.fd)
    }

    deinit {
        close(epollFD)
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
        thread = t
        t.start()
    }

    /// True on this iothread's own OS thread.
    var isCurrent: Bool {
        threadID.withLock { id in id.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    private func loop() {
        threadID.withLock { $0 = pthread_self() }
        let capacity = 64
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while running {
            let n = epoll_wait(epollFD, events, Int32(capacity), -1)
            if n < 0 { continue }  // EINTR
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                if fd == wakeup.fd {
                    wakeup.drain()
                    runPending()
                } else {
                    handlers[fd]?()
                }
            }
        }
        finished.signal()
    }

    private func runPending() {
        let tasks = pending.withLock { tasks in
            defer { tasks.removeAll() }
            return tasks
        }
        for task in tasks { task() }
    }

    /// Runs `task` on the loop thread, soon.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append(task) }
        wakeup.signal()
    }

    /// Runs `body` on the loop thread and waits for its result (directly when already there).
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        if isCurrent { return try body() }
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
        execute {
            let r = Result { try body() }
            result.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Calls `handler` on the loop thread whenever `fd` is readable. Loop thread only.
    func watch(_ fd: Int32, handler: @escaping () -> Void) throws(SystemError) {
        try addToEpoll(fd)
        handlers[fd] = handler
    }

    /// Stops watching `fd`. Loop thread only.
    func unwatch(_ fd: Int32) {
        if handlers.removeValue(forKey: fd) != nil {
            _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        }
    }

    /// Ends the loop after the work queued so far, and waits for the thread to exit.
    public func stop() {
        guard thread != nil else { return }
        execute { [self] in self.running = false }
        finished.wait()
        thread = nil
    }
}
