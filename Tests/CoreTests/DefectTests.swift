import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import VirtioDriverSim
@testable import BlockBackends
@testable import Core
@testable import Kernel
@testable import QAPI
@testable import QMP
@testable import Virtio
@testable import Server
@testable import Wire

/// Records the completions a backend queue says are ready, reaping them as the engine would.
final class RecordingSink: CompletionSink {
    var completed: [Completion] = []
    weak var queue: (any BackendQueue)?
    func completionsReady() { queue?.reap(into: &completed) }
}

/// The eight defects of the architecture review, each pinned by a test that failed before its fix.
@Suite(.timeLimit(.minutes(1))) struct DefectTests {
    /// 1: a failed io_uring submit used to strand the prepared entries until another request came.
    @Test func aFailedSubmitIsRetriedWithoutAnotherRequest() throws {
        let path = NSTemporaryDirectory() + "/defect1-\(UUID().uuidString).img"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 8192))
        defer { unlink(path) }
        let backend = try FileBackend(path: path, writable: false, direct: false, writethrough: false)
        let loop = try IOThread(name: "defect1")
        loop.adoptCurrentThread()
        var failuresLeft = 2
        let ring = try IOUring(entries: 8, submit: { ring in
            if failuresLeft > 0 { failuresLeft -= 1; return -EAGAIN }
            return IOUring.realSubmit(ring)
        })
        let sink = RecordingSink()
        let queue = try FileBackendQueue(backend: backend, ring: ring, depth: 8, loop: loop, sink: sink)
        sink.queue = queue
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
        defer { iov.deallocate() }
        iov.pointee = iovec(iov_base: buffer, iov_len: 4096)
        #expect(queue.submit(.read(offset: 0, buffers: UnsafeMutableBufferPointer(start: iov, count: 1), length: 4096),
                             tag: 3) == .pending)
        queue.commit()
        #expect(ring.unsubmitted == 0)
        for _ in 0..<50 where sink.completed.isEmpty { loop.poll(timeoutMs: 100) }
        #expect(sink.completed.count == 1 && sink.completed.first?.tag == 3 && sink.completed.first?.status == .ok)
        #expect(buffer.load(as: UInt8.self) == 7)
        queue.close()
    }

    /// 3a: work posted to a stopped iothread used to wait forever.
    @Test func workForAStoppedIOThreadFails() throws {
        let t = try IOThread(name: "defect3")
        t.start()
        #expect(try t.run { 42 } == 42)
        t.stop()
        #expect(throws: IOThread.Stopped.self) { try t.run { 1 } }
        #expect(t.execute {} == false)
    }

    /// 3b: QMPServer.stop returned while a command still ran (an export it created escaped the
    /// shutdown). Now stop waits for the command.
    @Test func qmpStopWaitsForTheRunningCommand() throws {
        let path = NSTemporaryDirectory() + "/qmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let started = DispatchSemaphore(value: 0)
        let finished = Mutex(false)
        let server = try QMPServer(path: path, logger: Logger(label: "test")) { command, _, _ in
            if command == "slow" {
                started.signal()
                usleep(300_000)
                finished.withLock { $0 = true }
            }
            return .object([])
        }
        server.start()
        let client = Thread {
            _ = try? QMPClient.execute(socket: path, command: "slow", timeout: 5)
        }
        client.start()
        #expect(started.wait(timeout: .now() + 5) == .success)
        server.stop()
        #expect(finished.withLock { $0 }, "stop() returned before the running command finished")
        #expect(!server.acceptLoopRunning)
    }

    /// 4: stop() used to close the listening fd while the accept thread could still be in accept()
    /// on that number. Now the thread has ended before stop() returns.
    @Test func qmpStopEndsTheAcceptThreadBeforeClosing() throws {
        for i in 0..<20 {
            let path = NSTemporaryDirectory() + "/qmp-\(getpid())-\(i).sock"
            let server = try QMPServer(path: path, logger: Logger(label: "test")) { _, _, _ in .object([]) }
            server.start()
            usleep(1000)
            server.stop()
            #expect(!server.acceptLoopRunning)
        }
    }

    /// 5: an avail index moved further than the ring holds used to make the server take stale heads.
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

    /// 7: docs/options.md promised 0x hex sizes; the parser refused them.
    @Test func hexSizes() {
        #expect(OptionReader.parseSize("0x1000") == 4096)
        #expect(OptionReader.parseSize("0X200") == 512)
        #expect(OptionReader.parseSize("0x") == nil)
        #expect(OptionReader.parseSize("0x1g") == nil)
    }

    /// 8: the JSON parser accepted 01, 1. and 1e, and refused surrogate pairs.
    @Test(arguments: ["01", "-01", "1.", "1e", "1e+", "-", "1.e5", "\"\\ud83d\"", "\"\\ud83d\\u0041\"", "\"\\udc00\""])
    func invalidJSONIsRefused(text: String) {
        #expect(throws: OptionError.self) { try JSONParser.parse(text) }
    }

    @Test(arguments: [("0", "0"), ("-0", "-0"), ("10", "10"), ("1.5e-3", "1.5e-3"), ("1E9", "1E9")])
    func validNumbersAreKeptAsWritten(text: String, kept: String) throws {
        #expect(try JSONParser.parse(text) == .number(kept))
    }

    @Test func surrogatePairsDecodeToOneCharacter() throws {
        #expect(try JSONParser.parse("\"\\ud83d\\ude00 \\u00e9\"") == .string("😀 é"))
    }
}
