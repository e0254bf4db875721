import Foundation
import Glibc
import Logging
import Testing
import VirtioDriverSim
@testable import BlockBackends
@testable import Core
@testable import Kernel
import QAPI
@testable import Virtio

/// The NBD backend against a real nbdkit (file plugin) on a unix socket, driven by a real
/// IOThread's loop on the test's thread. Skipped where nbdkit is not installed.
@Suite(.serialized, .timeLimit(.minutes(1)), .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/nbdkit")))
struct NBDBackendTests {
    final class Server {
        let dir = NSTemporaryDirectory() + "nbdtest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var socket: String { dir + "/nbd.sock" }
        var image: String { dir + "/disk.img" }
        var process: Process?
        let size: Int
        /// `--filter=NAME` options and the filters' parameters (nbdkit's error filter).
        var filters: [String] = []
        var filterParameters: [String] = []

        init(size: Int) throws {
            self.size = size
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: image, contents: nil)
            truncate(image, off_t(size))
        }

        func start() throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/nbdkit")
            p.arguments = ["-f", "--unix", socket] + filters
                + (ProcessInfo.processInfo.environment["NBDTEST_MEMORY"] != nil ? ["memory", "size=\(size)"] : ["file", "file=\(image)"]) + filterParameters
            p.standardError = FileHandle.nullDevice
            try p.run()
            process = p
            // Up once it accepts: the socket file exists from bind(), before listen().
            for _ in 0..<400 where !accepts() { usleep(10_000) }
        }

        private func accepts() -> Bool {
            guard let address = UnixSocketAddress(socket) else { return false }
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            return address.withSockaddr { connect(fd, $0, $1) } == 0
        }

        /// SIGKILL: nbdkit waits for its clients on SIGTERM, and the client is this thread.
        func stop() {
            if let p = process { kill(p.processIdentifier, SIGKILL) }
            process?.waitUntilExit()
            process = nil
            unlink(socket)
        }

        deinit {
            stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Stands in for the queue engine: submits, reaps and records answers by tag.
    final class Sink: CompletionSink {
        var completed: [UInt16: BlockStatus] = [:]
        weak var queue: (any BackendQueue)?
        func completionsReady() { collect() }
        func collect() {
            var done: [Completion] = []
            queue?.reap(into: &done)
            for c in done { completed[c.tag] = c.status }
        }
        func submit(_ io: BlockIO, tag: UInt16) {
            if case let .done(status) = queue?.submit(io, tag: tag) { completed[tag] = status }
        }
    }

    func spec(_ server: Server) -> NBDSpec { NBDSpec(server: .unix(path: server.socket)) }

    /// One aligned 4 KiB buffer filled with a byte, and the one-entry iovec naming it.
    final class Block {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        let iov = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 1)

        init(filledWith byte: Int32) {
            memset(buffer, byte, 4096)
            iov[0] = iovec(iov_base: buffer, iov_len: 4096)
        }

        deinit {
            iov.deallocate()
            buffer.deallocate()
        }
    }

    /// SIGSTOP and wait until the process is really stopped (delivery is asynchronous: a loaded
    /// machine let a "stopped" server answer one more request).
    func stopProcess(_ pid: pid_t) {
        kill(pid, SIGSTOP)
        for _ in 0..<500 {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            if let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "T" { return }
            usleep(2000)
        }
    }

    /// Polls until `tag` is answered or `ms` pass.
    func wait(_ loop: IOThread, _ sink: Sink, _ tag: UInt16, ms: Int = 5000) -> BlockStatus? {
        let end = monotonicMs() + UInt64(ms)
        sink.collect()
        while sink.completed[tag] == nil && monotonicMs() < end {
            loop.poll(timeoutMs: 50)
            sink.collect()
        }
        return sink.completed.removeValue(forKey: tag)
    }

    @Test func readsWritesZeroesAndSurvivesARestart() throws {
        let server = try Server(size: 4 << 20)
        try server.start()
        let loop = try IOThread(name: "nbd")
        loop.adoptCurrentThread()
        let backend = try NBDBackend(spec: spec(server), timing: NBDTiming(reconnectDelayMs: 10_000), writable: true, queues: 1, logicalBlockSize: 512)
        #expect(backend.size == 4 << 20)
        let sink = Sink()
        let queue = try backend.makeQueue(index: 0, depth: 8, loop: loop, sink: sink)
        sink.queue = queue
        let a = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 4096)
        let b = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 4096)
        defer { a.deallocate(); b.deallocate() }
        for i in 0..<65536 { a.storeBytes(of: UInt8(truncatingIfNeeded: i * 7 + 3), toByteOffset: i, as: UInt8.self) }
        let iov = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 2)
        defer { iov.deallocate() }
        iov[0] = iovec(iov_base: a, iov_len: 4096)
        iov[1] = iovec(iov_base: a + 4096, iov_len: 61440)
        sink.submit(.write(offset: 8192, buffers: iov, length: 65536), tag: 1)
        sink.submit(.flush, tag: 2)
        queue.commit()
        #expect(wait(loop, sink, 1) == .ok)
        #expect(wait(loop, sink, 2) == .ok)
        let rv = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 1)
        defer { rv.deallocate() }
        rv[0] = iovec(iov_base: b, iov_len: 65536)
        sink.submit(.read(offset: 8192, buffers: rv, length: 65536), tag: 3)
        queue.commit()
        #expect(wait(loop, sink, 3) == .ok)
        #expect(memcmp(a, b, 65536) == 0)
        // The file behind the server holds the bytes.
        let onDisk = FileManager.default.contents(atPath: server.image)!
        #expect(onDisk[8192..<(8192 + 65536)].elementsEqual(UnsafeRawBufferPointer(start: a, count: 65536)))
        sink.submit(.writeZeroes(offset: 8192, length: 4096, unmap: false), tag: 4)
        queue.commit()
        #expect(wait(loop, sink, 4) == .ok)
        #expect(FileManager.default.contents(atPath: server.image)![8192..<12288].allSatisfy { $0 == 0 })

        // Larger than a socket buffer: libnbd sends it in pieces as the socket drains.
        let big = UnsafeMutableRawPointer.allocate(byteCount: 2 << 20, alignment: 4096)
        defer { big.deallocate() }
        for i in 0..<(2 << 20) { big.storeBytes(of: UInt8(truncatingIfNeeded: i / 4096 + 1), toByteOffset: i, as: UInt8.self) }
        let bv = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 1)
        defer { bv.deallocate() }
        bv[0] = iovec(iov_base: big, iov_len: 2 << 20)
        sink.submit(.write(offset: 1 << 20, buffers: bv, length: 2 << 20), tag: 6)
        queue.commit()
        #expect(wait(loop, sink, 6) == .ok)
        #expect(FileManager.default.contents(atPath: server.image)![(1 << 20)..<(3 << 20)]
            .elementsEqual(UnsafeRawBufferPointer(start: big, count: 2 << 20)))

        // The server goes away and comes back: a request sent meanwhile waits and succeeds.
        server.stop()
        sink.submit(.read(offset: 12288, buffers: rv, length: 4096), tag: 5)
        queue.commit()
        for _ in 0..<10 { loop.poll(timeoutMs: 50) }
        #expect(sink.completed[5] == nil)
        try server.start()
        #expect(wait(loop, sink, 5) == .ok)
        #expect(memcmp(a + 4096, b, 4096) == 0)
        queue.quiesce()
        queue.close()
        #expect(loop.watchedCount == 0)
    }

    /// The real queue server over the NBD backend: many requests in flight, then read back.
    @Test func throughTheQueueServer() throws {
        let server = try Server(size: 1 << 20)
        try server.start()
        let loop = try IOThread(name: "nbdq")
        loop.adoptCurrentThread()
        let backend = try NBDBackend(spec: spec(server), timing: NBDTiming(reconnectDelayMs: 5000), writable: true, queues: 1, logicalBlockSize: 512)
        let driver = VirtqueueDriver(size: 256, memorySize: 64 << 20)
        let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: true, memory: driver.space)
        let geometry = BlockExportGeometry(capacitySectors: (1 << 20) / 512, logicalBlockSize: 512, writable: true, serial: [])
        let vq = try VirtqueueServer(queue: queue, backend: backend, geometry: geometry, memory: driver.space, loop: loop,
                                     logger: Logger(label: "test"), interrupt: {})
        func run(_ count: Int) -> Int {
            vq.processAvailable()
            var used = driver.takeUsed().count
            let end = monotonicMs() + 5000
            while used < count && monotonicMs() < end {
                loop.poll(timeoutMs: 100)
                used += driver.takeUsed().count
            }
            return used
        }
        var writes: [VirtqueueDriver.Request] = []
        for i in 0..<40 {
            let r = driver.blockRequest(type: 1, sector: UInt64(i * 8), dataLength: 4096, deviceWritesData: false, fill: UInt8(i + 1))
            driver.offer(r.head)
            writes.append(r)
        }
        #expect(run(40) == 40)
        #expect(writes.allSatisfy { driver.status(of: $0) == 0 })
        let r = driver.blockRequest(type: 0, sector: 8 * 39, dataLength: 4096, deviceWritesData: true)
        driver.offer(r.head)
        #expect(run(1) == 1)
        #expect(UnsafeRawBufferPointer(start: driver.pointer(r.data), count: 4096).allSatisfy { $0 == 40 })
        let img = Array(FileManager.default.contents(atPath: server.image)!)
        for i in 0..<40 { #expect(img[i * 4096] == UInt8(i + 1) && img[i * 4096 + 4095] == UInt8(i + 1)) }

        // Keep 16 in flight for 2000 requests (fio's shape): each answered, none stranded.
        var done = 0, offered = 0
        var live: [VirtqueueDriver.Request] = []
        let end = monotonicMs() + 20_000
        while done < 2000 && monotonicMs() < end {
            while live.count < 16 && offered < 2000 {
                let write = offered % 3 != 0
                let r = driver.blockRequest(type: write ? 1 : 0, sector: UInt64.random(in: 0..<250) * 8, dataLength: 4096,
                                            deviceWritesData: !write, fill: 0x5a)
                driver.offer(r.head)
                live.append(r)
                offered += 1
            }
            vq.processAvailable()
            loop.poll(timeoutMs: 100)
            let used = driver.takeUsed()
            for u in used {
                live.removeAll { UInt32($0.head) == u.id }
            }
            done += used.count
        }
        #expect(done == 2000)
    }

    @Test func aServerGoneForGoodFailsRequestsAfterTheDelay() throws {
        let server = try Server(size: 1 << 20)
        try server.start()
        let loop = try IOThread(name: "nbd")
        loop.adoptCurrentThread()
        let backend = try NBDBackend(spec: spec(server), timing: NBDTiming(reconnectDelayMs: 1000), writable: true, queues: 1, logicalBlockSize: 512)
        let sink = Sink()
        let queue = try backend.makeQueue(index: 0, depth: 4, loop: loop, sink: sink)
        sink.queue = queue
        server.stop()
        let start = monotonicMs()
        sink.submit(.flush, tag: 0)
        queue.commit()
        #expect(wait(loop, sink, 0, ms: 5000) == .ioError)
        let took = monotonicMs() - start
        #expect(took >= 900 && took < 3000)
        // Past the deadline, new requests fail at once.
        sink.submit(.flush, tag: 1)
        #expect(wait(loop, sink, 1, ms: 100) == .ioError)
        queue.close()
    }

    /// A stopped server keeps its socket open and answers nothing: the watchdog drops the
    /// connection after the request timeout; a server resumed within reconnect-delay gets the
    /// request again, one left stopped makes it fail after timeout + delay.
    @Test func aStoppedServerIsDroppedAndTheRequestResentOrFailed() throws {
        let server = try Server(size: 1 << 20)
        try server.start()
        defer { if let p = server.process { kill(p.processIdentifier, SIGCONT) } }
        let loop = try IOThread(name: "nbd")
        loop.adoptCurrentThread()
        let t = NBDTiming(reconnectDelayMs: 1500, requestTimeoutMs: 400)
        let backend = try NBDBackend(spec: spec(server), timing: t, writable: true, queues: 1, logicalBlockSize: 512)
        let sink = Sink()
        let queue = try backend.makeQueue(index: 0, depth: 4, loop: loop, sink: sink)
        sink.queue = queue
        let pid = server.process!.processIdentifier
        let block = Block(filledWith: 0x5a)
        defer { withExtendedLifetime(block) {} }  // the requests use its memory until the end
        let iov = block.iov

        // Resumed after the timeout, within the delay: dropped, reconnected, the write resent.
        stopProcess(pid)
        sink.submit(.write(offset: 4096, buffers: iov, length: 4096), tag: 0)
        queue.commit()
        #expect(wait(loop, sink, 0, ms: 800) == nil)
        kill(pid, SIGCONT)
        #expect(wait(loop, sink, 0, ms: 5000) == .ok)
        #expect(FileManager.default.contents(atPath: server.image)![4096..<8192].allSatisfy { $0 == 0x5a })

        // Left stopped: an I/O error after about timeout + delay, not a hang.
        stopProcess(pid)
        let start = monotonicMs()
        sink.submit(.read(offset: 0, buffers: iov, length: 4096), tag: 1)
        queue.commit()
        #expect(wait(loop, sink, 1, ms: 6000) == .ioError)
        let took = monotonicMs() - start
        #expect(took >= 1800 && took < 4000, "failed after \(took) ms")
        kill(pid, SIGCONT)
        queue.quiesce()
        queue.close()
    }

    /// A request the server received but never answered (stopped, then killed): libnbd ends it
    /// with ENOTCONN when the connection dies; it must be sent again to the next server, not fail.
    @Test func aRequestInFlightWhenTheServerDiesIsResent() throws {
        let server = try Server(size: 1 << 20)
        try server.start()
        let loop = try IOThread(name: "nbd")
        loop.adoptCurrentThread()
        let t = NBDTiming(reconnectDelayMs: 10_000, requestTimeoutMs: 0)
        let backend = try NBDBackend(spec: spec(server), timing: t, writable: true, queues: 1, logicalBlockSize: 512)
        let sink = Sink()
        let queue = try backend.makeQueue(index: 0, depth: 4, loop: loop, sink: sink)
        sink.queue = queue
        let block = Block(filledWith: 0x3c)
        defer { withExtendedLifetime(block) {} }  // the requests use its memory until the end
        let iov = block.iov
        stopProcess(server.process!.processIdentifier)
        sink.submit(.write(offset: 8192, buffers: iov, length: 4096), tag: 0)
        queue.commit()
        #expect(wait(loop, sink, 0, ms: 300) == nil)
        server.stop()
        #expect(wait(loop, sink, 0, ms: 300) == nil)
        try server.start()
        #expect(wait(loop, sink, 0, ms: 5000) == .ok)
        #expect(FileManager.default.contents(atPath: server.image)![8192..<12288].allSatisfy { $0 == 0x3c })
        queue.quiesce()
        queue.close()
    }

    /// A server that answers NBD_ESHUTDOWN is on its way out and waits for its clients to leave
    /// (nbdkit on SIGTERM): the connection is dropped and the request resent on the next one, not
    /// failed (issue 25: a TCP server restarted on its own port could never bind again).
    @Test func aServerShuttingDownIsLeftAndTheRequestResent() throws {
        let server = try Server(size: 1 << 20)
        let trigger = server.dir + "/shutting-down"
        server.filters = ["--filter=error"]
        server.filterParameters = ["error=ESHUTDOWN", "error-rate=1", "error-file=\(trigger)"]
        try server.start()
        let loop = try IOThread(name: "nbd")
        loop.adoptCurrentThread()
        let backend = try NBDBackend(spec: spec(server), timing: NBDTiming(reconnectDelayMs: 10_000), writable: true, queues: 1, logicalBlockSize: 512)
        let sink = Sink()
        let queue = try backend.makeQueue(index: 0, depth: 4, loop: loop, sink: sink)
        sink.queue = queue
        let block = Block(filledWith: 0x5a)
        defer { withExtendedLifetime(block) {} }  // the requests use its memory until the end
        let iov = block.iov
        _ = FileManager.default.createFile(atPath: trigger, contents: nil)
        sink.submit(.write(offset: 4096, buffers: iov, length: 4096), tag: 1)
        queue.commit()
        // Refused while the trigger exists: neither failed nor answered.
        #expect(wait(loop, sink, 1, ms: 1500) == nil)
        unlink(trigger)
        #expect(wait(loop, sink, 1, ms: 5000) == .ok)
        #expect(FileManager.default.contents(atPath: server.image)![4096..<8192].allSatisfy { $0 == 0x5a })

        // A server that only ever says it is shutting down: reconnecting to it does not restart
        // the wait; the request fails once reconnect-delay has passed since the first refusal.
        _ = FileManager.default.createFile(atPath: trigger, contents: nil)
        let start = monotonicMs()
        sink.submit(.read(offset: 0, buffers: iov, length: 4096), tag: 2)
        queue.commit()
        #expect(wait(loop, sink, 2, ms: 15_000) == .ioError)
        let took = monotonicMs() - start
        #expect(took >= 9_500 && took < 13_000, "failed after \(took) ms")
        unlink(trigger)
        queue.quiesce()
        queue.close()
    }

    @Test func anUnreachableServerFailsTheOpenWithItsReason() throws {
        let t = NBDSpec(server: .unix(path: "/nonexistent/nbd.sock"), reconnectDelay: 0)
        #expect(throws: SystemError.self) { try NBDBackend(spec: t, writable: false, queues: 1, logicalBlockSize: 512) }
        do {
            _ = try NBDBackend(spec: t, writable: false, queues: 1, logicalBlockSize: 512)
        } catch {
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.call.hasPrefix("connect"))
        }
    }
}
