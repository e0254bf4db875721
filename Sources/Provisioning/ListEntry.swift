import Foundation
import Wire

/// One export as `list` shows it: the record's fields, its state and the job running on it.
public struct ListEntry: Encodable {
    public let record: ExportRecord
    public let state: ExportState
    public let job: JobRecord?

    public init(record: ExportRecord, state: ExportState, job: JobRecord?) {
        self.record = record
        self.state = state
        self.job = job
    }

    /// `list --json`: the record's fields, `state`, and `job` ({id, type, status, offset,
    /// length}) while one runs.
    public func encode(to encoder: Encoder) throws {
        try record.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(state, forKey: .state)
        if let job {
            var j = c.nestedContainer(keyedBy: Key.self, forKey: .job)
            try j.encode(job.id, forKey: .id)
            try j.encode(job.type, forKey: .type)
            try j.encode(job.status, forKey: .status)
            try j.encode(job.offset, forKey: .offset)
            try j.encode(job.length, forKey: .length)
        }
    }
    enum Key: CodingKey { case state, job, id, type, status, offset, length }

    /// Plain `list`: NAME DEVICE STATE PID RESTARTS IMAGE, then the job (`mirror 42%`) if one runs.
    public static func line(_ r: ExportRecord, state: ExportState, job: JobRecord?) -> String {
        func padding(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
        let pid = r.pid > 0 ? String(r.pid) : "-"
        var fields = [padding(r.name, 16), padding(r.device.isEmpty ? "-" : r.device, 10), padding(state.rawValue, 10),
                      padding(pid, 8), padding(String(r.restarts ?? 0), 3), r.image.isEmpty ? "-" : r.image]
        if let job { fields.append(" " + job.summary) }
        return fields.joined(separator: " ")
    }
}
