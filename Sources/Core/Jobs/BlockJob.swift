import QAPI
import Synchronization

/// QEMU's job states (qapi/job.json JobStatus), as query-jobs and JOB_STATUS_CHANGE name them.
public enum JobStatus: String, Sendable {
    case created, running, paused, ready, standby, waiting, pending, aborting, concluded, null
}

/// The kinds of job we run (QEMU's JobType names).
public enum JobType: String, Sendable {
    case commit, mirror
}

/// A job as query-jobs / query-block-jobs and the progress of the CLI verbs show it.
public struct JobInfo: Sendable, Equatable {
    public var id: String
    public var type: JobType
    public var status: JobStatus
    /// Bytes copied, and the estimate of the total (grows while the disk is written).
    public var offset: UInt64
    public var length: UInt64
    public var ready: Bool
    public var autoFinalize: Bool
    public var autoDismiss: Bool
    public var error: String?
    /// The export the job works on (its id).
    public var export: String
    /// The copy's rate limit in bytes per second (0: none).
    public var speed: UInt64 = 0
}

/// Where a job's events go (the QMP server's connected client): name and `data`.
public typealias JobEventSink = @Sendable (_ event: String, _ data: OptionValue) -> Void

/// Where a job's progress goes (the state directory, for `list`): the export id, and the job
/// or nil once it is gone. Called on the job's thread or a command's; must not block long.
public typealias JobProgressObserver = @Sendable (_ export: String, _ job: JobInfo?) -> Void

/// A failure of a job command, in QEMU's words.
public struct JobError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The jobs of one server: ids unique, at most one job per export; commands act on them by id.
public final class JobRegistry: Sendable {
    private struct State {
        var jobs: [CopyJob] = []
        var sink: JobEventSink?
        var observer: JobProgressObserver?
    }

    /// Callbacks are taken out under the lock and called outside it.
    private let state = Mutex(State())

    init() {}

    /// Sends every job event from now on to `events`.
    public func setEventSink(_ events: JobEventSink?) { state.withLock { $0.sink = events } }

    /// Tells `progress` from now on how each job is doing (status changes, and its copy at most
    /// every `JobRegistry.progressInterval` seconds), and nil once a job is gone.
    public func setProgressObserver(_ progress: JobProgressObserver?) { state.withLock { $0.observer = progress } }

    /// How often a copying job reports its progress (seconds).
    static let progressInterval = 0.5

    func report(_ job: CopyJob, _ info: JobInfo?) {
        state.withLock { $0.observer }?(job.exportID, info)
    }

    func emit(_ event: String, _ data: OptionValue) {
        state.withLock { $0.sink }?(event, data)
    }

    public var all: [JobInfo] { state.withLock { $0.jobs }.map(\.info) }

    func add(_ job: CopyJob) throws(JobError) {
        try state.withLock { (state: inout State) throws(JobError) in
            if state.jobs.contains(where: { $0.id == job.id }) { throw JobError("Job ID '\(job.id)' already in use") }
            if let other = state.jobs.first(where: { $0.exportID == job.exportID }) {
                throw JobError("Node '\(job.exportID)' is busy: block device is in use by block job: \(other.type.rawValue)")
            }
            state.jobs.append(job)
        }
    }

    func remove(_ job: CopyJob) {
        let removed = state.withLock { state in
            defer { state.jobs.removeAll { $0 === job } }
            return state.jobs.contains { $0 === job }
        }
        if removed { report(job, nil) }
    }

    /// The job working on export `id`, if any.
    func job(onExport id: String) -> CopyJob? { state.withLock { $0.jobs.first { $0.exportID == id } } }

    private func find(_ id: String) throws(JobError) -> CopyJob {
        guard let job = state.withLock({ $0.jobs.first { $0.id == id } }) else { throw JobError("Job not found") }
        return job
    }

    public func cancel(id: String) throws(JobError) { try find(id).cancel() }
    public func complete(id: String) throws(JobError) { try find(id).complete() }
    public func setSpeed(id: String, speed: UInt64) throws(JobError) { try find(id).setSpeed(speed) }
    public func dismiss(id: String) throws(JobError) {
        let job = try find(id)
        try job.dismiss()
        remove(job)
    }

    /// Cancels the job on export `id` and waits until it has let go of the disk (before the
    /// export is deleted).
    func cancelAndWait(export id: String) {
        guard let job = job(onExport: id) else { return }
        try? job.cancel()
        job.waitUntilFinished()
        if job.info.status == .concluded { remove(job) }
    }
}
