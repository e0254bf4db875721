import Foundation
import Glibc
import Testing
@testable import BlockBackends
@testable import Core
@testable import Kernel

/// Records the completions a backend queue says are ready, reaping them as the engine would.
final class RecordingSink: CompletionSink {
    var completed: [Completion] = []
    weak var queue: (any BackendQueue)?
    func completionsReady() { queue?.reap(into: &completed) }
}

/// The file backend's io_uring queue on its own, without a virtqueue above it.
@Suite(.timeLimit(.minutes(1))) struct FileBackendQueueTests {
    /// A failed io_uring submit used to strand the prepared entries until another request came.
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
}
