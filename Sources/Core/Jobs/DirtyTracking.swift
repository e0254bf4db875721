import BlockBackends
import Glibc
import Kernel

/// The export's backend during a commit or mirror: every request goes to `inner` unchanged, and
/// every change (write, discard, write-zeroes) marks its chunks dirty, when it is submitted and
/// again when it completes, so the job copies them (again) after.
final class DirtyTrackingBackend: BlockBackend {
    let inner: any BlockBackend
    let bitmap: DirtyBitmap

    init(inner: any BlockBackend, bitmap: DirtyBitmap) {
        self.inner = inner
        self.bitmap = bitmap
    }

    var size: UInt64 { inner.size }
    var capabilities: BackendCapabilities { inner.capabilities }

    func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError) -> any BackendQueue {
        TrackingQueue(inner: try inner.makeQueue(index: index, depth: depth, loop: loop, sink: sink), bitmap: bitmap)
    }

    /// The job copies a fixed size: no resize while it runs.
    func resize(to bytes: UInt64) throws(SystemError) {
        throw SystemError("resize: a block job is running on this disk", errno: EBUSY)
    }
}

private final class TrackingQueue: BackendQueue {
    let inner: any BackendQueue
    let bitmap: DirtyBitmap
    /// Changes in flight by tag: marked again when they complete.
    private var changing: [UInt16: (UInt64, UInt64)] = [:]

    init(inner: any BackendQueue, bitmap: DirtyBitmap) {
        self.inner = inner
        self.bitmap = bitmap
    }

    func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        let range: (UInt64, UInt64)? = switch io {
        case let .write(offset, _, length): (offset, UInt64(length))
        case let .discard(offset, length), let .writeZeroes(offset, length, _): (offset, length)
        case .read, .flush: nil
        }
        if let range { bitmap.mark(offset: range.0, length: range.1) }
        let result = inner.submit(io, tag: tag)
        // Marked again once the change is in the image: the job's thread may have taken the
        // chunk and read it between the first mark and the write (a file backend writes inline,
        // within submit); without the second mark that copy would keep the old data.
        if let range {
            if result == .pending { changing[tag] = range } else { bitmap.mark(offset: range.0, length: range.1) }
        }
        return result
    }

    func reap(into completions: inout [Completion]) {
        let start = completions.count
        inner.reap(into: &completions)
        guard !changing.isEmpty else { return }
        for c in completions[start...] {
            if let (offset, length) = changing.removeValue(forKey: c.tag) { bitmap.mark(offset: offset, length: length) }
        }
    }

    func commit() { inner.commit() }
    var inFlight: Int { inner.inFlight }
    func quiesce() { inner.quiesce() }
    func close() { inner.close() }
    func pollCompletions() -> Bool { inner.pollCompletions() }
}
