import Synchronization
import Wire

/// What a request was, for counting it when it completes.
package enum RequestKind: UInt8, Sendable {
    case read, write, flush, discard, writeZeroes, other
}

/// The counters of one virtqueue. Only the queue's iothread writes them (a relaxed load and
/// store: one writer, so no read-modify-write is needed); the QMP thread reads them without
/// locks. They outlive the queue server (a driver reset makes a new one) and count from the
/// start of this server process.
package final class QueueStats: Sendable {
    package let index: Int
    let reads = Atomic<UInt64>(0)
    let writes = Atomic<UInt64>(0)
    let flushes = Atomic<UInt64>(0)
    let discards = Atomic<UInt64>(0)
    let writeZeroes = Atomic<UInt64>(0)
    /// GET_ID and requests answered without I/O (refused, unsupported).
    let others = Atomic<UInt64>(0)
    let bytesRead = Atomic<UInt64>(0)
    let bytesWritten = Atomic<UInt64>(0)
    let bytesDiscarded = Atomic<UInt64>(0)
    let failedReads = Atomic<UInt64>(0)
    let failedWrites = Atomic<UInt64>(0)
    let failedFlushes = Atomic<UInt64>(0)
    let failedDiscards = Atomic<UInt64>(0)
    let failedOthers = Atomic<UInt64>(0)
    let malformed = Atomic<UInt64>(0)
    let interrupts = Atomic<UInt64>(0)
    let inFlight = Atomic<Int>(0)

    package init(index: Int) { self.index = index }

    /// A request ended with `status`, `bytes` of it moved. Iothread only.
    func completed(_ kind: RequestKind, bytes: UInt64, ok: Bool) {
        switch kind {
        case .read:
            reads.bump()
            if ok { bytesRead.bump(bytes) } else { failedReads.bump() }
        case .write:
            writes.bump()
            if ok { bytesWritten.bump(bytes) } else { failedWrites.bump() }
        case .flush:
            flushes.bump()
            if !ok { failedFlushes.bump() }
        case .discard:
            discards.bump()
            if ok { bytesDiscarded.bump(bytes) } else { failedDiscards.bump() }
        case .writeZeroes:
            writeZeroes.bump()
            if !ok { failedWrites.bump() }  // QEMU accounts write-zeroes as writes
        case .other:
            others.bump()
            if !ok { failedOthers.bump() }
        }
    }

    /// A consistent-enough copy for reporting (each counter read once, relaxed).
    package var snapshot: QueueCounters {
        QueueCounters(queue: index, reads: reads.load(ordering: .relaxed), writes: writes.load(ordering: .relaxed),
                      flushes: flushes.load(ordering: .relaxed), discards: discards.load(ordering: .relaxed),
                      writeZeroes: writeZeroes.load(ordering: .relaxed), others: others.load(ordering: .relaxed),
                      bytesRead: bytesRead.load(ordering: .relaxed), bytesWritten: bytesWritten.load(ordering: .relaxed),
                      bytesDiscarded: bytesDiscarded.load(ordering: .relaxed),
                      failedReads: failedReads.load(ordering: .relaxed), failedWrites: failedWrites.load(ordering: .relaxed),
                      failedFlushes: failedFlushes.load(ordering: .relaxed),
                      failedDiscards: failedDiscards.load(ordering: .relaxed),
                      failedOthers: failedOthers.load(ordering: .relaxed), malformed: malformed.load(ordering: .relaxed),
                      interrupts: interrupts.load(ordering: .relaxed), inFlight: inFlight.load(ordering: .relaxed))
    }
}

extension Atomic where Value == UInt64 {
    /// Single-writer increment: cheaper than an atomic add, and exact with one writer.
    @inline(__always)
    func bump(_ n: UInt64 = 1) { store(load(ordering: .relaxed) &+ n, ordering: .relaxed) }
}

