import Foundation
import Glibc
import Logging
import Testing
import TestSupport
import VirtioDriverSim
@testable import BlockBackends
@testable import Core
@testable import Kernel
@testable import Virtio

/// The reconnect log against "crashes" at the points that matter: a server dropped with requests in
/// flight, and one that published used elements but died before logging it.
@Suite struct InflightLogTests {
    let path = NSTemporaryDirectory() + "/inflight-\(UUID().uuidString)"
    let identity = InflightLog.Identity(queues: 1, queueSize: 16, logicalBlockSize: 512, features: 1 << 32, serialHash: 7)

    private func server(_ driver: VirtqueueDriver, _ backend: HeldBackend, _ log: QueueLog, _ loop: IOThread) throws -> VirtqueueServer {
        let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: true, memory: driver.space)
        let geometry = BlockExportGeometry(capacitySectors: 2048, logicalBlockSize: 512, writable: true, serial: [])
        return try VirtqueueServer(queue: queue, backend: backend, geometry: geometry, memory: driver.space, loop: loop,
                                   logger: Logger(label: "test"), log: log, interrupt: {})
    }

    @Test func aNewServerResubmitsWhatWasInFlightInOrder() throws {
        defer { unlink(path) }
        let loop = try IOThread(name: "log-test")
        loop.adoptCurrentThread()
        let driver = VirtqueueDriver(size: 16)
        let log = try InflightLog.create(path: path, identity: identity)
        let first = HeldBackend(size: 1 << 20)
        var old: VirtqueueServer? = try server(driver, first, log.queue(0), loop)
        let requests = (0..<5).map { driver.blockRequest(type: 1, sector: UInt64($0) * 8, dataLength: 512, deviceWritesData: false) }
        for r in requests { driver.offer(r.head) }
        old?.processAvailable()
        let order = first.queues[0].submitted
        #expect(order.count == 5)
        first.queues[0].release([order[1], order[3]])
        #expect(driver.takeUsed().map { UInt16($0.id) }.sorted() == [order[1], order[3]].sorted())
        // The server dies here: nothing else completes, nothing is cleaned up.
        old = nil

        let reopened = try #require(InflightLog.open(path: path))
        #expect(reopened.identity == identity)
        let second = HeldBackend(size: 1 << 20)
        let new = try server(driver, second, reopened.queue(0), loop)
        #expect(new.resumeFromLog() == 3)
        #expect(second.queues[0].submitted == [order[0], order[2], order[4]])
        #expect(new.queue.lastAvailIndex == 5 && new.queue.usedIndex == 2)
        // And it carries on with new requests.
        let next = driver.blockRequest(type: 1, sector: 100, dataLength: 512, deviceWritesData: false)
        driver.offer(next.head)
        new.processAvailable()
        #expect(second.queues[0].submitted.last == next.head)
        second.queues[0].release(second.queues[0].held)
        #expect(driver.takeUsed().count == 4)
    }

    @Test func aCrashBetweenPublishingAndLoggingIsSettledFromTheRing() throws {
        defer { unlink(path) }
        let log = try InflightLog.create(path: path, identity: identity)
        let q = log.queue(0)
        q.taken(3); q.taken(9); q.taken(4)
        // The server published a used element for head 9 (ring used index 1), then died before
        // clearing its flag and logging the index.
        var ring: [UInt16: UInt16] = [0: 9]
        let (lastAvail, heads) = q.recover(ringUsedIndex: 1, usedID: { ring[$0] ?? 0xffff })
        #expect(heads == [3, 4])
        #expect(lastAvail == 3)
        #expect(!q.isInFlight(9) && q.loggedUsedIndex == 1)
        ring[1] = 4
        #expect(q.recover(ringUsedIndex: 2, usedID: { ring[$0] ?? 0xffff }).heads == [3])
    }

    @Test func aForeignOrDamagedFileIsNotALog() throws {
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x41, count: 4096))
        #expect(InflightLog.open(path: path) == nil)
        #expect(InflightLog.open(path: path + ".missing") == nil)
    }
}
