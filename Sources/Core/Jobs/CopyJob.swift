import BlockBackends
import Foundation
import Glibc
import Kernel
import QAPI
import Synchronization

/// A commit or mirror: copies the chunks of `bitmap` from `source` to `target` on a thread of
/// its own while the disk runs (guest writes mark chunks dirty again, `DirtyTrackingBackend`),
/// becomes ready when none is left, and on `complete` copies the last dirty chunks with the
/// queues drained and switches the export to `target` (recorded first, `switchBackend`). On
/// cancel or an error the export goes back to `source` untouched. States and events as QEMU's.
///
/// `state` is behind a mutex. The job's references to the backends are used by its thread, and
/// by the export's iothread while that thread waits for it (`HandedOff` checks that these uses
/// never overlap); the backends themselves do their I/O through queues bound to one loop each.
final class CopyJob: Sendable {
    let id: String
    let type: JobType
    let exportID: String
    private unowned let manager: ExportManager
    private let registry: JobRegistry
    private struct Backends {
        let source: any BlockBackend
        var target: (any BlockBackend)?
    }
    private let backends: HandedOff<Backends>
    private let sourcePlan: ExportPlan
    private let targetPlan: ExportPlan
    private let bitmap: DirtyBitmap
    private let record: @Sendable (BackendSwitch) throws -> Void
    /// After a cancel or failure, once the export is back on the source.
    private let onAbort: @Sendable () -> Void
    let autoFinalize: Bool
    let autoDismiss: Bool

    private struct State {
        var status = JobStatus.created
        var offset: UInt64 = 0
        var ready = false
        var error: String?
        var cancelRequested = false
        var completeRequested = false
        /// The copy's rate limit in bytes per second (0: none), QEMU's `speed`.
        var speed: UInt64 = 0
        /// When the observer last heard of the copy (`reportProgress`).
        var lastReport: Deadline?
    }
    private let state: Mutex<State>
    private let finished = DispatchSemaphore(value: 0)

    init(id: String, type: JobType, exportID: String, manager: ExportManager, registry: JobRegistry,
         source: any BlockBackend, sourcePlan: ExportPlan, target: any BlockBackend, targetPlan: ExportPlan,
         bitmap: DirtyBitmap, autoFinalize: Bool, autoDismiss: Bool, speed: UInt64 = 0,
         record: @escaping @Sendable (BackendSwitch) throws -> Void, onAbort: @escaping @Sendable () -> Void) {
        self.id = id
        self.type = type
        self.exportID = exportID
        self.manager = manager
        self.registry = registry
        backends = HandedOff(Backends(source: source, target: target))
        self.sourcePlan = sourcePlan
        self.targetPlan = targetPlan
        self.bitmap = bitmap
        self.autoFinalize = autoFinalize
        self.autoDismiss = autoDismiss
        self.record = record
        self.onAbort = onAbort
        state = Mutex(State(speed: speed))
    }

    var info: JobInfo {
        let s = state.withLock { $0 }
        let remaining = UInt64(bitmap.dirtyCount) * bitmap.chunkSize
        return JobInfo(id: id, type: type, status: s.status, offset: s.offset, length: s.offset + remaining, ready: s.ready,
                       autoFinalize: autoFinalize, autoDismiss: autoDismiss, error: s.error, export: exportID, speed: s.speed)
    }

    // MARK: commands (any thread)

    /// The states in which a job still takes cancel and set-speed (QEMU's verb table).
    private static let active: Set<JobStatus> = [.created, .running, .ready, .paused, .standby]

    private func refuse(_ verb: String, _ status: JobStatus) -> JobError {
        JobError("Job '\(id)' in state '\(status.rawValue)' cannot accept command verb '\(verb)'")
    }

    func cancel() throws(JobError) {
        try state.withLock { (s: inout State) throws(JobError) in
            guard Self.active.contains(s.status) else { throw refuse("cancel", s.status) }
            s.cancelRequested = true
        }
    }

    /// QEMU's block-job-set-speed: the new limit holds from the next chunk on (0: none).
    func setSpeed(_ speed: UInt64) throws(JobError) {
        try state.withLock { (s: inout State) throws(JobError) in
            guard Self.active.contains(s.status) else { throw refuse("set-speed", s.status) }
            s.speed = speed
        }
    }

    func complete() throws(JobError) {
        try state.withLock { (s: inout State) throws(JobError) in
            guard s.status == .ready else { throw refuse("complete", s.status) }
            s.completeRequested = true
        }
    }

    func dismiss() throws(JobError) {
        try state.withLock { (s: inout State) throws(JobError) in
            guard s.status == .concluded else { throw refuse("dismiss", s.status) }
            s.status = .null
        }
        emit("JOB_STATUS_CHANGE", [("id", .string(id)), ("status", .string("null"))])
    }

    func waitUntilFinished() {
        finished.wait()
        finished.signal()
    }

    // MARK: the job's thread

    func start() {
        transition(.created)
        let t = Thread { [self] in
            run()
            finished.signal()
        }
        t.name = "job-\(id)"
        t.start()
    }

    private enum Outcome { case complete, cancel, failed(String) }

    private func run() {
        transition(.running)
        var outcome = copyUntilDone()
        if case .complete = outcome {
            transition(.waiting)
            transition(.pending)
            do {
                try switchToTarget()
                backends.withValue { $0.target = nil }
                emit("BLOCK_JOB_COMPLETED", progress)
                conclude()
                return
            } catch {
                outcome = .failed("\(error)")
            }
        }
        transition(.aborting)
        restoreSource()
        backends.withValue { $0.target = nil }
        onAbort()
        switch outcome {
        case let .failed(message):
            state.withLock { $0.error = message }
            emit("BLOCK_JOB_COMPLETED", progress + [("error", .string(message))])
        default:
            emit("BLOCK_JOB_CANCELLED", progress)
        }
        conclude()
    }

    /// Dirty chunks copied by one request at most: contiguous ones read and written together.
    private var runLimit: Int {
        max(1, Int(UInt64(DataPathTuning.current.copyKiB) * 1024 / bitmap.chunkSize))
    }

    private func copyUntilDone() -> Outcome {
        backends.withValue { copyUntilDone(from: $0.source, to: $0.target!) }
    }

    private func copyUntilDone(from source: any BlockBackend, to target: any BlockBackend) -> Outcome {
        let copier: ChunkCopier
        let loop: IOThread
        do {
            loop = try IOThread(name: "job-\(id)")
            loop.adoptCurrentThread()
            copier = try ChunkCopier(from: source.forCopying(), to: target, chunkSize: Int(bitmap.chunkSize) * runLimit, loop: loop)
        } catch {
            return .failed("\(error)")
        }
        var cursor = 0
        var stalled = TestCrash.reached(.jobStarted)
        var limit = RateLimit()
        while true {
            let (cancel, completeNow, speed) = state.withLock { ($0.cancelRequested, $0.completeRequested, $0.speed) }
            if cancel { return .cancel }
            if stalled {  // test only: held here until cancelled
                usleep(10_000)
                continue
            }
            // Under a speed limit, wait in short steps so that cancel and a new speed are seen
            // (only when there is something to copy: a ready job completes at once).
            if bitmap.dirtyCount > 0, let wait = limit.wait(speed: speed), wait > 0 {
                usleep(useconds_t(min(wait, 0.05) * 1e6))
                continue
            }
            if let run = bitmap.takeRun(from: cursor, limit: runLimit) {
                let (offset, length) = bitmap.range(of: run)
                guard copier.copy(offset: offset, length: Int(length), grain: Int(bitmap.chunkSize)) else {
                    bitmap.mark(run: run)
                    return .failed("I/O error copying \(length) bytes at offset \(offset)")
                }
                limit.copied(length, speed: speed)
                state.withLock { $0.offset += length }
                reportProgress()
                let next = run.first + run.count
                cursor = next < bitmap.chunks ? next : 0
                let progress = info
                if progress.offset * 2 >= progress.length { stalled = TestCrash.reached(.midCopy) }
                continue
            }
            if !state.withLock({ $0.ready }) {
                guard copier.flushTarget() else { return .failed("flushing the target failed") }
                state.withLock { $0.ready = true }
                transition(.ready)
                emit("BLOCK_JOB_READY", progress)
            }
            if completeNow { return .complete }
            usleep(10_000)
        }
    }

    /// The last dirty chunks are copied with the export's queues drained, then the switch.
    private func switchToTarget() throws {
        let change = BackendSwitch(name: sourcePlan.deviceName, exportID: exportID, from: sourcePlan.backend, to: targetPlan.backend)
        try manager.withExport(named: exportID) { export, _ in
            try export.run { [self] export in
                try export.switchBackend(to: targetPlan, open: { () throws -> any BlockBackend in
                    try backends.withValue { b throws -> any BlockBackend in
                        let target = b.target!
                        let copier = try ChunkCopier(from: b.source, to: target, chunkSize: Int(bitmap.chunkSize) * runLimit,
                                                     loop: export.iothread)
                        while let run = bitmap.takeRun(from: 0, limit: runLimit) {
                            let (offset, length) = bitmap.range(of: run)
                            guard copier.copy(offset: offset, length: Int(length), grain: Int(bitmap.chunkSize)) else {
                                bitmap.mark(run: run)
                                throw ExportError("I/O error copying \(length) bytes at offset \(offset)")
                            }
                            state.withLock { $0.offset += length }
                        }
                        guard copier.flushTarget() else { throw ExportError("flushing the target failed") }
                        return target
                    }
                }, record: { _ in
                    _ = TestCrash.reached(.beforeSwitch)
                    try record(change)
                    _ = TestCrash.reached(.afterSwitch)
                })
            }
        }
    }

    /// The export leaves the dirty tracking and serves its source again, as before the job.
    private func restoreSource() {
        let plan = sourcePlan
        do {
            try manager.withExport(named: exportID) { export, _ in
                try export.run { [self] in
                    try $0.switchBackend(to: plan, open: { self.backends.withValue { $0.source } }, record: { _ in })
                }
            }
        } catch {
            registry.emit("BLOCK_JOB_ERROR", .object([("device", .string(id)), ("operation", .string("write")),
                                                      ("action", .string("report"))]))
        }
    }

    private var progress: [(key: String, value: OptionValue)] {
        let i = info
        return [("type", .string(type.rawValue)), ("device", .string(id)), ("len", .integer(Int(i.length))),
                ("offset", .integer(Int(i.offset))), ("speed", .integer(Int(i.speed)))]
    }

    private func conclude() {
        transition(.concluded)
        if autoDismiss {
            state.withLock { $0.status = .null }
            emit("JOB_STATUS_CHANGE", [("id", .string(id)), ("status", .string("null"))])
            registry.remove(self)
        }
    }

    private func transition(_ status: JobStatus) {
        state.withLock { $0.status = status }
        emit("JOB_STATUS_CHANGE", [("id", .string(id)), ("status", .string(status.rawValue))])
        if status != .null { reportProgress(force: true) }
    }

    /// Tells the registry's observer how far the copy is: always on a status change, else at
    /// most every `JobRegistry.progressInterval`.
    private func reportProgress(force: Bool = false) {
        let now = Deadline.now
        let due = state.withLock { s in
            guard force || s.lastReport.map({ now.seconds(since: $0) >= JobRegistry.progressInterval }) ?? true else { return false }
            s.lastReport = now
            return true
        }
        guard due else { return }
        registry.report(self, info)
    }

    private func emit(_ event: String, _ data: [(key: String, value: OptionValue)]) {
        registry.emit(event, .object(data))
    }
}
