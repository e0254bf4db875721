import Synchronization

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

/// One queue's counters at one moment.
public struct QueueCounters: Sendable, Equatable, Codable {
    public var queue: Int
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    public var flushes: UInt64 = 0
    public var discards: UInt64 = 0
    public var writeZeroes: UInt64 = 0
    public var others: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    public var bytesDiscarded: UInt64 = 0
    public var failedReads: UInt64 = 0
    public var failedWrites: UInt64 = 0
    public var failedFlushes: UInt64 = 0
    public var failedDiscards: UInt64 = 0
    public var failedOthers: UInt64 = 0
    public var malformed: UInt64 = 0
    public var interrupts: UInt64 = 0
    public var inFlight: Int = 0

    public init(queue: Int) { self.queue = queue }

    init(queue: Int, reads: UInt64, writes: UInt64, flushes: UInt64, discards: UInt64, writeZeroes: UInt64, others: UInt64,
         bytesRead: UInt64, bytesWritten: UInt64, bytesDiscarded: UInt64, failedReads: UInt64, failedWrites: UInt64,
         failedFlushes: UInt64, failedDiscards: UInt64, failedOthers: UInt64, malformed: UInt64, interrupts: UInt64,
         inFlight: Int) {
        self.queue = queue
        self.reads = reads
        self.writes = writes
        self.flushes = flushes
        self.discards = discards
        self.writeZeroes = writeZeroes
        self.others = others
        self.bytesRead = bytesRead
        self.bytesWritten = bytesWritten
        self.bytesDiscarded = bytesDiscarded
        self.failedReads = failedReads
        self.failedWrites = failedWrites
        self.failedFlushes = failedFlushes
        self.failedDiscards = failedDiscards
        self.failedOthers = failedOthers
        self.malformed = malformed
        self.interrupts = interrupts
        self.inFlight = inFlight
    }

    /// Every request, of every kind.
    public var requests: UInt64 { reads + writes + flushes + discards + writeZeroes + others }
    /// Requests that completed with an error (malformed chains not included).
    public var errors: UInt64 { failedReads + failedWrites + failedFlushes + failedDiscards + failedOthers }

    /// The sum of several queues (the export's totals); `queue` is -1.
    public static func total(_ queues: [QueueCounters]) -> QueueCounters {
        var t = QueueCounters(queue: -1)
        for q in queues {
            t.reads += q.reads; t.writes += q.writes; t.flushes += q.flushes; t.discards += q.discards
            t.writeZeroes += q.writeZeroes; t.others += q.others; t.bytesRead += q.bytesRead
            t.bytesWritten += q.bytesWritten; t.bytesDiscarded += q.bytesDiscarded; t.failedReads += q.failedReads
            t.failedWrites += q.failedWrites; t.failedFlushes += q.failedFlushes; t.failedDiscards += q.failedDiscards
            t.failedOthers += q.failedOthers; t.malformed += q.malformed; t.interrupts += q.interrupts
            t.inFlight += q.inFlight
        }
        return t
    }
}

/// One export's statistics at one moment (QMP `x-query-export-stats`, `vduse-export stats`).
public struct ExportStatistics: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    public var nodeName: String
    public var device: String
    /// Times a new server took the device over (from the reconnect log).
    public var restarts: UInt32
    /// Seconds since this server process started serving the export.
    public var uptime: Double
    public var queues: [QueueCounters]

    public init(id: String, name: String, nodeName: String, device: String, restarts: UInt32, uptime: Double,
                queues: [QueueCounters]) {
        self.id = id
        self.name = name
        self.nodeName = nodeName
        self.device = device
        self.restarts = restarts
        self.uptime = uptime
        self.queues = queues
    }
}
