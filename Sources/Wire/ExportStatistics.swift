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

    public init(queue: Int, reads: UInt64, writes: UInt64, flushes: UInt64, discards: UInt64, writeZeroes: UInt64, others: UInt64,
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
