import BlockBackends
import Core
import Glibc
import Kernel
import Logging
import Virtio
import VirtioDriverSim

/// What one benchmark row sends: the backend, the request type and its data length.
struct Workload: CustomStringConvertible {
    enum Backend: String { case null, file }
    enum Operation: String { case read, write }
    var backend: Backend
    var operation: Operation
    var size: Int

    var description: String { "\(backend) \(operation) \(size / 1024) KiB" }
}

/// Requests offered per kick, as a guest at queue depth 64 would.
let batch = 64

struct BenchError: Error, CustomStringConvertible {
    var description: String
}

func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// A raw image on tmpfs holding data where the requests go: reads of holes would take tmpfs's
/// zero-page shortcut, not the copy a real image costs.
private func tmpfsImage(path: String, bytes: Int) throws -> FileBackend {
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw BenchError(description: "open(\(path)): errno \(errno)") }
    defer { close(fd) }
    let data = [UInt8](repeating: 0xa5, count: bytes)
    guard pwrite(fd, data, bytes, 0) == bytes else { throw BenchError(description: "filling \(path) failed") }
    let backend = try FileBackend(path: path, writable: true, direct: false, writethrough: false)
    // Not memory-backed would mean io_uring and a real device: a different benchmark.
    guard backend.memoryBacked else { throw BenchError(description: "\(path) is not on tmpfs") }
    return backend
}

/// One round: a fresh driver, queue server and backend, then `batches` kicks of `batch`
/// requests each. Returns the time per request, counting only requests answered with OK (the
/// loop is pumped until every one is; anything else is an error, not a figure).
func round(_ workload: Workload, batches: Int, withLog: Bool) throws -> Double {
    let loop = try IOThread(name: "bench")
    loop.adoptCurrentThread()
    let span = batch * workload.size
    let driver = VirtqueueDriver(size: 256, memorySize: span + (1 << 20))
    let prefix = "/dev/shm/request-path-bench-\(getpid())"
    defer { unlink(prefix + ".log"); unlink(prefix + ".img") }
    let log = withLog ? try InflightLog.create(path: prefix + ".log", identity: .init(queues: 1, queueSize: 256,
                                               logicalBlockSize: 512, features: 0, serialHash: 0)) : nil
    let backend: any BlockBackend = switch workload.backend {
    case .null: NullBackend(size: UInt64(span))
    case .file: try tmpfsImage(path: prefix + ".img", bytes: span)
    }
    let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: true, memory: driver.space)
    let geometry = BlockExportGeometry(capacitySectors: UInt64(span / 512), logicalBlockSize: 512, writable: true,
                                       serial: [])
    let server = try VirtqueueServer(queue: queue, backend: backend, geometry: geometry, memory: driver.space,
                                     loop: loop, logger: Logger(label: "bench"), log: log?.queue(0), interrupt: {})
    defer { server.close() }
    let isRead = workload.operation == .read
    var status = [UInt64](repeating: 0, count: Int(driver.size))
    let heads = (0..<batch).map { i in
        let r = driver.blockRequest(type: isRead ? 0 : 1, sector: UInt64(i * workload.size / 512),
                                    dataLength: workload.size, deviceWritesData: isRead, fill: 0x5a)
        status[Int(r.head)] = r.status
        return r.head
    }
    let start = now()
    var answered = 0
    for _ in 0..<batches {
        for h in heads {
            // Reset, so a status byte the server did not write this time is caught below.
            driver.pointer(status[Int(h)]).storeBytes(of: 0xff, as: UInt8.self)
            driver.offer(h)
        }
        server.processAvailable()
        var thisBatch = 0
        var deadline: UInt64 = 0
        while true {
            try driver.takeUsed { id, _ in
                let s = driver.pointer(status[Int(id)]).load(as: UInt8.self)
                guard s == 0 else { throw BenchError(description: "\(workload): request \(id) answered \(s)") }
                thisBatch += 1
            }
            if thisBatch == batch { break }
            // Completions from io_uring: run the loop until all are in, but not forever.
            if deadline == 0 { deadline = now() + 10_000_000_000 }
            guard now() < deadline else {
                throw BenchError(description: "\(workload): \(batch - thisBatch) request(s) unanswered after 10 s")
            }
            loop.poll(timeoutMs: 100)
        }
        answered += thisBatch
    }
    return Double(now() - start) / Double(answered)
}
