import Foundation
import QAPI
import Wire

/// Export counters over QMP: `query-blockstats` in QEMU's shape (what the queues count; times
/// and merges, which we do not measure, are 0), and `x-query-export-stats` with everything,
/// per queue, in our own shape (also read back by `vduse-export stats`).
package enum QMPStats {
    /// One `BlockStats` of `query-blockstats`, for an export's node.
    package static func blockStats(_ s: ExportStatistics) -> OptionValue {
        let t = QueueCounters.total(s.queues)
        let stats: [(key: String, value: OptionValue)] = [
            ("rd_bytes", .integer(t.bytesRead)), ("wr_bytes", .integer(t.bytesWritten)),
            ("zone_append_bytes", .integer(0)), ("unmap_bytes", .integer(t.bytesDiscarded)),
            ("rd_operations", .integer(t.reads)), ("wr_operations", .integer(t.writes + t.writeZeroes)),
            ("zone_append_operations", .integer(0)), ("flush_operations", .integer(t.flushes)),
            ("unmap_operations", .integer(t.discards)),
            ("rd_total_time_ns", .integer(0)), ("wr_total_time_ns", .integer(0)), ("zone_append_total_time_ns", .integer(0)),
            ("flush_total_time_ns", .integer(0)), ("unmap_total_time_ns", .integer(0)), ("wr_highest_offset", .integer(0)),
            ("rd_merged", .integer(0)), ("wr_merged", .integer(0)), ("zone_append_merged", .integer(0)),
            ("unmap_merged", .integer(0)),
            ("failed_rd_operations", .integer(t.failedReads)), ("failed_wr_operations", .integer(t.failedWrites)),
            ("failed_zone_append_operations", .integer(0)), ("failed_flush_operations", .integer(t.failedFlushes)),
            ("failed_unmap_operations", .integer(t.failedDiscards)),
            ("invalid_rd_operations", .integer(0)), ("invalid_wr_operations", .integer(0)),
            ("invalid_zone_append_operations", .integer(0)), ("invalid_flush_operations", .integer(0)),
            ("invalid_unmap_operations", .integer(0)),
            ("account_invalid", .bool(false)), ("account_failed", .bool(true)), ("timed_stats", .list([])),
        ]
        return .object([("device", .string("")), ("node-name", .string(s.nodeName)), ("qdev", .string(s.id)),
                        ("stats", .object(stats))])
    }

    /// Keys in QMP's style (`bytes-read`), both ways.
    private static func kebab(_ key: String) -> String {
        var out = ""
        for c in key {
            if c.isUppercase { out += "-" + c.lowercased() } else { out.append(c) }
        }
        return out
    }

    private static func camel(_ key: String) -> String {
        let parts = key.split(separator: "-")
        return parts.enumerated().map { $0.offset == 0 ? String($0.element) : $0.element.capitalized }.joined()
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// `x-query-export-stats`' value for one export.
    package static func exportStats(_ s: ExportStatistics) throws -> OptionValue {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .custom { Key(stringValue: kebab($0.last!.stringValue)) }
        e.outputFormatting = .sortedKeys
        return try JSONParser.parse(String(decoding: try e.encode(s), as: UTF8.self))
    }

    /// Reads `x-query-export-stats`' reply back.
    package static func decode(_ value: OptionValue) throws -> [ExportStatistics] {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .custom { Key(stringValue: camel($0.last!.stringValue)) }
        return try d.decode([ExportStatistics].self, from: Data(value.jsonText.utf8))
    }
}
