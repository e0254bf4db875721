import Synchronization

/// A value that is not `Sendable` but is used by one thread at a time, passed between threads
/// by calls that block the giver: a job's thread waits in `ExportHandle.run` while the export's
/// iothread opens the job's target. Every use checks, always, that no other use of this box is
/// under way: the compiler takes our word for the hand-over (as with `LoopBound`), the check
/// keeps it. It guards only the box's own references; objects also reachable elsewhere (a
/// backend the export serves) must be safe to share on their own terms.
package final class HandedOff<Value>: Sendable {
    private let inUse = Atomic<Bool>(false)
    nonisolated(unsafe) private var stored: Value

    package init(_ value: Value) { stored = value }

    /// Runs `body` with the value. Not re-entrant: a use inside another (on any thread) traps.
    package func withValue<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        precondition(!inUse.exchange(true, ordering: .acquiring), "a handed-off value used by two threads at once")
        defer { inUse.store(false, ordering: .releasing) }
        return try body(&stored)
    }
}
