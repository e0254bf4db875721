import CVDUSE
import Glibc

/// An eventfd: the wake-up primitive between the kernel (kicks, io_uring completions) or other
/// threads and an iothread's epoll loop.
package final class EventFD: Sendable {
    private let descriptor: UniqueFD
    package var fd: Int32 { descriptor.rawValue }

    package init() throws(SystemError) {
        descriptor = UniqueFD(taking: try sys("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) })
    }

    /// Adds one to the counter (wakes a poller).
    package func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(fd, $0.baseAddress, 8) }
    }

    /// Resets the counter; returns false when nothing had been signalled.
    @discardableResult
    package func drain() -> Bool {
        var value: UInt64 = 0
        return withUnsafeMutableBytes(of: &value) { read(fd, $0.baseAddress, 8) } == 8
    }
}
