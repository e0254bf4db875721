import Glibc
import Synchronization

/// Test-only points in a live job (snapshot, commit, mirror) where the armed switch
/// (`TestCrash`, SIGUSR1) SIGKILLs the server, to prove that a crash at that exact moment comes
/// back on a consistent image; or, for `stall-POINT`, where the job waits until it is cancelled,
/// so a test can interrupt a job that is surely still copying. One shot: the point disarms when
/// reached. Inert (one relaxed load) unless the environment enabled the switch.
extension TestCrash {
    package enum JobPoint: String, Sendable, CaseIterable {
        /// A commit or mirror job's thread has just started (tracking installed, nothing copied).
        case jobStarted = "job-started"
        /// A commit or mirror has copied at least half of what it knows it has to copy.
        case midCopy = "mid-copy"
        /// The target holds everything and is flushed; the switch is not recorded yet.
        case beforeSwitch = "before-switch"
        /// The switch is recorded in the state record; a persistent export's configuration has
        /// not followed yet, and the export does not serve the target yet. (Reached in the
        /// record keeper right after the record is written, else after the job's record step.)
        case afterSwitch = "after-switch"

        /// `POINT` (kill) or `stall-POINT`.
        package static func parse(_ name: String) -> (JobPoint, JobAction)? {
            if name.hasPrefix("stall-"), let p = JobPoint(rawValue: String(name.dropFirst(6))) { return (p, .stall) }
            return JobPoint(rawValue: name).map { ($0, .kill) }
        }

        fileprivate var code: UInt8 { UInt8(Self.allCases.firstIndex(of: self)! + 1) }
    }

    package enum JobAction: String, Sendable, CustomStringConvertible {
        /// SIGKILL of the whole server, from inside, at the point.
        case kill
        /// The job waits at the point until it is cancelled (only `mid-copy` and `job-started`).
        case stall

        package var description: String { rawValue }
    }

    /// 0: nothing armed; else the point's code, plus 0x80 for a stall.
    private static let armedJob = Atomic<UInt8>(0)

    static func armJob(_ point: JobPoint, _ action: JobAction) {
        armedJob.store(point.code | (action == .stall ? 0x80 : 0), ordering: .relaxed)
    }

    /// Called by a job at `point`: SIGKILLs the process if a kill is armed there; returns true
    /// (once) if a stall is armed there, false otherwise.
    @inline(__always)
    package static func reached(_ point: JobPoint) -> Bool {
        let armed = armedJob.load(ordering: .relaxed)
        guard armed != 0, armed & 0x7f == point.code else { return false }
        guard armedJob.compareExchange(expected: armed, desired: 0, ordering: .relaxed).exchanged else { return false }
        if armed & 0x80 != 0 { return true }
        kill(getpid(), SIGKILL)
        // SIGKILL of ourselves does not return; should it, end the same way.
        _exit(137)
    }
}
