// Host-side benchmark of our own request path: an in-memory virtio driver offers 4 KiB write
// requests in batches to the real queue server (chain walk, parse, slots, backend interface,
// used ring, interrupt decision) over the null backend, with and without the reconnect log.
// Prints nanoseconds per request (median of alternating rounds) and the log's cost.
//
//   swift run -c release request-path-bench [ROUNDS] [REQUESTS_PER_ROUND]
import BlockBackends
import Core
import Foundation
import Glibc
import Kernel
import Logging
import Virtio
import VirtioDriverSim

let rounds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 7 : 7
let perRound = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 400_000 : 400_000
let batch = 64

func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// One round: `perRound` requests in batches of `batch`; returns ns per request.
func round(withLog: Bool) throws -> Double {
    let loop = try IOThread(name: "bench")
    loop.adoptCurrentThread()
    let driver = VirtqueueDriver(size: 256, memorySize: 4 << 20)
    let path = "/dev/shm/request-path-bench-\(getpid())"
    defer { unlink(path) }
    let log = withLog ? try InflightLog.create(path: path, identity: .init(queues: 1, queueSize: 256, logicalBlockSize: 512,
                                                                          features: 0, serialHash: 0)) : nil
    let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: true, memory: driver.space)
    let geometry = BlockExportGeometry(capacitySectors: 1 << 21, logicalBlockSize: 512, writable: true, serial: [])
    let server = try VirtqueueServer(queue: queue, backend: NullBackend(size: 1 << 30), geometry: geometry,
                                     memory: driver.space, loop: loop, logger: Logger(label: "bench"),
                                     log: log?.queue(0), interrupt: {})
    let heads = (0..<batch).map { i in
        driver.blockRequest(type: 1, sector: UInt64(i) * 8, dataLength: 4096, deviceWritesData: false).head
    }
    let start = now()
    var done = 0
    while done < perRound {
        for h in heads { driver.offer(h) }
        server.processAvailable()
        done += driver.takeUsed().count
    }
    return Double(now() - start) / Double(done)
}

var plain: [Double] = [], logged: [Double] = []
for r in 0..<rounds {
    // Alternate the order so drift hits both alike.
    if r % 2 == 0 {
        plain.append(try round(withLog: false)); logged.append(try round(withLog: true))
    } else {
        logged.append(try round(withLog: true)); plain.append(try round(withLog: false))
    }
}
func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
let p = median(plain), l = median(logged)
print(String(format: "request path, null backend, batches of %d, %d rounds x %d requests (medians)", batch, rounds, perRound))
print(String(format: "  without reconnect log: %7.1f ns/request", p))
print(String(format: "  with reconnect log:    %7.1f ns/request", l))
print(String(format: "  log cost:              %+7.1f ns/request (%+.1f %%)", l - p, (l - p) / p * 100))
