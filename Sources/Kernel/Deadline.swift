import Glibc

/// A point in time on CLOCK_MONOTONIC, for waits that must end: unlike `Date()`, it does not
/// move when the wall clock is set (NTP, a VM resumed), so a timeout is as long as it says.
public struct Deadline: Sendable, Comparable, Hashable {
    /// Nanoseconds on CLOCK_MONOTONIC.
    public let uptimeNs: UInt64

    public init(uptimeNs: UInt64) { self.uptimeNs = uptimeNs }

    public static var now: Deadline { Deadline(uptimeNs: monotonicNs()) }

    /// `seconds` from now (negative or NaN: now).
    public static func after(seconds: Double) -> Deadline {
        let ns = seconds.isNaN || seconds <= 0 ? 0 : min(seconds * 1e9, Double(UInt64.max / 2))
        return Deadline(uptimeNs: monotonicNs() &+ UInt64(ns))
    }

    public var hasPassed: Bool { monotonicNs() >= uptimeNs }

    /// Seconds left (0 once passed).
    public var remainingSeconds: Double {
        let now = monotonicNs()
        return now >= uptimeNs ? 0 : Double(uptimeNs - now) / 1e9
    }

    /// Seconds since `earlier` (0 if it is later).
    public func seconds(since earlier: Deadline) -> Double {
        uptimeNs >= earlier.uptimeNs ? Double(uptimeNs - earlier.uptimeNs) / 1e9 : 0
    }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.uptimeNs < b.uptimeNs }
}
