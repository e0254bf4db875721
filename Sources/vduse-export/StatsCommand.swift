import ArgumentParser
import Foundation
import Provisioning
import Wire

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show each export's I/O counters, per queue and in total: requests, bytes, errors, in flight, interrupts; restarts and uptime.",
        discussion: """
            Counters are kept by the server (per queue, written only by the queue's iothread) and \
            start at 0 when a server starts; restarts counts servers that took the device over, \
            and the disk's age is since `add` first created it. Reads the export's QMP socket \
            (x-query-export-stats; query-blockstats gives the totals in QEMU's shape). An export \
            whose server is not running has no counters (exit 3); unknown name: exit 6.
            """)

    @Argument(help: "Only this export (as `list` shows it); default: every running export.")
    var name: String?

    func validate() throws { try requireNonEmpty(name, "NAME") }

    @Flag(help: "Print a JSON array: per export name, device, restarts, uptime, age, total and queues.")
    var json = false

    func run() throws {
        let reports: [ExportStatsReport]
        do {
            reports = try Provisioner(logger: Console.logger(verbose: false)).statistics(name: name)
        } catch {
            throw fail(error)
        }
        if json {
            Console.out(Console.json(reports.map(StatsEntry.init)))
            return
        }
        for (i, r) in reports.enumerated() {
            if i > 0 { Console.out("") }
            let age = r.age.map { ", disk created \(Self.duration($0)) ago" } ?? ""
            Console.out("\(r.record.name) \(r.record.device.isEmpty ? "-" : r.record.device): up \(Self.duration(r.stats.uptime))\(age), restarts \(r.stats.restarts)")
            Console.out(Self.row(["queue", "requests", "reads", "writes", "flushes", "discards", "read", "written", "errors",
                                  "inflight", "irqs"]))
            let rows = r.stats.queues.map { (String($0.queue), $0) } + [("total", QueueCounters.total(r.stats.queues))]
            for (label, q) in rows {
                Console.out(Self.row([label, "\(q.requests)", "\(q.reads)", "\(q.writes)", "\(q.flushes)",
                                      "\(q.discards + q.writeZeroes)", Self.bytes(q.bytesRead), Self.bytes(q.bytesWritten),
                                      "\(q.errors)", "\(q.inFlight)", "\(q.interrupts)"]))
            }
        }
    }

    private static func row(_ cells: [String]) -> String {
        cells.enumerated().map { $0.offset == 0 ? $0.element.padding(6) : String(repeating: " ", count: max(0, 10 - $0.element.count)) + $0.element }
            .joined(separator: " ")
    }

    /// Binary units, one decimal: 1.5G.
    static func bytes(_ n: UInt64) -> String {
        var v = Double(n), unit = 0
        let units = ["", "K", "M", "G", "T", "P"]
        while v >= 1024 && unit < units.count - 1 { v /= 1024; unit += 1 }
        return unit == 0 ? "\(n)" : String(format: "%.1f%@", v, units[unit])
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s)
        if t < 60 { return "\(t)s" }
        if t < 3600 { return "\(t / 60)m\(t % 60)s" }
        if t < 86400 { return "\(t / 3600)h\(t / 60 % 60)m" }
        return "\(t / 86400)d\(t / 3600 % 24)h"
    }
}

/// One export in `stats --json`: exact numbers, the totals next to the queues.
private struct StatsEntry: Encodable {
    var name: String
    var id: String
    var device: String
    var restarts: UInt32
    /// Seconds this server has served the export.
    var uptime: Double
    /// Seconds since the disk was first created.
    var age: Double?
    var total: Counters
    var queues: [Counters]

    init(_ r: ExportStatsReport) {
        name = r.record.name
        id = r.stats.id
        device = r.stats.device
        restarts = r.stats.restarts
        uptime = r.stats.uptime
        age = r.age
        total = Counters(QueueCounters.total(r.stats.queues))
        queues = r.stats.queues.map(Counters.init)
    }

    /// The counters plus their sums (requests, errors).
    struct Counters: Encodable {
        var counters: QueueCounters
        init(_ c: QueueCounters) { counters = c }
        func encode(to encoder: Encoder) throws {
            try counters.encode(to: encoder)
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(counters.requests, forKey: .requests)
            try c.encode(counters.errors, forKey: .errors)
        }
        enum Key: CodingKey { case requests, errors }
    }
}
