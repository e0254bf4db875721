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

/// The virtqueue server driven by an in-memory driver against a real image file and a real
/// io_uring (TestSupport's QueueHarness): well-formed requests, and malformed chains that must be
/// answered or returned without stopping the queue.
@Suite struct VirtqueueServerTests {
    @Test func writeThenReadBack() throws {
        let h = try QueueHarness()
        let w = h.driver.blockRequest(type: 1, sector: 8, dataLength: 4096, deviceWritesData: false, fill: 0xab)
        h.driver.offer(w.head)
        let used = h.run(expecting: 1)
        #expect(used.count == 1 && used[0].id == UInt32(w.head) && used[0].len == 1)
        #expect(h.driver.status(of: w) == 0)
        let img = h.image()
        #expect(img[4096..<8192].allSatisfy { $0 == 0xab })
        #expect(img[0..<4096].allSatisfy { $0 == 0 })

        let r = h.driver.blockRequest(type: 0, sector: 8, dataLength: 4096, deviceWritesData: true)
        h.driver.offer(r.head)
        let used2 = h.run(expecting: 1)
        #expect(used2.count == 1 && used2[0].len == 4097)
        #expect(h.driver.status(of: r) == 0)
        let back = UnsafeRawBufferPointer(start: h.driver.pointer(r.data), count: 4096)
        #expect(back.allSatisfy { $0 == 0xab })
        #expect(h.server.inFlight == 0)
    }

    /// On tmpfs writes and small reads are done inline, large reads still through io_uring.
    @Test func memoryBackedImage() throws {
        let h = try QueueHarness(imageBytes: 4 << 20, directory: "/dev/shm")
        #expect(h.backend.memoryBacked)
        let small = h.driver.blockRequest(type: 1, sector: 0, dataLength: 4096, deviceWritesData: false, fill: 0x11)
        let large = h.driver.blockRequest(type: 1, sector: 1024, dataLength: 1 << 20, deviceWritesData: false, fill: 0x22)
        let largeRead = h.driver.blockRequest(type: 0, sector: 1024, dataLength: 1 << 20, deviceWritesData: true)
        h.driver.offer(small.head)
        h.driver.offer(large.head)
        h.driver.offer(largeRead.head)
        h.server.processAvailable()
        // inline: both writes done before any completion; the large read is in io_uring
        #expect(h.driver.takeUsed().map(\.id) == [UInt32(small.head), UInt32(large.head)])
        #expect(h.server.inFlight == 1)
        h.run(expecting: 1)
        #expect(h.driver.status(of: small) == 0 && h.driver.status(of: large) == 0 && h.driver.status(of: largeRead) == 0)
        #expect(UnsafeRawBufferPointer(start: h.driver.pointer(largeRead.data), count: 1 << 20).allSatisfy { $0 == 0x22 })
        let back = h.driver.blockRequest(type: 0, sector: 0, dataLength: 4096, deviceWritesData: true)
        h.driver.offer(back.head)
        h.run(expecting: 1)
        #expect(UnsafeRawBufferPointer(start: h.driver.pointer(back.data), count: 4096).allSatisfy { $0 == 0x11 })
        let img = h.image()
        #expect(img[(1 << 19)..<(1 << 19) + (1 << 20)].allSatisfy { $0 == 0x22 })
    }

    /// Inline transfers of many segments (one preadv/pwritev) land where they belong.
    @Test func memoryBackedImageManySegments() throws {
        let h = try QueueHarness(size: 128, imageBytes: 4 << 20, directory: "/dev/shm")  // 68 descriptors in use
        let write = h.driver.blockRequest(type: 1, sector: 8, dataLength: 1 << 20, deviceWritesData: false, segments: 48)
        let bytes = h.driver.pointer(write.data).assumingMemoryBound(to: UInt8.self)
        for i in 0..<(1 << 20) { bytes[i] = UInt8(truncatingIfNeeded: i / 4096 &+ i) }
        let read = h.driver.blockRequest(type: 0, sector: 8 + 64, dataLength: 64 << 10, deviceWritesData: true, segments: 16)
        h.driver.offer(write.head)
        h.driver.offer(read.head)
        h.server.processAvailable()
        #expect(h.driver.takeUsed().count == 2)  // both inline
        #expect(h.driver.status(of: write) == 0 && h.driver.status(of: read) == 0)
        let img = h.image()
        #expect((0..<(1 << 20)).allSatisfy { img[4096 + $0] == UInt8(truncatingIfNeeded: $0 / 4096 &+ $0) })
        let got = UnsafeRawBufferPointer(start: h.driver.pointer(read.data), count: 64 << 10)
        #expect((0..<(64 << 10)).allSatisfy { got[$0] == UInt8(truncatingIfNeeded: ($0 + (32 << 10)) / 4096 &+ $0 &+ (32 << 10)) })
    }

    @Test func manyRequestsInFlightAtOnce() throws {
        let h = try QueueHarness(size: 128)
        var requests: [VirtqueueDriver.Request] = []
        for i in 0..<40 {
            let r = h.driver.blockRequest(type: 1, sector: UInt64(i * 8), dataLength: 4096, deviceWritesData: false,
                                          fill: UInt8(i + 1))
            h.driver.offer(r.head)
            requests.append(r)
        }
        let used = h.run(expecting: 40)
        #expect(used.count == 40)
        #expect(requests.allSatisfy { h.driver.status(of: $0) == 0 })
        let img = h.image()
        for i in 0..<40 { #expect(img[i * 4096] == UInt8(i + 1) && img[i * 4096 + 4095] == UInt8(i + 1)) }
    }

    @Test func getIDReturnsSerial() throws {
        let h = try QueueHarness(serial: "disk-serial-1")
        let r = h.driver.blockRequest(type: 8, sector: 0, dataLength: 20, deviceWritesData: true, fill: 0x55)
        h.driver.offer(r.head)
        h.run(expecting: 1)
        #expect(h.driver.status(of: r) == 0)
        let id = Array(UnsafeRawBufferPointer(start: h.driver.pointer(r.data), count: 20))
        #expect(Array(id[0..<13]) == Array("disk-serial-1".utf8))
        #expect(id[13] == 0)
    }

    @Test func serialOfTwentyBytesOrMoreIsCutWithoutTerminator() throws {
        let h = try QueueHarness(serial: "0123456789abcdefghijXYZ")
        let r = h.driver.blockRequest(type: 8, sector: 0, dataLength: 20, deviceWritesData: true)
        h.driver.offer(r.head)
        h.run(expecting: 1)
        #expect(Array(UnsafeRawBufferPointer(start: h.driver.pointer(r.data), count: 20)) == Array("0123456789abcdefghij".utf8))
    }

    @Test(arguments: [
        // (type, sector, length, writable, logical block size, expected status)
        (UInt32(0), UInt64(2048), 512, true, UInt32(512), UInt8(1)),  // read past the end (1 MiB = 2048 sectors)
        (0, 2047, 1024, true, 512, 1),                                 // read crossing the end
        (0, 2047, 512, true, 512, 0),                                  // last sector
        (1, 0, 512, false, 512, 1),                                    // write on a read-only export
        (0, 1, 4096, true, 4096, 1),                                   // offset not a multiple of 4096
        (0, 8, 512, true, 4096, 1),                                    // length not a multiple of 4096
        (0, 8, 4096, true, 4096, 0),
        (3, 0, 512, true, 512, 2),                                     // unknown type: UNSUPP
        (4, 0, 0, true, 512, 0),                                       // flush
        (4, 0, 0, false, 512, 0),                                      // flush on read-only is fine
    ])
    func requestChecks(type: UInt32, sector: UInt64, length: Int, writable: Bool, lbs: UInt32, expected: UInt8) throws {
        let h = try QueueHarness(writable: writable, logicalBlockSize: lbs)
        let r = h.driver.blockRequest(type: type, sector: sector, dataLength: length, deviceWritesData: type == 0)
        h.driver.offer(r.head)
        let used = h.run(expecting: 1)
        #expect(used.count == 1)
        #expect(h.driver.status(of: r) == expected)
    }

    @Test func discardPunchesAHoleAndWriteZeroesZeroes() throws {
        let h = try QueueHarness(imageBytes: 4 << 20)
        let w = h.driver.blockRequest(type: 1, sector: 0, dataLength: 1 << 20, deviceWritesData: false, fill: 0x77)
        h.driver.offer(w.head)
        h.run(expecting: 1)
        func rangeRequest(_ type: UInt32, sector: UInt64, count: UInt32, flags: UInt32) -> VirtqueueDriver.Request {
            let r = h.driver.blockRequest(type: type, sector: 0, dataLength: 16, deviceWritesData: false)
            let p = h.driver.pointer(r.data)
            p.storeBytes(of: sector.littleEndian, as: UInt64.self)
            p.storeBytes(of: count.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt32.self)
            return r
        }
        let d = rangeRequest(11, sector: 0, count: 512, flags: 0)          // first 256 KiB
        let z = rangeRequest(13, sector: 512, count: 512, flags: 0)        // next 256 KiB
        let zu = rangeRequest(13, sector: 1024, count: 512, flags: 1)      // next, with UNMAP
        let bad = rangeRequest(11, sector: 0, count: 8, flags: 1)          // discard with UNMAP: UNSUPP
        let tooMany = rangeRequest(13, sector: 0, count: 32769, flags: 0)  // above the limit: IOERR
        for r in [d, z, zu, bad, tooMany] { h.driver.offer(r.head) }
        h.run(expecting: 5)
        #expect([d, z, zu].allSatisfy { h.driver.status(of: $0) == 0 })
        #expect(h.driver.status(of: bad) == 2)
        #expect(h.driver.status(of: tooMany) == 1)
        let img = h.image()
        #expect(img[0..<(768 << 10)].allSatisfy { $0 == 0 })
        #expect(img[(768 << 10)..<(1 << 20)].allSatisfy { $0 == 0x77 })
        // The discarded range is a hole in the file.
        let fd = open(h.imagePath, O_RDONLY)
        defer { close(fd) }
        #expect(lseek(fd, 0, 4 /* SEEK_HOLE */) == 0)
    }

    // MARK: malformed chains: answered or returned, and the queue keeps serving

    /// Offers `head`, then a valid read; the valid one must complete.
    private func expectQueueSurvives(_ h: QueueHarness, bad head: UInt16, returned: Bool) {
        h.driver.offer(head)
        let good = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.offer(good.head)
        let used = h.run(expecting: returned ? 2 : 1)
        #expect(used.contains { $0.id == UInt32(good.head) })
        #expect(h.driver.status(of: good) == 0)
        if returned { #expect(used.contains { $0.id == UInt32(head) && $0.len == 0 }) }
        #expect(h.server.malformedChains == 1)
    }

    @Test func loopingChain() throws {
        let h = try QueueHarness()
        let buf = h.driver.allocate(16)
        h.driver.setDescriptor(60, VringDescriptor(addr: buf, len: 16, flags: VringDescriptorFlag.next, next: 61))
        h.driver.setDescriptor(61, VringDescriptor(addr: buf, len: 16, flags: VringDescriptorFlag.next, next: 60))
        expectQueueSurvives(h, bad: 60, returned: true)
    }

    @Test func addressOutsideTheMappedSpace() throws {
        let h = try QueueHarness()
        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.setDescriptor(r.head + 1, VringDescriptor(addr: 0xdead_0000_0000, len: 512,
                                                            flags: VringDescriptorFlag.write | VringDescriptorFlag.next,
                                                            next: r.head + 2))
        expectQueueSurvives(h, bad: r.head, returned: true)
    }

    @Test func rangeRunningPastTheEndOfTheSpace() throws {
        let h = try QueueHarness()
        let end = VirtqueueDriver.iovaBase + UInt64(h.driver.memorySize)
        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.setDescriptor(r.head + 1, VringDescriptor(addr: end - 256, len: 512,
                                                            flags: VringDescriptorFlag.write | VringDescriptorFlag.next,
                                                            next: r.head + 2))
        expectQueueSurvives(h, bad: r.head, returned: true)
    }

    @Test func hugeLength() throws {
        let h = try QueueHarness()
        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.setDescriptor(r.head + 1, VringDescriptor(addr: r.data, len: .max,
                                                            flags: VringDescriptorFlag.write | VringDescriptorFlag.next,
                                                            next: r.head + 2))
        expectQueueSurvives(h, bad: r.head, returned: true)
    }

    @Test func zeroLengthDescriptor() throws {
        let h = try QueueHarness()
        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.setDescriptor(r.head + 1, VringDescriptor(addr: r.data, len: 0,
                                                            flags: VringDescriptorFlag.write | VringDescriptorFlag.next,
                                                            next: r.head + 2))
        expectQueueSurvives(h, bad: r.head, returned: true)
    }

    @Test func nextOutsideTheTable() throws {
        let h = try QueueHarness()
        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.setDescriptor(r.head, VringDescriptor(addr: r.header, len: 16, flags: VringDescriptorFlag.next, next: 64))
        expectQueueSurvives(h, bad: r.head, returned: true)
    }

    @Test func headOutsideTheTableIsDropped() throws {
        let h = try QueueHarness()
        expectQueueSurvives(h, bad: 200, returned: false)
    }

    @Test func readableAfterWritable() throws {
        let h = try QueueHarness()
        let a = h.driver.allocate(512), b = h.driver.allocate(16)
        let head = h.driver.chain([(a, 512, true), (b, 16, false)])
        expectQueueSurvives(h, bad: head, returned: true)
    }

    @Test func shortHeaderGetsIOError() throws {
        let h = try QueueHarness()
        let hdr = h.driver.allocate(8), st = h.driver.allocate(1)
        let head = h.driver.chain([(hdr, 8, false), (st, 1, true)])
        h.driver.offer(head)
        let used = h.run(expecting: 1)
        #expect(used.count == 1 && used[0].len == 1)
        #expect(h.driver.pointer(st).load(as: UInt8.self) == 1)
        #expect(h.server.malformedChains == 1)
    }

    @Test func requestWithoutStatusByteIsReturned() throws {
        let h = try QueueHarness()
        let hdr = h.driver.allocate(16)
        let head = h.driver.chain([(hdr, 16, false)])
        expectQueueSurvives(h, bad: head, returned: true)
    }

    @Test func indirectTable() throws {
        let h = try QueueHarness()
        // A normal request whose three descriptors live in an indirect table.
        let r = h.driver.blockRequest(type: 1, sector: 4, dataLength: 1024, deviceWritesData: false, fill: 0x3c)
        let table = h.driver.allocate(48)
        for i in 0..<3 {
            var d = VringDescriptor(table: h.driver.pointer(h.driver.descTable), index: Int(r.head) + i)
            d.next = UInt16(i + 1)
            d.store(to: h.driver.pointer(table), index: i)
        }
        h.driver.setDescriptor(50, VringDescriptor(addr: table, len: 48, flags: VringDescriptorFlag.indirect, next: 0))
        h.driver.offer(50)
        h.run(expecting: 1)
        #expect(h.driver.status(of: r) == 0)
        #expect(h.image()[2048..<3072].allSatisfy { $0 == 0x3c })
    }

    @Test func indirectTableWithBadLength() throws {
        let h = try QueueHarness()
        let table = h.driver.allocate(48)
        h.driver.setDescriptor(50, VringDescriptor(addr: table, len: 40, flags: VringDescriptorFlag.indirect, next: 0))
        expectQueueSurvives(h, bad: 50, returned: true)
    }

    @Test func indirectInsideIndirect() throws {
        let h = try QueueHarness()
        let table = h.driver.allocate(16)
        VringDescriptor(addr: table, len: 16, flags: VringDescriptorFlag.indirect, next: 0).store(to: h.driver.pointer(table), index: 0)
        h.driver.setDescriptor(50, VringDescriptor(addr: table, len: 16, flags: VringDescriptorFlag.indirect, next: 0))
        expectQueueSurvives(h, bad: 50, returned: true)
    }

    @Test func duplicateHeadWhileInFlightIsIgnored() throws {
        let h = try QueueHarness()
        let r = h.driver.blockRequest(type: 1, sector: 0, dataLength: 4096, deviceWritesData: false, fill: 1)
        h.driver.offer(r.head)
        h.driver.offer(r.head)
        let used = h.run(expecting: 1)
        #expect(used.count == 1)
        #expect(h.server.inFlight == 0)
    }

    // MARK: notifications (event index)

    @Test func interruptOnlyWhenTheDriverAsks() throws {
        let h = try QueueHarness()
        // used_event = 2: the driver wants an interrupt once the third element is used.
        h.driver.setUsedEvent(2)
        var last = 0
        var raised: [Bool] = []
        for _ in 0..<4 {
            let r = h.driver.blockRequest(type: 4, sector: 0, dataLength: 0, deviceWritesData: false)
            h.driver.offer(r.head)
            h.run(expecting: 1)
            raised.append(h.interruptCount > last)
            last = h.interruptCount
        }
        #expect(raised == [false, false, true, false])
        // We asked to be kicked for the next request.
        #expect(h.driver.availEvent == 4)
    }

    /// An avail index moved further than the ring holds used to make the server take stale heads.
    @Test func availIndexJumpingPastTheRingIsRefused() throws {
        let h = try QueueHarness(size: 8)
        let r = h.driver.blockRequest(type: 0, sector: 0, dataLength: 512, deviceWritesData: true)
        h.driver.offer(r.head)
        #expect(h.run(expecting: 1).count == 1)
        // The driver claims 9 new entries in a ring of 8.
        let idx = h.driver.pointer(h.driver.availRing + 2)
        idx.storeBytes(of: (UInt16(1) &+ 9).littleEndian, as: UInt16.self)
        let used = h.run(expecting: 1, timeoutMs: 50)
        #expect(used.isEmpty)
        #expect(h.server.queue.broken)
    }
}

extension VirtqueueServerTests {
    @Test func headerSplitOverTwoDescriptorsAndDataSharingTheSecond() throws {
        let h = try QueueHarness()
        // 8 header bytes, then 8 header bytes followed by 512 data bytes in one descriptor.
        let a = h.driver.allocate(8), b = h.driver.allocate(8 + 512), st = h.driver.allocate(1)
        h.driver.pointer(a).storeBytes(of: UInt32(1).littleEndian, as: UInt32.self)   // OUT
        h.driver.pointer(b).storeBytes(of: UInt64(3).littleEndian, as: UInt64.self)   // sector 3
        (h.driver.pointer(b) + 8).initializeMemory(as: UInt8.self, repeating: 0x5a, count: 512)
        let head = h.driver.chain([(a, 8, false), (b, 520, false), (st, 1, true)])
        h.driver.offer(head)
        h.run(expecting: 1)
        #expect(h.driver.pointer(st).load(as: UInt8.self) == 0)
        let img = h.image()
        #expect(img[1536..<2048].allSatisfy { $0 == 0x5a })
        #expect(img[1535] == 0 && img[2048] == 0)
    }
}

@Suite struct VirtioBlockConfigTests {
    private func config(_ plan: ExportPlan, _ size: UInt64) -> VirtioBlockConfig {
        VDUSEBlockExport.config(plan: plan, size: size, capabilities: BackendCapabilities(discard: true, writeZeroes: true, resizable: true))
    }

    /// Storage that cannot punch holes (vfat, NFSv3): no discard offered, so the guest never
    /// turns one into an I/O error.
    @Test func discardOnlyWhenTheBackendCanDoIt() {
        let none = VDUSEBlockExport.config(plan: plan(), size: 1 << 30,
                                           capabilities: BackendCapabilities(discard: false, writeZeroes: true, resizable: true))
        #expect(none.features & VirtioBlockConfig.Feature.discard == 0)
        #expect(none.features & VirtioBlockConfig.Feature.writeZeroes != 0)
    }

    private func plan(queues: UInt16 = 1, writable: Bool = true, lbs: UInt32 = 512) -> ExportPlan {
        ExportPlan(id: "e", deviceName: "d", backend: BackendSpec(kind: .null(size: 0)), writable: writable,
                   numQueues: queues, logicalBlockSize: lbs)
    }

    /// QEMU's words minus VIRTIO_F_NOTIFY_ON_EMPTY (bit 24), a legacy bit Linux drops for VERSION_1.
    @Test(arguments: [
        (UInt16(1), true, UInt64(0x3_3000_6644)),
        (1, false, 0x3_3000_6664),
        (4, true, 0x3_3000_7644),
        (4, false, 0x3_3000_7664),
    ])
    func featureWords(queues: UInt16, writable: Bool, expected: UInt64) {
        let c = config(plan(queues: queues, writable: writable), 1 << 30)
        #expect(c.features == expected)
        #expect(c.features & VirtioBlockConfig.Feature.configWCE == 0)
    }

    @Test func configSpaceLayout() {
        let b = config(plan(queues: 3, lbs: 4096), (1 << 30) + 300).bytes
        func u32(_ o: Int) -> UInt32 { b[o..<o + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ o: Int) -> UInt64 { b[o..<o + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        #expect(b.count == 96)
        #expect(u64(0) == (1 << 30) / 512)       // capacity: whole sectors only
        #expect(u32(12) == 254)                  // seg_max = queue-size - 2
        #expect(u32(20) == 4096)                 // blk_size
        #expect(b[34] == 3 && b[35] == 0)        // num_queues
        #expect(u32(36) == 32768 && u32(40) == 1 && u32(44) == 8)
        #expect(u32(48) == 32768 && u32(52) == 1)
    }
}
