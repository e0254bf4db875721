import Glibc
import Testing
@testable import Core

/// A job's `speed`: how long the copy waits after each chunk.
@Suite struct RateLimitTests {
    @Test func noLimitNeverWaits() {
        var limit = RateLimit()
        #expect(limit.wait(speed: 0) == nil)
        limit.copied(1 << 30, speed: 0)
        #expect(limit.wait(speed: 0) == nil)
    }

    @Test func aChunkEarnsItsTimeAtTheSpeed() throws {
        var limit = RateLimit()
        limit.copied(1 << 20, speed: 4 << 20)  // 1 MiB at 4 MiB/s: the next copy 0.25 s after this one could start
        let wait = try #require(limit.wait(speed: 4 << 20))
        #expect(wait > 0.2 && wait <= 0.25, "waits \(wait) s")
        limit.copied(1 << 20, speed: 4 << 20)  // booked after the first, not from now
        let second = try #require(limit.wait(speed: 4 << 20))
        #expect(second > 0.45 && second <= 0.5, "waits \(second) s")
    }

    @Test func idleTimeIsNotBankedBeyondASlice() throws {
        var limit = RateLimit()
        usleep(300_000)  // idle: at most 0.1 s of it counts
        limit.copied(1 << 20, speed: 4 << 20)
        let wait = try #require(limit.wait(speed: 4 << 20))
        #expect(wait > 0.1 && wait <= 0.15, "waits \(wait) s")
    }
}
