import Kernel
import Testing
@testable import Core

/// A job's `speed`: how long the copy waits after each chunk (times given, not measured).
@Suite struct RateLimitTests {
    let t0 = Deadline(uptimeNs: 1_000_000_000_000)

    func at(_ seconds: Double) -> Deadline { Deadline(uptimeNs: t0.uptimeNs + UInt64((seconds * 1e9).rounded())) }

    func seconds(_ wait: Double?, are expected: Double) -> Bool { wait.map { abs($0 - expected) < 1e-6 } ?? false }

    @Test func noLimitNeverWaits() {
        var limit = RateLimit(now: t0)
        #expect(limit.wait(speed: 0, now: t0) == nil)
        limit.copied(1 << 30, speed: 0, now: at(0.01))
        #expect(limit.wait(speed: 0, now: at(0.01)) == nil)
    }

    @Test func aChunkEarnsItsTimeAtTheSpeed() {
        var limit = RateLimit(now: t0)
        // 1 MiB at 4 MiB/s, copied in 10 ms: the next copy 0.25 s after this one could start.
        limit.copied(1 << 20, speed: 4 << 20, now: at(0.01))
        #expect(seconds(limit.wait(speed: 4 << 20, now: at(0.01)), are: 0.24))
        // The second is booked after the first, not from when it ended.
        limit.copied(1 << 20, speed: 4 << 20, now: at(0.26))
        #expect(seconds(limit.wait(speed: 4 << 20, now: at(0.26)), are: 0.24))
        // A copy slower than the speed owes nothing.
        limit.copied(1 << 20, speed: 4 << 20, now: at(1.5))
        #expect(seconds(limit.wait(speed: 4 << 20, now: at(1.5)), are: 0.15))
    }

    @Test func idleTimeIsNotBankedBeyondASlice() {
        var limit = RateLimit(now: t0)
        limit.copied(1 << 20, speed: 4 << 20, now: at(10))  // 10 s idle: only 0.1 s of it counts
        #expect(seconds(limit.wait(speed: 4 << 20, now: at(10)), are: 0.15))
    }
}
