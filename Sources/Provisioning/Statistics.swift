import Core
import Foundation
import Kernel
import QMP

/// `stats`: one export's counters as its server reports them, with what its record adds.
public struct ExportStatsReport: Sendable {
    public var record: ExportRecord
    public var stats: ExportStatistics
    /// Seconds since the disk was first created (across server restarts), if recorded.
    public var age: Double?
}

extension Provisioner {
    /// Asks the server of each running export (or of `name` only) for its counters.
    public func statistics(name: String?) throws(ProvisioningError) -> [ExportStatsReport] {
        let records: [ExportRecord]
        if let name {
            guard let r = state.read(name) else { throw ProvisioningError(.notFound, "no export named '\(name)'") }
            guard r.state == .running, r.socket != nil else {
                throw ProvisioningError(.conflict, "export '\(name)' has no running server (counters live in the server)")
            }
            records = [r]
        } else {
            records = state.all().filter { $0.state == .running && $0.socket != nil }
        }
        let now = Date().timeIntervalSince1970
        var reports: [ExportStatsReport] = []
        for record in records {
            do {
                reports.append(try query(record, now: now))
            } catch {
                if name != nil { throw error }
                // A server that went away meanwhile: the others are still worth showing.
                logger.warning("\(error)")
            }
        }
        return reports
    }

    private func query(_ record: ExportRecord, now: Double) throws(ProvisioningError) -> ExportStatsReport {
        let listed: [ExportStatistics]
        do {
            let reply = try QMPClient.execute(socket: record.socket!, command: "x-query-export-stats",
                                              arguments: .object([("id", .string(record.id))]), timeout: 10)
            listed = try QMPStats.decode(reply)
        } catch {
            throw ExportError(.kernel, "cannot read the counters of '\(record.name)': \(error)", cause: error)
        }
        guard let stats = listed.first else {
            throw ExportError(.kernel, "the server of '\(record.name)' does not list export '\(record.id)'")
        }
        return ExportStatsReport(record: record, stats: stats, age: record.created.map { max(0, now - $0.secondsSince1970) })
    }
}
