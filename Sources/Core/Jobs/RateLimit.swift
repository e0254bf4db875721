import Kernel

/// QEMU's job `speed`: a copy of `n` bytes at `speed` bytes per second earns the next copy
/// `n / speed` seconds later than this one could start. Time spent copying counts, so a limit
/// above what the storage gives costs nothing; idle time does not bank (no burst after a pause).
/// `now` is a parameter so that tests give the times.
struct RateLimit {
    /// When the next copy may start.
    private var next: Deadline

    init(now: Deadline = .now) { next = now }

    /// Seconds to wait before the next copy (nil: no limit).
    func wait(speed: UInt64, now: Deadline = .now) -> Double? {
        speed == 0 ? nil : next.seconds(since: now)
    }

    /// Books a copy of `bytes` that has just ended.
    mutating func copied(_ bytes: UInt64, speed: UInt64, now: Deadline = .now) {
        guard speed > 0 else {
            next = now
            return
        }
        let earliest = Deadline(uptimeNs: now.uptimeNs &- min(now.uptimeNs, Self.noBurstWindowNs))
        next = Deadline(uptimeNs: max(next, earliest).uptimeNs &+ UInt64(Double(bytes) / Double(speed) * 1e9))
    }

    /// How far a slow copy may have run behind before its time stops counting (QEMU's slice is 100 ms).
    private static let noBurstWindowNs: UInt64 = 100_000_000
}
