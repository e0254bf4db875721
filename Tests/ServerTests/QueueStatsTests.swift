import Core
import Foundation
@testable import QMP
import Testing
import TestSupport
@testable import Server
@testable import Wire

/// The queue server's counters, through the in-memory driver, and their QMP round trip.
@Suite struct QueueStatsTests {
    @Test func countsWhatTheQueueServed() throws {
        let h = try QueueHarness(writable: false, serial: "s")
        let w = h.driver.blockRequest(type: 1, sector: 0, dataLength: 4096, deviceWritesData: false, fill: 1)  // refused: read-only
        let r1 = h.driver.blockRequest(type: 0, sector: 8, dataLength: 4096, deviceWritesData: true)
        let r2 = h.driver.blockRequest(type: 0, sector: 16, dataLength: 1024, deviceWritesData: true)
        let id = h.driver.blockRequest(type: 8, sector: 0, dataLength: 20, deviceWritesData: true)
        for r in [w, r1, r2, id] { h.driver.offer(r.head) }
        h.run(expecting: 4)
        let c = h.server.stats.snapshot
        #expect(c.reads == 2 && c.bytesRead == 5120)
        #expect(c.writes == 0 && c.bytesWritten == 0)
        #expect(c.others == 2 && c.failedOthers == 1 && c.errors == 1)  // the refused write and GET_ID
        #expect(c.requests == 4 && c.inFlight == 0)
    }

    @Test func totalsAndTheQMPShapeRoundTrip() throws {
        var a = QueueCounters(queue: 0), b = QueueCounters(queue: 1)
        a.reads = 3; a.bytesRead = 12288; a.interrupts = 2; a.failedWrites = 1; a.writes = 4
        b.reads = 1; b.bytesRead = 512; b.writeZeroes = 2; b.inFlight = 5
        let t = QueueCounters.total([a, b])
        #expect(t.reads == 4 && t.bytesRead == 12800 && t.requests == 10 && t.errors == 1 && t.inFlight == 5)
        let s = ExportStatistics(id: "e0", name: "d0", nodeName: "disk0", device: "/dev/vda", restarts: 2, uptime: 1.5,
                                 queues: [a, b])
        let value = try QMPStats.exportStats(s)
        #expect(value.jsonText.contains("\"bytes-read\": 12288"))
        #expect(try QMPStats.decode(.list([value])) == [s])
        guard case let .object(top) = QMPStats.blockStats(s), case let .object(stats)? = top.first(where: { $0.key == "stats" })?.value
        else { Issue.record("not an object"); return }
        func n(_ k: String) -> String? { if case let .number(v)? = stats.first(where: { $0.key == k })?.value { v } else { nil } }
        #expect(n("rd_operations") == "4" && n("wr_operations") == "6" && n("rd_bytes") == "12800" && n("failed_wr_operations") == "1")
    }
}
