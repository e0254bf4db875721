import QAPI

/// What the manager keeps of an export on its own threads: the facts fixed when the export was
/// made, its counters (atomics, readable anywhere), and the export itself, bound to its iothread
/// so that only code running there can reach it.
struct ExportHandle: Sendable {
    /// The plan the export was made with. A live switch (snapshot, commit, mirror) changes only
    /// its backend, on the iothread: read the current one there (`run { $0.plan }`).
    let plan: ExportPlan
    let iothread: IOThread
    let queueStats: [QueueStats]
    /// When this process started serving the export (CLOCK_MONOTONIC seconds).
    let started: Double
    /// The capacity when the export was made (resizes are tracked by the manager's status).
    let sizeBytes: UInt64
    /// Times a server took this export's device over, as its log said when it was made.
    let restarts: UInt32
    private let export: LoopBound<VDUSEBlockExport>

    /// Made on the export's iothread.
    init(_ export: VDUSEBlockExport) {
        plan = export.plan
        iothread = export.iothread
        queueStats = export.queueStats
        started = export.started
        sizeBytes = export.config.capacitySectors * 512
        restarts = export.restarts
        self.export = LoopBound(export, loop: export.iothread.id)
    }

    /// Runs `body` with the export on its iothread and waits for the result.
    func run<T: Sendable>(_ body: @escaping @Sendable (VDUSEBlockExport) throws -> T) throws -> T {
        try iothread.run { [export] in try body(export.value) }
    }
}
