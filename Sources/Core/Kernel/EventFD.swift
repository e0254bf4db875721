import CVDUSE
import Glibc

/// An eventfd owned by this object: the wake-up primitive between the kernel (kicks, io_uring
/// completions) or other threads and an iothread's epoll loop.
final class EventFD {
    let fd: Int32

    init() throws(SystemError) {
        fd = try sys("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { close(fd) }

    /// Adds one to the counter (wakes a poller).
    func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(fd, $0.baseAddress, 8) }
    }

    /// Resets the counter; returns false when nothing had been signalled.
    @discardableResult
    func drain() -> Bool {
        var value: UInt64 = 0
        return withUnsafeMutableBytes(of: &value) { read(fd, $0.baseAddress, 8) } == 8
    }
}
