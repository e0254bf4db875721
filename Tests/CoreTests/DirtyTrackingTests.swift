import Glibc
import Testing
@testable import BlockBackends
@testable import Core
@testable import Kernel

/// The dirty tracking of a commit or mirror: a change must leave its chunks marked once it is in
/// the image, whatever the job's thread took in between.
@Suite struct DirtyTrackingTests {
    /// Writes inline (as the file backend does) and lets the test act while the write is under way.
    final class InlineBackend: BlockBackend {
        let size: UInt64 = 1 << 20
        var duringWrite: () -> Void = {}
        var capabilities: BackendCapabilities { BackendCapabilities(discard: true, writeZeroes: true, resizable: false) }
        func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) -> any BackendQueue {
            InlineQueue(backend: self)
        }
        func resize(to bytes: UInt64) {}
    }

    final class InlineQueue: BackendQueue {
        unowned let backend: InlineBackend
        init(backend: InlineBackend) { self.backend = backend }
        func submit(_ io: BlockIO, tag: UInt16) -> Submission {
            backend.duringWrite()
            return .done(.ok)
        }
        func commit() {}
        func reap(into completions: inout [Completion]) {}
        var inFlight: Int { 0 }
        func quiesce() {}
        func close() {}
    }

    /// Seen in the test bed as a file that changed across a mirror (live-ops-net): the job took
    /// the chunk (clearing its mark) and read it while the iothread's inline write was landing;
    /// without a mark after the write, the target kept the old data.
    @Test func anInlineWriteIsMarkedAgainAfterItLands() throws {
        let inner = InlineBackend()
        let bitmap = DirtyBitmap(size: inner.size)
        let tracking = DirtyTrackingBackend(inner: inner, bitmap: bitmap)
        let loop = try IOThread(name: "tracking-test")
        let sink = IdleSink()
        let queue = try tracking.makeQueue(index: 0, depth: 4, loop: loop, sink: sink)
        var takenMidWrite: Int?
        inner.duringWrite = { takenMidWrite = bitmap.take(from: 0) }  // the job's copier, racing
        let data = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { data.deallocate() }
        let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
        defer { iov.deallocate() }
        iov.initialize(to: iovec(iov_base: data, iov_len: 4096))
        let io = BlockIO.write(offset: 0, buffers: UnsafeMutableBufferPointer(start: iov, count: 1), length: 4096)
        #expect(queue.submit(io, tag: 0) == .done(.ok))
        #expect(takenMidWrite == 0)
        #expect(bitmap.take(from: 0) == 0, "the chunk written must be marked again once the write is done")
        withExtendedLifetime(sink) {}
    }
}
