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

/// Random descriptor tables, indirect tables and request headers thrown at the real queue server
/// (null backend, so every accepted request completes at once): it must never crash, and must
/// answer or return every head the driver offered exactly once.
@Suite struct RandomChainTests {
    static let cases = 20_000

    @Test func everyOfferedHeadIsAnsweredExactlyOnce() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["VDUSE_FUZZ_SEED"] ?? "") ?? 0x5EED_2026
        var rng = SplitMix64(seed: seed)
        let size: UInt16 = 16
        let driver = VirtqueueDriver(size: size, memorySize: 1 << 20)
        let dataStart = driver.allocate(0)
        let dataLength: UInt64 = 32 * 1024
        _ = driver.allocate(Int(dataLength))
        let loop = try IOThread(name: "fuzz")
        loop.adoptCurrentThread()
        let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: true, memory: driver.space)
        let geometry = BlockExportGeometry(capacitySectors: 2048, logicalBlockSize: 512, writable: true, serial: Array("fuzz".utf8))
        let server = try VirtqueueServer(queue: queue, backend: NullBackend(size: 2048 * 512), geometry: geometry,
                                         memory: driver.space, loop: loop, logger: Logger(label: "fuzz"), interrupt: {})

        func randomAddress() -> UInt64 {
            switch rng.next() % 10 {
            case 0: return UInt64.random(in: 0...UInt64.max, using: &rng)           // anywhere
            case 1: return dataStart + dataLength - UInt64.random(in: 0...64, using: &rng)  // straddles the end
            default: return dataStart + UInt64.random(in: 0..<4096, using: &rng)
            }
        }
        func randomLength() -> UInt32 {
            switch rng.next() % 8 {
            case 0: return 0
            case 1: return UInt32.random(in: 0...UInt32.max, using: &rng)
            case 2: return 1
            case 3: return 16
            default: return UInt32.random(in: 1...4096, using: &rng)
            }
        }
        func randomDescriptor(tableSize: UInt16) -> VringDescriptor {
            VringDescriptor(addr: randomAddress(), len: randomLength(),
                            flags: UInt16(rng.next() % 8), next: UInt16(rng.next() % UInt64(tableSize + 2)))
        }

        for c in 0..<Self.cases {
            // Fill the data area's start with random headers and indirect tables.
            let scratch = driver.pointer(dataStart)
            for i in stride(from: 0, to: 4096, by: 8) {
                var word = rng.next()
                if rng.next() % 4 == 0 {  // a plausible header: type in the low word, sector after
                    let types: [UInt64] = [0, 1, 4, 8, 11, 13, 0x8000_0001, 99]
                    word = types[Int(rng.next() % UInt64(types.count))]
                }
                scratch.storeBytes(of: word, toByteOffset: i, as: UInt64.self)
            }
            for i in 0..<size { driver.setDescriptor(i, randomDescriptor(tableSize: size)) }
            var offered: [UInt16] = []
            let count = Int(rng.next() % 4) + 1
            while offered.count < count {
                let head = rng.next() % 20 == 0 ? UInt16(size) + UInt16(rng.next() % 100) : UInt16(rng.next() % UInt64(size))
                if !offered.contains(head) { offered.append(head) }
            }
            for head in offered { driver.offer(head) }
            server.processAvailable()
            let used = driver.takeUsed().map { UInt16($0.id) }
            let expected = offered.filter { $0 < size }
            guard used.sorted() == expected.sorted() else {
                Issue.record("case \(c) (seed \(seed)): offered \(offered), used \(used)")
                return
            }
            #expect(server.inFlight == 0)
        }
    }
}
