import Foundation
import Glibc
import Kernel
import QAPI
import QMP

/// One look at a running job, for a progress bar or `--json`.
public struct JobProgress: Codable, Sendable, Equatable {
    public var job: String
    public var status: String
    /// Bytes copied, and the estimate of all there is to copy (grows while the disk is written).
    public var offset: UInt64
    public var length: UInt64
    public var error: String?
}

/// How a job the CLI drove ended.
public enum JobEnd: Sendable, Equatable {
    case completed
    case cancelled
    case failed(String)
}

/// Drives one block job over a QMP session the way a QEMU client would: starts it (not
/// dismissed on its own, so its end can be read), completes it once ready, cancels it when
/// `interrupted` says so, reads how it concluded and dismisses it.
enum JobRunner {
    /// QMP's `speed` member for a job command: bytes per second, left out when there is no limit.
    static func speedArgument(_ speed: UInt64) -> [(key: String, value: OptionValue)] {
        speed == 0 ? [] : [("speed", .integer(Int(clamping: speed)))]
    }

    static func run(session: QMPSession, jobID: String, start: (QMPSession) throws -> Void,
                    interrupted: () -> Bool, progress: (JobProgress) -> Void) throws -> JobEnd {
        try start(session)
        var completing = false, cancelling = false
        var last: JobProgress?
        while true {
            if interrupted() && !cancelling {
                cancelling = true
                _ = try? session.execute("job-cancel", .object([("id", .string(jobID))]))
            }
            guard let now = try query(session, jobID) else { throw ProvisioningError(.kernel, "job '\(jobID)' disappeared") }
            if now != last {
                progress(now)
                last = now
            }
            switch now.status {
            case "ready" where !completing && !cancelling:
                completing = true
                do {
                    _ = try session.execute("job-complete", .object([("id", .string(jobID))]))
                } catch {
                    completing = false  // it was cancelled or failed meanwhile: read on
                }
            case "concluded":
                _ = try? session.execute("job-dismiss", .object([("id", .string(jobID))]))
                if let e = now.error { return .failed(e) }
                return cancelling ? .cancelled : .completed
            default:
                break
            }
            _ = try session.nextEvent(timeoutMs: 200)  // an event, or time for another look
        }
    }

    static func query(_ session: QMPSession, _ id: String) throws -> JobProgress? {
        guard case let .list(jobs) = try session.execute("query-jobs") else { return nil }
        for case let .object(j) in jobs {
            func string(_ k: String) -> String? {
                if case let .string(s)? = j.first(where: { $0.key == k })?.value { return s }
                return nil
            }
            func number(_ k: String) -> UInt64 {
                if case let .number(n)? = j.first(where: { $0.key == k })?.value { return UInt64(n) ?? 0 }
                return 0
            }
            guard string("id") == id else { continue }
            return JobProgress(job: id, status: string("status") ?? "", offset: number("current-progress"),
                               length: number("total-progress"), error: string("error"))
        }
        return nil
    }
}
