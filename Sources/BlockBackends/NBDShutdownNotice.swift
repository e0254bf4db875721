import Kernel
import Synchronization

/// Tells the connections of one backend that their server said it is shutting down. A server
/// going down (nbdkit on SIGTERM) answers NBD_ESHUTDOWN only on connections that send it
/// something, and waits for every client to leave before it exits and frees its address: an
/// idle connection of a multi-conn set would keep it alive for ever, and its successor could
/// never bind. The connection that hears it announces it; the others leave from their own loop.
final class NBDShutdownNotice: Sendable {
    private let count = Atomic<UInt64>(0)
    private let wakes: [EventFD]

    /// One wake-up fd per connection, watched in that connection's loop.
    init(connections: Int) throws(SystemError) {
        var wakes: [EventFD] = []
        for _ in 0..<connections { wakes.append(try EventFD()) }
        self.wakes = wakes
    }

    func wake(_ index: Int) -> EventFD { wakes[index] }

    /// How many announcements there have been: a connection leaves when this moved since it last
    /// looked.
    var announcements: UInt64 { count.load(ordering: .acquiring) }

    /// Returns the new count (the announcing connection has seen it already).
    func announce(from index: Int) -> UInt64 {
        let n = count.add(1, ordering: .releasing).newValue
        for (i, w) in wakes.enumerated() where i != index { w.signal() }
        return n
    }
}
