import CVDUSE
import Glibc

/// A timerfd on the monotonic clock: timeouts and retries inside an iothread's epoll loop,
/// which has no timers of its own.
package final class TimerFD: Sendable {
    private let descriptor: UniqueFD
    package var fd: Int32 { descriptor.rawValue }

    package init() throws(SystemError) {
        descriptor = UniqueFD(taking: try sys("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        })
    }

    /// Fires every `intervalMs` from `firstMs` on; 0 for both disarms.
    package func arm(firstMs: Int, intervalMs: Int) {
        func spec(_ ms: Int) -> timespec { timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000) }
        var value = itimerspec(it_interval: spec(intervalMs), it_value: spec(firstMs))
        _ = timerfd_settime(fd, 0, &value, nil)
    }

    package func disarm() { arm(firstMs: 0, intervalMs: 0) }

    /// Reads the expiry count (so the fd stops being readable).
    package func drain() {
        var count: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &count) { read(fd, $0.baseAddress, 8) }
    }
}

/// Nanoseconds on the monotonic clock.
package func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Milliseconds on the monotonic clock.
package func monotonicMs() -> UInt64 { monotonicNs() / 1_000_000 }
