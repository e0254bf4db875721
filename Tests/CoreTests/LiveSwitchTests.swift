import Foundation
import Glibc
import Logging
import Testing
import TestSupport
import VirtioDriverSim
@testable import Core
@testable import Virtio
@testable import BlockBackends
@testable import Kernel
@testable import QAPI
@testable import Wire

/// The backend switch under a queue (snapshot, commit, mirror) and the pieces of a copy job,
/// without a kernel: an in-memory driver, held and file backends.
@Suite struct LiveSwitchTests {
    /// A queue server over `backend`, driven by an in-memory driver on this thread.
    final class Harness {
        let driver = VirtqueueDriver(size: 16)
        let loop: IOThread
        let server: VirtqueueServer

        init(backend: any BlockBackend, bytes: UInt64 = 1 << 20) throws {
            loop = try IOThread(name: "switch-test")
            loop.adoptCurrentThread()
            let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: true, memory: driver.space)
            let geometry = BlockExportGeometry(capacitySectors: bytes / 512, logicalBlockSize: 512, writable: true, serial: [])
            server = try VirtqueueServer(queue: queue, backend: backend, geometry: geometry, memory: driver.space, loop: loop,
                                         logger: Logger(label: "test"), interrupt: {})
        }
    }

    /// Writes in flight are answered before the switch, the old backend is flushed and closed,
    /// and the next request goes to the new backend.
    @Test func switchAnswersInFlightFlushesAndMovesOn() throws {
        let old = HeldBackend(size: 1 << 20), new = HeldBackend(size: 1 << 20)
        let h = try Harness(backend: old)
        let w1 = h.driver.blockRequest(type: 1, sector: 0, dataLength: 4096, deviceWritesData: false, fill: 1)
        let w2 = h.driver.blockRequest(type: 1, sector: 8, dataLength: 4096, deviceWritesData: false, fill: 2)
        h.driver.offer(w1.head)
        h.driver.offer(w2.head)
        h.server.processAvailable()
        #expect(old.queues[0].inFlight == 2 && h.driver.takeUsed().isEmpty)

        #expect(h.server.quiesceAndFlush() == .ok)
        #expect(Set(h.driver.takeUsed().map(\.id)) == [UInt32(w1.head), UInt32(w2.head)])
        #expect(old.queues[0].submitted.count == 3)  // the two writes, then the flush
        let q = try h.server.makeQueue(on: new)
        #expect(!old.queues[0].closed)
        h.server.install(q)
        #expect(old.queues[0].closed && h.server.inFlight == 0)

        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 4096, deviceWritesData: true)
        h.driver.offer(r.head)
        h.server.processAvailable()
        #expect(new.queues[0].submitted == [r.head] && old.queues[0].submitted.count == 3)
    }

    /// A write that completes after its chunk was taken for copying marks it again.
    @Test func trackingMarksAtSubmitAndAtCompletion() throws {
        let inner = HeldBackend(size: 1 << 20)
        let bitmap = DirtyBitmap(size: 1 << 20)
        let tracking = DirtyTrackingBackend(inner: inner, bitmap: bitmap)
        let h = try Harness(backend: tracking)
        let w = h.driver.blockRequest(type: 1, sector: 256, dataLength: 4096, deviceWritesData: false, fill: 7)  // 128 KiB: chunk 2
        h.driver.offer(w.head)
        h.server.processAvailable()
        #expect(bitmap.dirtyCount == 1)
        #expect(bitmap.take(from: 0) == 2 && bitmap.dirtyCount == 0)  // the job takes it while the write is in flight
        inner.queues[0].release([w.head])
        #expect(bitmap.dirtyCount == 1 && bitmap.take(from: 0) == 2)  // so it is copied again
        let r = h.driver.blockRequest(type: 0, sector: 256, dataLength: 4096, deviceWritesData: true)
        h.driver.offer(r.head)
        h.server.processAvailable()
        #expect(bitmap.dirtyCount == 0)  // reads mark nothing
        #expect(throws: SystemError.self) { try tracking.resize(to: 2 << 20) }
    }

    @Test func bitmapTakesInOrderAndWraps() {
        let b = DirtyBitmap(size: 200 * 65536 + 512)
        #expect(b.chunks == 201 && b.range(of: 200) == (200 * 65536, 512))
        b.mark(offset: 65536 * 3 - 1, length: 2)  // straddles chunks 2 and 3
        b.mark(chunk: 150)
        b.mark(chunk: 0)
        b.mark(chunk: 0)
        #expect(b.dirtyCount == 4)
        #expect(b.take(from: 100) == 150)
        #expect(b.take(from: 151) == 0)  // wrapped
        #expect(b.take(from: 3) == 3)
        #expect(b.take(from: 3) == 2)  // only one below the start in its own word is left
        #expect(b.take(from: 0) == nil && b.dirtyCount == 0)
        b.markAll()
        #expect(b.dirtyCount == 201)
        // Big disks get bigger chunks: at most 2^20 of them.
        #expect(DirtyBitmap(size: 1 << 40).chunkSize == 1 << 20)
    }

    /// The copier reads the source and writes the target through queues of their own; an
    /// all-zero chunk becomes write-zeroes.
    @Test func copierCopiesDataAndZeroes() throws {
        let dir = NSTemporaryDirectory()
        let src = dir + "/copy-src-\(UUID().uuidString)", dst = dir + "/copy-dst-\(UUID().uuidString)"
        defer { unlink(src); unlink(dst) }
        var data = [UInt8](repeating: 0, count: 256 << 10)
        for i in 0..<(64 << 10) { data[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 1) }
        _ = FileManager.default.createFile(atPath: src, contents: Data(data))
        _ = FileManager.default.createFile(atPath: dst, contents: Data(repeating: 0xff, count: 256 << 10))
        let loop = try IOThread(name: "copy-test")
        loop.adoptCurrentThread()
        let source = try FileBackend(path: src, writable: false, direct: false, writethrough: false)
        let target = try FileBackend(path: dst, writable: true, direct: false, writethrough: false)
        let copier = try ChunkCopier(from: source, to: target, chunkSize: 64 << 10, loop: loop)
        for chunk in 0..<4 { #expect(copier.copy(offset: UInt64(chunk) * 65536, length: 65536, grain: 65536)) }
        #expect(copier.flushTarget())
        #expect(Array(FileManager.default.contents(atPath: dst)!) == data)
        // One read of four chunks, written as data, zeroes and data again at the grain.
        for i in (192 << 10)..<(200 << 10) { data[i] = 9 }
        _ = FileManager.default.createFile(atPath: src, contents: Data(data))
        _ = FileManager.default.createFile(atPath: dst, contents: Data(repeating: 0xff, count: 256 << 10))
        let runs = try ChunkCopier(from: try FileBackend(path: src, writable: false, direct: false, writethrough: false),
                                   to: try FileBackend(path: dst, writable: true, direct: false, writethrough: false),
                                   chunkSize: 256 << 10, loop: loop)
        #expect(runs.copy(offset: 0, length: 256 << 10, grain: 64 << 10) && runs.flushTarget())
        #expect(Array(FileManager.default.contents(atPath: dst)!) == data)
    }

    @Test func bitmapTakesRuns() {
        let b = DirtyBitmap(size: 200 * 65536)
        func take(from start: Int, limit: Int) -> [Int] { b.takeRun(from: start, limit: limit).map { [$0.first, $0.count] } ?? [] }
        for i in [3, 4, 5, 6, 7, 63, 64, 65, 199] { b.mark(chunk: i) }
        #expect(take(from: 0, limit: 4) == [3, 4])
        #expect(take(from: 0, limit: 4) == [7, 1])
        #expect(take(from: 8, limit: 16) == [63, 3])  // across a word
        #expect(take(from: 100, limit: 16) == [199, 1])  // not past the last chunk
        #expect(take(from: 0, limit: 16) == [] && b.dirtyCount == 0)
        let r = b.range(of: (first: 198, count: 2))
        #expect(r.offset == 198 * 65536 && r.length == 2 * 65536)
        b.mark(run: (first: 10, count: 3))
        #expect(b.dirtyCount == 3 && take(from: 0, limit: 1) == [10, 1])
    }
}
