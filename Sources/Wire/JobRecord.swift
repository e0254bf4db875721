import Foundation
import Glibc
import Kernel

/// The block job running on an export, as its server last reported it (`NAME.job` in the state
/// directory, beside the record; `list` shows it). Written at each status change and at most
/// twice a second while the job copies, removed once the job is gone.
public struct JobRecord: Codable, Equatable, Sendable {
    /// The server that runs the job: a file left by a server that is gone is not shown.
    public var pid: Int32
    public var id: String
    /// mirror or commit (QEMU's job types).
    public var type: String
    /// QEMU's job status: created, running, ready, concluded, ...
    public var status: String
    /// Bytes copied, and the estimate of all there is to copy (it grows while the disk is written).
    public var offset: UInt64
    public var length: UInt64

    public init(pid: Int32, id: String, type: String, status: String, offset: UInt64, length: UInt64) {
        self.pid = pid
        self.id = id
        self.type = type
        self.status = status
        self.offset = offset
        self.length = length
    }

    /// Whole percent copied (0 while the length is not known yet; 100 only when all is copied).
    public var percent: Int {
        guard length > 0 else { return 0 }
        return Int(min(offset, length) * 100 / length)
    }

    /// What plain `list` shows: `mirror 42%`, with the status unless the job just copies.
    public var summary: String {
        "\(type) \(percent)%" + (status == "running" ? "" : " \(status)")
    }
}

extension StateDirectory {
    public func jobPath(_ name: String) -> String { "\(path)/\(stem(name)).job" }

    /// Replaces the job file of `name` (nil: removes it). A temporary file renamed over the old
    /// one, without fsync: it is progress for `list`, and /run does not outlive a reboot anyway.
    package func writeJob(_ job: JobRecord?, name: String) {
        let final = jobPath(name)
        guard let job, let data = try? JSONEncoder().encode(job) else {
            unlink(final)
            return
        }
        let tmp = "\(path)/.\(stem(name)).job.\(getpid()).tmp"
        let raw = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard raw >= 0 else { return }
        let fd = UniqueFD(taking: raw)
        let ok = writeAll(fd.rawValue, data)
        if !ok || rename(tmp, final) != 0 { unlink(tmp) }
    }

    /// The job the server named in `record` runs on it, if any.
    public func job(of record: ExportRecord) -> JobRecord? {
        guard let data = FileManager.default.contents(atPath: jobPath(record.name)),
              let job = try? JSONDecoder().decode(JobRecord.self, from: data), job.pid == record.pid else { return nil }
        return job
    }
}
